"""The step plan of a fine-tuning run, decided once for both frameworks.

`plan_training` turns the options (`FinetuneOptions`), the prepared splits and the number of
training batches per epoch into what a training loop runs with: the peak learning rate, the total
number of optimiser steps, the evaluation interval, the warm-up steps, and the keys stamped into
the saved model's config (`protein_lm_task`, `protein_lm_label_scale`) that `predict` reads back.
Each backend only counts its batches (they differ: one share per process under torchrun, widths
rounded for XLA in Keras) and runs its own loop with the plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from protein_lm.errors import InvalidInputError
from protein_lm.finetuning.config import FinetuneOptions
from protein_lm.finetuning.splits import PreparedSplits

if TYPE_CHECKING:
    from transformers import PretrainedConfig

__all__ = [
    "DEFAULT_EPOCHS",
    "TrainingPlan",
    "check_finite",
    "default_learning_rate",
    "plan_training",
]

DEFAULT_EPOCHS = 3.0  # when neither `epochs` nor `max_steps` is given


def default_learning_rate(model: str, lora: bool = False) -> float:
    """1e-3 to train `tiny` from scratch, 3e-4 for LoRA adapters, 5e-5 to fine-tune all weights."""
    if model == "tiny":
        return 1e-3
    return 3e-4 if lora else 5e-5


@dataclass(frozen=True)
class TrainingPlan:
    """The numbers one fine-tuning run trains with (built by `plan_training`).

    Attributes
    ----------
    learning_rate : float
        Peak learning rate: linear warm-up over `warmup_steps`, then linear decay to 0 at
        `total_steps` (transformers' "linear" schedule).
    batches_per_epoch : int
        Training batches in one pass over the training split (at least 1).
    total_steps : int
        Optimiser steps of the whole run (a time budget may stop it earlier).
    eval_steps : int
        Steps between two validation evaluations, at most `total_steps`.
    warmup_steps : int
        Steps of the linear warm-up.
    config_stamps : mapping of str to JSON value
        Keys set on the saved model's config: the task, and for regression the label scale
        `[mean, std]` that turns standardised outputs back into label units.
    """

    learning_rate: float
    batches_per_epoch: int
    total_steps: int
    eval_steps: int
    warmup_steps: int
    config_stamps: Mapping[str, Any]

    @property
    def eval_rounds(self) -> int:
        """Number of evaluation intervals; the last one is shorter when they do not divide."""
        return -(-self.total_steps // self.eval_steps)

    def stamp(self, hf_config: PretrainedConfig) -> None:
        """Set `config_stamps` on the transformers config saved with the trained model."""
        for key, value in self.config_stamps.items():
            setattr(hf_config, key, value)


def plan_training(
    config: FinetuneOptions,
    splits: PreparedSplits,
    batches_per_epoch: int,
    *,
    framework: Literal["pt", "tf"],
    lora: bool = False,
) -> TrainingPlan:
    """The `TrainingPlan` of a run: options, prepared splits and batches per epoch -> numbers.

    Parameters
    ----------
    config : FinetuneOptions
        `learning_rate=None` picks `default_learning_rate`; `max_steps`, else `epochs` (default
        3) passes over the training split, set the length; `eval_steps=None` evaluates ten
        times per run; `warmup_fraction` is the warm-up share of all steps.
    splits : PreparedSplits
        Gives the regression label scale stamped into the saved config.
    batches_per_epoch : int
        Training batches per epoch as the backend's loop will draw them (per process).
    framework : {"pt", "tf"}
        The loops differ in two details, kept so that a seed gives the weights it always gave:
        "tf" runs one Keras `fit` epoch per evaluation interval, so `total_steps` is rounded
        up to whole intervals, and floors the warm-up steps; "pt" rounds them up, as
        transformers does with a warm-up fraction.
    lora : bool
        LoRA adapters (PyTorch only) get a higher default learning rate.
    """
    n_batches = max(batches_per_epoch, 1)
    epochs = config.epochs or DEFAULT_EPOCHS
    total = config.max_steps or max(1, math.ceil(epochs * n_batches))
    eval_steps = min(config.eval_steps or max(1, total // 10), total)
    if framework == "tf":
        total = -(-total // eval_steps) * eval_steps  # whole evaluation intervals (Keras epochs)
        warmup = int(config.warmup_fraction * total)
    else:
        warmup = math.ceil(total * config.warmup_fraction)  # transformers' get_warmup_steps
    stamps: dict[str, Any] = {"protein_lm_task": config.task}
    if config.task == "regression":
        stamps["protein_lm_label_scale"] = list(splits.scale)
    return TrainingPlan(
        learning_rate=config.learning_rate or default_learning_rate(config.model, lora),
        batches_per_epoch=n_batches,
        total_steps=total,
        eval_steps=eval_steps,
        warmup_steps=warmup,
        config_stamps=stamps,
    )


def check_finite(step: int, name: str, value: float) -> None:
    """Raise `InvalidInputError` when a logged training `value` (loss, grad norm) is NaN or inf.

    Both backends call it as they log: a diverged run stops there and, its output folder being
    atomic, publishes nothing (a model of NaN weights would predict NaN everywhere).
    """
    if not math.isfinite(value):
        raise InvalidInputError(
            f"training diverged: {name} is {value} at step {step}; nothing was saved; lower "
            "`learning_rate` (--learning-rate) or train in fp32 (--precision fp32)"
        )
