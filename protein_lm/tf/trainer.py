"""The Keras side of a fine-tuning run: device settings, schedule, validation callback, `fit`.

`protein_lm.tf.training.finetune` (importable without TensorFlow) validates the splits, builds the
shared `TrainingPlan` and loads the model, then calls `fit_and_select` here: AdamW with the
linear warm-up/decay schedule of transformers, one Keras "epoch" per evaluation interval, the
validation split scored after each, and the best weights (by the task's selection metric) kept
in memory and restored at the end, as transformers' `load_best_model_at_end`. This module is the
Keras twin of `protein_lm.pt.trainer`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from protein_lm.batching import IGNORE_INDEX
from protein_lm.finetuning.config import SELECTION_METRIC, FinetuneOptions
from protein_lm.finetuning.plan import TrainingPlan, check_finite
from protein_lm.finetuning.reporting import LogEntry, clean_metrics
from protein_lm.finetuning.splits import PreparedSplits, Split
from protein_lm.tf.data import evaluate_split, train_dataset
from protein_lm.tf.model import EsmTaskModel, inference_function, keras_tf

keras_tf()  # the TensorFlow backend, chosen before keras is imported here
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

__all__ = ["FitOutcome", "LinearSchedule", "BestOnValidation", "device_settings", "fit_and_select"]


def device_settings(precision: str, jit_compile: bool | str) -> tuple[str, bool]:
    """Keras dtype policy and XLA flag: mixed precision and XLA on GPU ("auto"), fp32 on CPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        if precision in ("bf16", "fp16"):
            warnings.warn(
                f"precision={precision!r} ignored on CPU; training in fp32", stacklevel=3
            )
        return "float32", jit_compile is True
    if precision == "auto":
        cc = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
        precision = "bf16" if tuple(cc) >= (8, 0) else "fp16"
    policy = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[precision]
    return policy, jit_compile in ("auto", True)


class LinearSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to `peak`, then linear decay to 0 at `total` (transformers' "linear")."""

    def __init__(self, peak: float, total: int, warmup: int) -> None:
        super().__init__()
        self.peak, self.total, self.warmup = peak, total, warmup

    def __call__(self, step: tf.Tensor) -> tf.Tensor:
        s = keras.ops.cast(step, "float32")
        up = s / max(self.warmup, 1)
        down = (self.total - s) / max(self.total - self.warmup, 1)
        return self.peak * keras.ops.clip(keras.ops.minimum(up, down), 0.0, 1.0)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments (Keras serialisation)."""
        return {"peak": self.peak, "total": self.total, "warmup": self.warmup}


class BestOnValidation(keras.callbacks.Callback):
    """Scores the validation split after every Keras epoch (one evaluation interval).

    Logs the training loss, the learning rate of `optimizer` and the validation metrics as
    `LogEntry`s in `entries`, keeps the weights with the best `SELECTION_METRIC` in memory
    (`best_*`), stops training once `max_time_s` seconds have passed since `start`, and raises
    `InvalidInputError` on a non-finite training loss.
    """

    def __init__(
        self,
        forward: Callable[[dict[str, np.ndarray]], tf.Tensor],
        split: Split,
        config: FinetuneOptions,
        plan: TrainingPlan,
        scale: tuple[float, float],
        *,
        optimizer: keras.optimizers.Optimizer,
        start: float,
    ) -> None:
        super().__init__()
        self.forward, self.split, self.config, self.plan = forward, split, config, plan
        self.scale, self.optimizer, self.start = scale, optimizer, start
        self.key = SELECTION_METRIC[config.task]
        self.entries: list[LogEntry] = []
        self.best_score = -np.inf
        self.best_step: int | None = None
        self.best_metrics: dict[str, float] = {}
        self.best_weights: list[np.ndarray] | None = None

    def evaluate(self, split: Split) -> dict[str, float]:
        """Loss and task metrics of the current weights on `split`."""
        config = self.config
        eval_tokens = config.eval_batch_tokens or 2 * config.batch_tokens
        return clean_metrics(
            evaluate_split(
                self.forward, split, config.task, eval_tokens, config.max_length, self.scale
            )
        )

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # Raise, not just stop (keras' TerminateOnNaN): a stopped fit would still save the
        # NaN weights (or the last finite "best") and exit 0.
        if logs and "loss" in logs:
            step = int(self.optimizer.iterations.numpy())
            check_finite(step, "loss", float(np.asarray(logs["loss"])))
        max_time = self.config.max_time_s
        if max_time and time.monotonic() - self.start > max_time:
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        optimizer = self.optimizer
        step = int(optimizer.iterations.numpy())
        ep = step / self.plan.batches_per_epoch
        self.entries.append(LogEntry(step, ep, "train", "loss", float((logs or {})["loss"])))
        lr = float(optimizer.learning_rate.numpy())
        self.entries.append(LogEntry(step, ep, "train", "learning_rate", lr))
        m = self.evaluate(self.split)
        self.entries.extend(LogEntry(step, ep, "validation", k, v) for k, v in m.items())
        if m[self.key] > self.best_score:  # keep the best weights in memory, as load_best_model
            self.best_score, self.best_step, self.best_metrics = m[self.key], step, m
            self.best_weights = [w.numpy() for w in self.model.weights]


@dataclass(frozen=True)
class FitOutcome:
    """What `fit_and_select` hands back: the log, the best validation step and metrics, the test
    metrics of the restored best weights, the steps taken and the training wall time (s)."""

    entries: tuple[LogEntry, ...]
    best_step: int | None
    validation: dict[str, float]
    test: dict[str, float] | None
    steps: int
    train_seconds: float


def _compile(
    model: EsmTaskModel, config: FinetuneOptions, plan: TrainingPlan, jit: bool
) -> keras.optimizers.AdamW:
    optimizer = keras.optimizers.AdamW(
        learning_rate=LinearSchedule(plan.learning_rate, plan.total_steps, plan.warmup_steps),
        weight_decay=config.weight_decay,
        global_clipnorm=1.0,
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])  # as HF Trainer
    loss = (
        keras.losses.MeanSquaredError()
        if config.task == "regression"
        else keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, ignore_class=IGNORE_INDEX
        )
    )
    model.compile(optimizer=optimizer, loss=loss, jit_compile=jit)
    return optimizer


def fit_and_select(
    model: EsmTaskModel,
    splits: PreparedSplits,
    config: FinetuneOptions,
    plan: TrainingPlan,
    *,
    jit: bool,
    multiple: int,
) -> FitOutcome:
    """Train `model` by `plan`, restore its best weights on validation, then score the test split.

    `multiple` rounds batch widths up (64 under XLA, so it compiles a bounded set of shapes).
    """
    optimizer = _compile(model, config, plan, jit)
    forward = inference_function(model, jit_compile=jit)
    start = time.monotonic()
    callback = BestOnValidation(
        forward, splits.validation, config, plan, splits.scale, optimizer=optimizer, start=start
    )
    model.fit(
        train_dataset(splits.train, config.task, config, multiple),
        epochs=plan.eval_rounds,
        steps_per_epoch=plan.eval_steps,
        callbacks=[callback],
        shuffle=False,
        verbose=1 if config.progress else 0,
    )
    train_seconds = time.monotonic() - start
    steps = int(optimizer.iterations.numpy())
    if callback.best_weights is not None:
        model.set_weights(callback.best_weights)
    test = None if splits.test is None else callback.evaluate(splits.test)
    return FitOutcome(
        tuple(callback.entries),
        callback.best_step,
        callback.best_metrics,
        test,
        steps,
        train_seconds,
    )
