"""Fine-tune ESM-2 with the transformers `Trainer`: sequence/token classification and regression.

`finetune(train, validation, test, config=FinetuneConfig(...), output_dir=...)` trains with
token-budget batches (`protein_lm.pt.trainer`), evaluates on the validation split every
`eval_steps`, keeps the best checkpoint by the task's selection metric (MCC, Q3 or Spearman),
evaluates the test split once with it, and writes a standard transformers model directory plus
`metrics.json`, `training_log.csv` and `training_curves.png` (see `protein_lm.finetuning.reporting`). The same
call runs unchanged on N processes under `torchrun` (DDP); only rank 0 writes files.

Labels: per-residue label i belongs to token i+1 (`<cls>` is token 0); `<cls>`, `<eos>`, padding
and masked residues are -100 and count neither in the loss nor in Q3. Sequences longer than
`max_length - 2` residues (default 1,022) follow `length_policy`: "error", or "truncate" (with a
warning naming how many; their cut-off residues are not scored). `protein_lm.pt.predict.predict`
covers long sequences of per-residue tasks with overlapping windows, so every residue is predicted.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protein_lm.batching import TokenBudgetBatchSampler
from protein_lm.errors import require
from protein_lm.finetuning.config import SELECTION_METRIC, FinetuneOptions, FinetuneOutcome
from protein_lm.finetuning.reporting import atomic_output_dir, clean_metrics, write_run_outputs
from protein_lm.finetuning.splits import prepare_splits
from protein_lm.pt.trainer import is_peft_model

__all__ = [
    "FinetuneConfig",
    "FinetuneResult",
    "finetune",
    "default_learning_rate",
    "is_peft_model",
    "SELECTION_METRIC",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinetuneConfig(FinetuneOptions):
    """Options of one PyTorch fine-tuning run: `FinetuneOptions` plus the PyTorch-only ones.

    `learning_rate=None` picks `default_learning_rate`. `batch_tokens` is per process.
    `class_weights`: None, "balanced" (inverse training frequency) or one weight per class.
    `precision="auto"` = bf16 on GPUs that support it, else fp16 on GPU, fp32 on CPU.
    `device`: "cpu" forces CPU; None/"cuda" use the GPU when there is one (one per process under
    torchrun).
    """

    class_weights: str | tuple[float, ...] | None = None
    lora: bool = False
    lora_rank: int = 8
    gradient_checkpointing: bool = False
    attn_implementation: str = "sdpa"
    device: str | None = None

    def _checks(self) -> list[tuple[bool, str]]:
        return super()._checks() + [
            (self.class_weights in (None, "balanced") or isinstance(self.class_weights, tuple),
             "`class_weights` must be None, 'balanced' or a tuple of floats, got "
             f"{self.class_weights!r}"),
            (self.class_weights is None or self.task != "regression",
             "`class_weights` needs a classification task, not regression"),
            (self.lora_rank > 0, f"`lora_rank` must be > 0, got {self.lora_rank}"),
            (self.attn_implementation in ("eager", "sdpa"),
             f"`attn_implementation` must be 'eager' or 'sdpa', got {self.attn_implementation!r}"),
            (self.device in (None, "cpu", "cuda"),
             f"`device` must be None (GPU if available), 'cpu' or 'cuda', got {self.device!r}"),
        ]  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FinetuneConfig:
        """Inverse of `to_dict` (JSON turns the class-weight tuple into a list)."""
        d = dict(d)
        if isinstance(d.get("class_weights"), list):
            d["class_weights"] = tuple(d["class_weights"])
        return cls(**d)


@dataclass(frozen=True)
class FinetuneResult(FinetuneOutcome):
    """Outcome of the PyTorch `finetune` (see `FinetuneOutcome`), plus the number of processes
    and the SHA-256 of the final weights (equal on every DDP rank)."""

    world_size: int
    weights_sha256: str


def default_learning_rate(model: str, lora: bool = False) -> float:
    """1e-3 to train `tiny` from scratch, 3e-4 for LoRA adapters, 5e-5 to fine-tune all weights."""
    if model == "tiny":
        return 1e-3
    return 3e-4 if lora else 5e-5


# --------------------------------------------------------------------------------- helpers
def _precision_flags(precision: str, device: str) -> dict[str, bool]:
    import torch

    if device == "cpu" or precision == "fp32":
        if precision in ("bf16", "fp16") and device == "cpu":
            warnings.warn(f"precision={precision!r} ignored on CPU; training in fp32",
                          stacklevel=3)
        return {"bf16": False, "fp16": False}
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def _weights_sha256(model: Any) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _wrap_lora(model: Any, config: FinetuneConfig) -> Any:
    peft = require("peft", "torch")
    token = config.task == "token-classification"
    task_type = peft.TaskType.TOKEN_CLS if token else peft.TaskType.SEQ_CLS
    # Adapters on attention and feed-forward projections; the new head is fully trained (peft's
    # SEQ_CLS/TOKEN_CLS task types mark `classifier` as modules_to_save).
    lora = peft.LoraConfig(task_type=task_type, r=config.lora_rank,
                           lora_alpha=2 * config.lora_rank, lora_dropout=0.0,
                           target_modules=["query", "key", "value", "dense"])
    return peft.get_peft_model(model, lora)


def _shared_tmp_dir(state: Any, stack: contextlib.ExitStack, output_dir: Path,
                    overwrite: bool) -> Path:
    """Rank 0 opens the atomic output directory; the other ranks receive its path."""
    path = [str(stack.enter_context(atomic_output_dir(output_dir, overwrite=overwrite)))
            if state.is_main_process else ""]
    if state.num_processes > 1:
        import torch.distributed as dist

        dist.broadcast_object_list(path, src=0)
    return Path(path[0])


# ------------------------------------------------------------------------------- finetune
def finetune(
    train: Any,
    validation: Any,
    test: Any = None,
    *,
    config: FinetuneConfig,
    output_dir: str | os.PathLike[str],
    overwrite: bool = False,
    source_names: Sequence[str] = ("train", "validation", "test"),
    extra_metrics: Any = None,
) -> FinetuneResult:
    """Fine-tune `config.model` on `train`, keep the best checkpoint on `validation`, score `test`.

    Parameters
    ----------
    train, validation, test : datasets.Dataset, DataFrame or dict of columns
        Columns `sequence`, `label` (class name, number, or one class character per residue) and
        optional `id` and `mask` (0/1 string per residue, 0 = unlabelled), as from
        `data.read_table` or the `data.load_*` loaders. `test` is evaluated once, at the end.
    output_dir : path
        Written atomically (temporary sibling folder, renamed on success); must not exist or be
        empty unless `overwrite`.
    source_names : three str
        Names of the splits in error messages (the CLI passes the file paths).
    extra_metrics : callable, optional
        `(predictions, references) -> {name: value}` added to every evaluation, e.g. `evaluate`
        metrics when online (see `protein_lm.pt.trainer.metric_functions`).
    """
    torch = require("torch", "torch")
    transformers = require("transformers", "torch")
    from accelerate import PartialState

    from protein_lm.models import load_model
    from protein_lm.tokenization import hf_tokenizer
    from protein_lm.pt.trainer import (
        LogRecorder, TimeBudget, TokenBudgetTrainer, class_weights, make_collator,
        metric_functions,
    )  # fmt: skip

    task = config.task
    splits = prepare_splits(train, validation, test, task, max_length=config.max_length,
                            length_policy=config.length_policy, source_names=source_names)
    train_ds, val_ds, test_ds = splits.train, splits.validation, splits.test
    id2label, scale = splits.id2label, splits.scale

    state = PartialState(cpu=config.device == "cpu")
    device = "cpu" if state.device.type == "cpu" else state.device.type
    lr = config.learning_rate or default_learning_rate(config.model, config.lora)
    n_batches = len(TokenBudgetBatchSampler(
        train_ds.lengths, config.batch_tokens, seed=config.seed,
        num_replicas=state.num_processes, rank=0))
    total = config.max_steps or max(1, int(np.ceil((config.epochs or 3.0) * max(n_batches, 1))))
    eval_steps = config.eval_steps or max(1, total // 10)
    transformers.set_seed(config.seed)  # classifier head init of pretrained models

    with contextlib.ExitStack() as stack:
        tmp = _shared_tmp_dir(state, stack, Path(output_dir), overwrite)
        model = load_model(config.model, task, id2label=id2label, seed=config.seed, device="cpu",
                           attn_implementation=config.attn_implementation,
                           config_overrides=dict(config.model_overrides) or None)
        if config.lora:
            model = _wrap_lora(model, config)
        args = transformers.TrainingArguments(
            output_dir=str(tmp / "checkpoints"),
            max_steps=config.max_steps or -1, num_train_epochs=config.epochs or 3.0,
            learning_rate=lr, weight_decay=config.weight_decay,
            warmup_steps=config.warmup_fraction,  # a float < 1 is a fraction of all steps
            lr_scheduler_type="linear", seed=config.seed, data_seed=config.seed,
            eval_strategy="steps", eval_steps=eval_steps,
            save_strategy="steps", save_steps=eval_steps,
            logging_steps=max(1, min(eval_steps, total // 50)), load_best_model_at_end=True,
            metric_for_best_model=SELECTION_METRIC[task], greater_is_better=True,
            save_total_limit=1, save_only_model=True, report_to="none",
            disable_tqdm=not config.progress or not state.is_main_process,
            remove_unused_columns=False, dataloader_num_workers=0, use_cpu=device == "cpu",
            activation_checkpointing=config.gradient_checkpointing,
            activation_checkpointing_kwargs={"use_reentrant": False},
            **_precision_flags(config.precision, device),
        )
        preprocess, compute = metric_functions(task, scale, extra_metrics)
        recorder = LogRecorder()
        trainer = TokenBudgetTrainer(
            model=model, args=args, train_dataset=train_ds, eval_dataset=val_ds,
            data_collator=make_collator(task, config.max_length), processing_class=hf_tokenizer(),
            compute_metrics=compute, preprocess_logits_for_metrics=preprocess,
            callbacks=[recorder, TimeBudget(config.max_time_s)],
            batch_tokens=config.batch_tokens, eval_batch_tokens=config.eval_batch_tokens or
            2 * config.batch_tokens, max_length=config.max_length,
            class_weights=None if id2label is None else class_weights(
                config.class_weights, train_ds.labels, len(id2label)),
        )
        if not config.progress:  # no progress bar: also no printed log dicts
            trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
        start = time.monotonic()
        trainer.train()
        train_seconds = time.monotonic() - start
        best_step = trainer.state.best_global_step
        val_metrics = {e.name: e.value for e in recorder.entries
                       if e.split == "validation" and e.step == best_step}
        if not val_metrics:  # no evaluation logged at the best step: evaluate again
            val_metrics = trainer.evaluate(val_ds)
        val_metrics = clean_metrics({k.removeprefix("eval_"): v for k, v in val_metrics.items()
                                     if not k.endswith(("runtime", "per_second", "epoch"))})
        test_metrics = None
        if test_ds is not None:
            raw = trainer.evaluate(test_ds, metric_key_prefix="test")
            test_metrics = clean_metrics({k.removeprefix("test_"): v for k, v in raw.items()
                                          if not k.endswith(("runtime", "per_second", "epoch"))})
        final = trainer.model.merge_and_unload() if config.lora else trainer.model
        digest = _weights_sha256(final)
        digests, vals = [digest], [val_metrics]
        if state.num_processes > 1:
            import torch.distributed as dist

            gathered: list[Any] = [None] * state.num_processes
            dist.all_gather_object(gathered, (digest, val_metrics))
            digests, vals = [g[0] for g in gathered], [g[1] for g in gathered]
        if state.is_main_process:
            shutil.rmtree(tmp / "checkpoints", ignore_errors=True)
            final.config.protein_lm_task = task
            if task == "regression":
                final.config.protein_lm_label_scale = list(scale)
            final.save_pretrained(tmp, safe_serialization=True)
            hf_tokenizer().save_pretrained(tmp)
            write_run_outputs(
                tmp, tuple(recorder.entries), val_metrics, test_metrics,
                config=config.to_dict(), task=task, model=config.model,
                title=f"{task} ({config.model})", best_step=best_step,
                steps=trainer.state.global_step, train_seconds=round(train_seconds, 2),
                world_size=state.num_processes, weights_sha256=digests,
                validation_per_process=vals,
            )  # fmt: skip
    if state.num_processes > 1:
        torch.distributed.barrier()  # every rank returns after rank 0 renamed the directory
    return FinetuneResult(
        output_dir=Path(output_dir), validation=val_metrics, test=test_metrics,
        best_step=best_step, steps=trainer.state.global_step, train_seconds=train_seconds,
        world_size=state.num_processes, weights_sha256=digest, id2label=id2label,
        log=tuple(recorder.entries),
    )

