"""A transformers `Trainer` that feeds token-budget batches, plus the callbacks a run needs.

Why a subclass: the stock `Trainer` builds its loaders from a per-device batch *size*; protein
batches are cheaper and faster when sized by a token *budget* (padding counted) and grouped by
length. `TokenBudgetTrainer` passes `TokenBudgetBatchSampler` as the loader's `batch_sampler`:

- training, one process: the sampler shuffles within length pools, reshuffled every epoch;
- training, N processes (torchrun / accelerate, DDP): every process builds the same batch order
  (seeded by `seed + epoch`) and keeps every N-th batch (`num_replicas`/`rank`), dropping the
  ragged tail so all processes take the same number of steps; accelerate's own
  `BatchSamplerShard` wrapper is made a pass-through, as the Trainer does for its own rank-aware
  `BatchRebalanceSampler`;
- evaluation: every process evaluates the *whole* split in length order and metrics are computed
  locally (no cross-process gather). Gathering variable-size batches would pad or duplicate
  examples; repeating evaluation on each process is exact and identical on every rank, at the cost
  of evaluation time that does not shrink with N.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from protein_lm.batching import IGNORE_INDEX, Collator, TokenBudgetBatchSampler
from protein_lm.errors import require
from protein_lm.finetuning.plan import check_finite
from protein_lm.finetuning.reporting import LogEntry
from protein_lm.pt.lora import is_peft_model

require("torch", "torch")  # a missing extra raises MissingExtraError naming it, not ImportError
require("transformers", "torch")
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from transformers import (  # noqa: E402
    EvalPrediction,
    Trainer,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

__all__ = [
    "is_peft_model",
    "class_weights",
    "metric_functions",
    "make_collator",
    "TokenBudgetTrainer",
    "LogRecorder",
    "TimeBudget",
    "StopOnNonFinite",
]


# ------------------------------------------------------------------------------ loss, metrics
def class_weights(
    spec: str | tuple[float, ...] | None, labels: Sequence[Any], n_classes: int
) -> list[float] | None:
    """Loss weight per class: None, explicit weights, or "balanced" (inverse class frequency)."""
    if spec is None:
        return None
    if isinstance(spec, tuple):
        if len(spec) != n_classes:
            raise ValueError(f"`class_weights` has {len(spec)} values for {n_classes} classes")
        return [float(w) for w in spec]
    flat = np.concatenate([np.ravel(np.asarray(lab)) for lab in labels])
    counts = np.bincount(flat[flat != IGNORE_INDEX], minlength=n_classes)
    # sklearn's "balanced" rule: n / (k * count); max(count, 1) keeps absent classes finite.
    return (counts.sum() / (n_classes * np.maximum(counts, 1))).tolist()


# -------------------------------------------------------------------------------- metrics
def metric_functions(
    task: str,
    scale: tuple[float, float] = (0.0, 1.0),
    extra_metrics: Callable[[np.ndarray, np.ndarray], Mapping[str, float]] | None = None,
) -> tuple[
    Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    Callable[[EvalPrediction], dict[str, float]],
]:
    """`(preprocess_logits_for_metrics, compute_metrics)` for a transformers `Trainer`.

    `compute` returns the offline metrics (scikit-learn) plus, when given,
    `extra_metrics(predictions, references) -> {name: value}` called on the labelled positions:
    class ids (per-residue tasks flattened, ignored positions dropped) or numbers in label units
    (regression). Example: metrics from the `evaluate` library, when online.
    """
    from protein_lm.metrics import classification_metrics, regression_metrics, token_metrics

    def preprocess(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # Keep argmax ids (not (N, T, C) logits) across evaluation batches to save memory.
        return logits.squeeze(-1) if task == "regression" else logits.argmax(-1)

    def compute(pred: EvalPrediction) -> dict[str, float]:
        preds, labels = np.asarray(pred.predictions), np.asarray(pred.label_ids)
        if task == "token-classification":
            m = token_metrics(labels, preds)
            return {k: v for k, v in m.items() if k != "accuracy"}
        if task == "regression":
            mean, std = scale
            return regression_metrics(labels * std + mean, preds * std + mean)
        return classification_metrics(labels, preds)

    if extra_metrics is None:
        return preprocess, compute

    def compute_with_extra(pred: EvalPrediction) -> dict[str, float]:
        preds, labels = np.asarray(pred.predictions), np.asarray(pred.label_ids)
        if task == "token-classification":
            keep = labels != IGNORE_INDEX
            preds, labels = preds[keep], labels[keep]
        elif task == "regression":
            preds, labels = preds * scale[1] + scale[0], labels * scale[1] + scale[0]
        extra = {k: float(v) for k, v in dict(extra_metrics(preds, labels)).items()}
        return {**compute(pred), **extra}

    return preprocess, compute_with_extra


class TokenBudgetTrainer(Trainer):
    """`Trainer` with token-budget batches, optional class weights and local evaluation.

    Extra keyword arguments: `batch_tokens`, `eval_batch_tokens`, `max_length` and optional
    `class_weights` (one float per class, weighted cross-entropy).
    """

    def __init__(
        self,
        *args: Any,
        batch_tokens: int,
        eval_batch_tokens: int,
        max_length: int,
        class_weights: Sequence[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.batch_tokens, self.eval_batch_tokens = batch_tokens, eval_batch_tokens
        self.max_length = max_length
        self.class_weights = None if class_weights is None else list(class_weights)
        # Evaluation is local to each process (see module docstring): no cross-process gather.
        self.gather_function = lambda tensors: tensors

    def get_train_dataloader(self) -> DataLoader:
        ds = self.train_dataset
        sampler = TokenBudgetBatchSampler(
            ds.lengths,
            self.batch_tokens,
            shuffle=True,
            seed=self.args.seed,
            num_replicas=max(1, self.args.world_size),
            rank=self.args.process_index,
        )
        loader = self.accelerator.prepare(
            DataLoader(ds, batch_sampler=sampler, collate_fn=self.data_collator, num_workers=0)
        )
        wrapper = getattr(loader, "batch_sampler", None)
        if wrapper is not None and getattr(wrapper, "batch_sampler", None) is sampler:
            wrapper.num_processes, wrapper.process_index = 1, 0  # already sharded by rank
        return loader

    def _eval_loader(self, ds: Any) -> DataLoader:
        sampler = TokenBudgetBatchSampler(ds.lengths, self.eval_batch_tokens, shuffle=False)
        return DataLoader(ds, batch_sampler=sampler, collate_fn=self.data_collator)

    def get_eval_dataloader(self, eval_dataset: Any = None) -> DataLoader:
        ds = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(ds, str):
            ds = self.eval_dataset[ds]
        return self._eval_loader(ds)

    def get_test_dataloader(self, test_dataset: Any) -> DataLoader:
        return self._eval_loader(test_dataset)

    def _load_best_model(self) -> None:
        # transformers 5.24 reloads the best checkpoint with `load_state_dict(strict=False)`,
        # but `save_pretrained` writes ESM LayerNorms as `gamma`/`beta`: those keys are
        # silently skipped and the LayerNorms keep their last-step values. `from_pretrained`
        # applies the key conversion, so load through it and copy the weights strictly.
        if is_peft_model(self.model) or not self.state.best_model_checkpoint:
            return super()._load_best_model()
        best = type(self.model).from_pretrained(self.state.best_model_checkpoint)
        self.model.load_state_dict(best.state_dict(), strict=True)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        if self.class_weights is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        logits = outputs.logits  # (B, C) or (B, T, C)
        weight = torch.tensor(self.class_weights, dtype=torch.float32, device=logits.device)
        # Weighted mean over labelled positions; float32 so fp16/bf16 logits do not overflow.
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(),
            labels.reshape(-1),
            weight=weight,
            ignore_index=IGNORE_INDEX,
        )
        return (loss, outputs) if return_outputs else loss


def make_collator(task: str, max_length: int) -> Collator:
    """The torch collator for `task`, cutting at `max_length` tokens (policy applied earlier)."""
    return Collator(task, max_length=max_length, return_tensors="pt")  # type: ignore[arg-type]


class LogRecorder(TrainerCallback):
    """A `TrainerCallback` collecting every logged value as `reporting.LogEntry` in `.entries`."""

    def __init__(self) -> None:
        self.entries: list[LogEntry] = []

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        for key, value in (logs or {}).items():
            if (
                key == "epoch"
                or not isinstance(value, (int, float))
                or key.endswith(("_runtime", "_per_second", "_steps_per_second"))
            ):
                continue
            if key.startswith("train_"):  # end-of-training summary (train_loss, ...)
                continue
            split, name = ("train", key)
            for prefix, which in (("eval_", "validation"), ("test_", "test")):
                if key.startswith(prefix):
                    split, name = which, key[len(prefix) :]
            epoch = float(state.epoch or 0.0)
            self.entries.append(LogEntry(state.global_step, epoch, split, name, float(value)))


class TimeBudget(TrainerCallback):
    """A `TrainerCallback` that stops training after `seconds` of wall time (None: no limit).

    The last step (time budget or `max_steps`) is always evaluated and saved, so the choice of the
    best checkpoint sees it. In DDP, rank 0 decides and broadcasts, so all processes stop together.
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.start = 0.0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.start = time.monotonic()

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.global_step >= state.max_steps:
            control.should_evaluate = control.should_save = True
        if self.seconds is None:
            return
        stop = time.monotonic() - self.start > self.seconds
        if args.world_size > 1:
            device = args.device if dist.get_backend() == "nccl" else "cpu"
            flag = torch.tensor([float(stop)], device=device)
            dist.broadcast(flag, src=0)
            stop = bool(flag.item())
        if stop and not control.should_training_stop:
            control.should_training_stop = True
            control.should_evaluate = True
            control.should_save = True


class StopOnNonFinite(TrainerCallback):
    """A `TrainerCallback` that raises `InvalidInputError` once a logged loss or gradient norm
    is NaN or inf (see `plan.check_finite`): the run stops and its output is not published.

    Needs `logging_nan_inf_filter=False`, else the Trainer drops non-finite losses from the
    logged mean. The gradient norm is not checked under fp16, where the loss scaler's skipped
    steps log an infinite norm by design. Logged values are reduced across processes, so every
    DDP rank raises at the same step.
    """

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        names = ("loss",) if args.fp16 else ("loss", "grad_norm")
        for name in names:
            value = (logs or {}).get(name)
            if isinstance(value, (int, float)):
                check_finite(state.global_step, name, float(value))
