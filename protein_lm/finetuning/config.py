"""Fine-tuning options shared by the PyTorch and Keras paths (one set of names, defaults, checks).

`pt.training.FinetuneConfig` and `tf.training.TFFinetuneConfig` extend `FinetuneOptions` with
the options only their framework has, so both validate the common options identically; their
results extend `FinetuneOutcome`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from protein_lm.finetuning.reporting import LogEntry
from protein_lm.limits import MAX_TOKENS, TRAINING_TOKENS

__all__ = [
    "FINETUNE_TASKS",
    "SELECTION_METRIC",
    "DEFAULT_MAX_LENGTH",
    "FinetuneOptions",
    "FinetuneOutcome",
]

FINETUNE_TASKS = ("sequence-classification", "token-classification", "regression")
# The validation metric that picks the best checkpoint, per task.
SELECTION_METRIC = {
    "sequence-classification": "mcc",
    "token-classification": "q3",
    "regression": "spearman",
}
# The ESM-2 training crop in tokens (see protein_lm.limits): quality past it is untested.
DEFAULT_MAX_LENGTH = TRAINING_TOKENS


@dataclass(frozen=True)
class FinetuneOptions:
    """Options common to both frameworks (all validated in `__post_init__`).

    `epochs` and `max_steps` are exclusive (default: 3 epochs); `max_time_s` additionally stops
    after that many seconds of training. `batch_tokens` is the token budget of a batch, padding and
    special tokens counted. `precision`: "auto" (mixed precision on GPU, fp32 on CPU), "fp32",
    "bf16", "fp16". Sequences longer than `max_length - 2` residues follow `length_policy`
    ("truncate" with a warning, or "error"). `model_overrides` change the config of `model="tiny"`.
    """

    task: str
    model: str = "tiny"
    epochs: float | None = None
    max_steps: int | None = None
    max_time_s: float | None = None
    learning_rate: float | None = None
    batch_tokens: int = 8000
    eval_batch_tokens: int | None = None
    eval_steps: int | None = None
    seed: int = 0
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    precision: str = "auto"
    length_policy: str = "truncate"
    max_length: int = DEFAULT_MAX_LENGTH
    progress: bool = True
    model_overrides: Mapping[str, Any] = field(default_factory=dict)

    def _checks(self) -> list[tuple[bool, str]]:
        return [
            (self.task in FINETUNE_TASKS,
             f"`task` must be one of {FINETUNE_TASKS}, got {self.task!r}"),
            (not (self.epochs and self.max_steps), "give `epochs` or `max_steps`, not both"),
            (self.epochs is None or self.epochs > 0, f"`epochs` must be > 0, got {self.epochs}"),
            (self.max_steps is None or self.max_steps > 0,
             f"`max_steps` must be > 0, got {self.max_steps}"),
            (self.max_time_s is None or self.max_time_s > 0,
             f"`max_time_s` must be > 0, got {self.max_time_s}"),
            (self.learning_rate is None or self.learning_rate > 0,
             f"`learning_rate` must be > 0, got {self.learning_rate}"),
            (self.batch_tokens > 0, f"`batch_tokens` must be > 0, got {self.batch_tokens}"),
            (self.eval_steps is None or self.eval_steps > 0,
             f"`eval_steps` must be > 0, got {self.eval_steps}"),
            (0 <= self.warmup_fraction < 1,
             f"`warmup_fraction` must be in [0, 1), got {self.warmup_fraction}"),
            (self.precision in ("auto", "fp32", "bf16", "fp16"),
             f"`precision` must be 'auto', 'fp32', 'bf16' or 'fp16', got {self.precision!r}"),
            (self.length_policy in ("truncate", "error"),
             f"`length_policy` must be 'truncate' or 'error', got {self.length_policy!r}"),
            (3 <= self.max_length <= MAX_TOKENS,
             f"`max_length` must be in [3, {MAX_TOKENS}] tokens, got {self.max_length}"),
        ]  # fmt: skip

    def __post_init__(self) -> None:
        for ok, message in self._checks():
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (round-trips through `from_dict`)."""
        return {**asdict(self), "model_overrides": dict(self.model_overrides)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Any:
        """Inverse of `to_dict`."""
        return cls(**dict(d))


@dataclass(frozen=True)
class FinetuneOutcome:
    """Outcome of a fine-tuning run. Metrics are fractions (accuracy, q3, macro_f1), correlations
    (mcc, spearman, pearson) or the squared label unit (mse); `train_seconds` is wall time."""

    output_dir: Path
    validation: dict[str, float]
    test: dict[str, float] | None
    best_step: int | None
    steps: int
    train_seconds: float
    id2label: dict[int, str] | None
    log: tuple[LogEntry, ...]
