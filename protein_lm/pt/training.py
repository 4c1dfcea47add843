"""Fine-tune ESM-2 with the transformers `Trainer`: sequence/token classification and regression.

`finetune(train, validation, test, config=FinetuneConfig(...), output_dir=...)` trains with
token-budget batches (`protein_lm.pt.trainer`), evaluates on the validation split every
`eval_steps`, keeps the best checkpoint by the task's selection metric (MCC, Q3 or Spearman),
evaluates the test split once with it, and writes a standard transformers model directory plus
`metrics.json`, `training_log.csv` and `training_curves.png` (see
`protein_lm.finetuning.reporting`). The same call runs unchanged on N processes under `torchrun`
(DDP); only rank 0 writes files. Learning rate, step counts and the config stamps come from the
plan shared with Keras (`protein_lm.finetuning.plan`). The caller's random states (python,
numpy, torch) are the same after the call as before, although transformers reseeds them inside.

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
import random
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from protein_lm.batching import TokenBudgetBatchSampler
from protein_lm.errors import require
from protein_lm.finetuning.config import SELECTION_METRIC, FinetuneOptions, FinetuneOutcome
from protein_lm.finetuning.plan import TrainingPlan, default_learning_rate, plan_training
from protein_lm.finetuning.reporting import (
    CONFIG_FILE,
    atomic_output_dir,
    clean_metrics,
    write_run_outputs,
)
from protein_lm.finetuning.splits import PreparedSplits, prepare_splits
from protein_lm.pt.lora import is_peft_model, wrap_lora

if TYPE_CHECKING:  # torch and transformers load in `finetune`, so a missing extra is named there
    import torch
    from accelerate import PartialState
    from transformers import PreTrainedModel, Trainer

    from protein_lm.pt.trainer import LogRecorder

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

    def __post_init__(self) -> None:
        super().__post_init__()
        # An absent GPU is refused here, before any data or model loads: otherwise the run
        # silently trains on CPU and its outputs record "device": "cuda".
        from protein_lm.models import check_device  # light: torch only for a GPU device

        check_device(self.device)

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


# --------------------------------------------------------------------------------- helpers
def _precision_flags(precision: str, device: str) -> dict[str, bool]:
    import torch

    if device == "cpu" or precision == "fp32":
        if precision in ("bf16", "fp16") and device == "cpu":
            warnings.warn(
                f"precision={precision!r} ignored on CPU; training in fp32", stacklevel=4
            )
        return {"bf16": False, "fp16": False}
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def _weights_sha256(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def _caller_random_states_kept(state: PartialState) -> Iterator[None]:
    """Restore python's, numpy's and torch's global random states on exit.

    transformers' `set_seed` (called here for the head of a pretrained model, and again by
    `Trainer`) reseeds all of them globally; the caller must not see that.
    """
    import torch

    py_state, np_state = random.getstate(), np.random.get_state()
    # CUDA states only when training on the GPU: reading them would start CUDA on a CPU run.
    cuda = list(range(torch.cuda.device_count())) if state.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _shared_tmp_dir(
    state: PartialState, stack: contextlib.ExitStack, output_dir: Path, overwrite: bool
) -> Path:
    """Rank 0 opens the atomic output directory; the other ranks receive its path."""
    path = [
        str(
            stack.enter_context(
                atomic_output_dir(output_dir, overwrite=overwrite, marker=CONFIG_FILE)
            )
        )
        if state.is_main_process
        else ""
    ]
    if state.num_processes > 1:
        import torch.distributed as dist

        dist.broadcast_object_list(path, src=0)
    return Path(path[0])


def _trainer(
    config: FinetuneConfig,
    plan: TrainingPlan,
    splits: PreparedSplits,
    model: PreTrainedModel,
    tmp: Path,
    state: PartialState,
    extra_metrics: Callable[[np.ndarray, np.ndarray], Mapping[str, float]] | None,
) -> tuple[Trainer, LogRecorder]:
    """The token-budget `Trainer` that runs `plan`, and the callback recording its log."""
    import transformers

    from protein_lm.pt.trainer import (
        LogRecorder,
        StopOnNonFinite,
        TimeBudget,
        TokenBudgetTrainer,
        class_weights,
        make_collator,
        metric_functions,
    )  # fmt: skip
    from protein_lm.tokenization import hf_tokenizer

    task, device = config.task, "cpu" if state.device.type == "cpu" else state.device.type
    eval_steps = plan.eval_steps
    args = transformers.TrainingArguments(
        output_dir=str(tmp / "checkpoints"),
        max_steps=config.max_steps or -1,
        num_train_epochs=config.epochs or 3.0,
        learning_rate=plan.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=plan.warmup_steps,
        lr_scheduler_type="linear",
        seed=config.seed,
        data_seed=config.seed,
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="steps",
        save_steps=eval_steps,
        logging_steps=max(1, min(eval_steps, plan.total_steps // 50)),
        logging_nan_inf_filter=False,  # a NaN loss must reach StopOnNonFinite, not be dropped
        load_best_model_at_end=True,
        metric_for_best_model=SELECTION_METRIC[task],
        greater_is_better=True,
        save_total_limit=1,
        save_only_model=True,
        report_to="none",
        disable_tqdm=not config.progress or not state.is_main_process,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        use_cpu=device == "cpu",
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False},
        **_precision_flags(config.precision, device),
    )
    preprocess, compute = metric_functions(task, splits.scale, extra_metrics)
    recorder = LogRecorder()
    trainer = TokenBudgetTrainer(
        model=model,
        args=args,
        train_dataset=splits.train,
        eval_dataset=splits.validation,
        data_collator=make_collator(task, config.max_length),
        processing_class=hf_tokenizer(),
        compute_metrics=compute,
        preprocess_logits_for_metrics=preprocess,
        callbacks=[recorder, TimeBudget(config.max_time_s), StopOnNonFinite()],
        batch_tokens=config.batch_tokens,
        eval_batch_tokens=config.eval_batch_tokens or 2 * config.batch_tokens,
        max_length=config.max_length,
        class_weights=None
        if splits.id2label is None
        else class_weights(config.class_weights, splits.train.labels, len(splits.id2label)),
    )
    if not config.progress:  # no progress bar: also no printed log dicts
        trainer.remove_callback(transformers.trainer_callback.PrinterCallback)
    return trainer, recorder


def _without_prefix(metrics: Mapping[str, float], prefix: str) -> dict[str, float]:
    return clean_metrics(
        {
            k.removeprefix(prefix): v
            for k, v in metrics.items()
            if not k.endswith(("runtime", "per_second", "epoch"))
        }
    )


def _best_metrics(
    trainer: Trainer,
    recorder: LogRecorder,
    splits: PreparedSplits,
) -> tuple[dict[str, float], dict[str, float] | None]:
    """Validation metrics at the best step (as logged) and test metrics of the best weights."""
    best_step = trainer.state.best_global_step
    val_metrics = {
        e.name: e.value
        for e in recorder.entries
        if e.split == "validation" and e.step == best_step
    }
    if not val_metrics:  # no evaluation logged at the best step: evaluate again
        val_metrics = trainer.evaluate(splits.validation)
    test_metrics = None
    if splits.test is not None:
        test_metrics = _without_prefix(
            trainer.evaluate(splits.test, metric_key_prefix="test"), "test_"
        )
    return _without_prefix(val_metrics, "eval_"), test_metrics


def _gathered(
    state: PartialState,
    digest: str,
    val_metrics: dict[str, float],
) -> tuple[list[str], list[dict[str, float]]]:
    """Every process's weight digest and validation metrics (they must agree under DDP)."""
    if state.num_processes == 1:
        return [digest], [val_metrics]
    import torch.distributed as dist

    gathered: list[Any] = [None] * state.num_processes
    dist.all_gather_object(gathered, (digest, val_metrics))
    return [g[0] for g in gathered], [g[1] for g in gathered]


def _batches_per_epoch(config: FinetuneConfig, splits: PreparedSplits, state: Any) -> int:
    """Training batches one process sees per epoch (token-budget batches, sharded over ranks)."""
    sampler = TokenBudgetBatchSampler(
        splits.train.lengths,
        config.batch_tokens,
        seed=config.seed,
        num_replicas=state.num_processes,
        rank=0,
    )
    return len(sampler)


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
    extra_metrics: Callable[[np.ndarray, np.ndarray], Mapping[str, float]] | None = None,
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

    task = config.task
    splits = prepare_splits(
        train,
        validation,
        test,
        task,
        max_length=config.max_length,
        length_policy=config.length_policy,
        source_names=source_names,
    )
    state = PartialState(cpu=config.device == "cpu")
    plan = plan_training(
        config, splits, _batches_per_epoch(config, splits, state), framework="pt", lora=config.lora
    )

    with contextlib.ExitStack() as stack:
        stack.enter_context(_caller_random_states_kept(state))
        transformers.set_seed(config.seed)  # classifier head init of pretrained models
        tmp = _shared_tmp_dir(state, stack, Path(output_dir), overwrite)
        model = load_model(
            config.model,
            task,  # type: ignore[arg-type]
            id2label=splits.id2label,
            seed=config.seed,
            device="cpu",
            attn_implementation=config.attn_implementation,  # type: ignore[arg-type]
            config_overrides=dict(config.model_overrides) or None,
        )
        if config.lora:
            model = wrap_lora(model, task, config.lora_rank)
        trainer, recorder = _trainer(config, plan, splits, model, tmp, state, extra_metrics)
        start = time.monotonic()
        trainer.train()
        train_seconds = time.monotonic() - start
        val_metrics, test_metrics = _best_metrics(trainer, recorder, splits)
        final = trainer.model.merge_and_unload() if config.lora else trainer.model
        digest = _weights_sha256(final)
        digests, vals = _gathered(state, digest, val_metrics)
        if state.is_main_process:
            shutil.rmtree(tmp / "checkpoints", ignore_errors=True)
            plan.stamp(final.config)
            final.save_pretrained(tmp, safe_serialization=True)
            hf_tokenizer().save_pretrained(tmp)
            write_run_outputs(
                tmp, tuple(recorder.entries), val_metrics, test_metrics,
                config=config.to_dict(), task=task, model=config.model,
                title=f"{task} ({config.model})", best_step=trainer.state.best_global_step,
                steps=trainer.state.global_step, train_seconds=round(train_seconds, 2),
                world_size=state.num_processes, weights_sha256=digests,
                validation_per_process=vals,
            )  # fmt: skip
    if state.num_processes > 1:
        torch.distributed.barrier()  # every rank returns after rank 0 renamed the directory
    return FinetuneResult(
        output_dir=Path(output_dir),
        validation=val_metrics,
        test=test_metrics,
        best_step=trainer.state.best_global_step,
        steps=trainer.state.global_step,
        train_seconds=train_seconds,
        world_size=state.num_processes,
        weights_sha256=digest,
        id2label=splits.id2label,
        log=tuple(recorder.entries),
    )
