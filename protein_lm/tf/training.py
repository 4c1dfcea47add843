"""Fine-tune ESM-2 with Keras 3 `model.fit` (TensorFlow backend) from a transformers checkpoint.

`finetune(train, validation, test, config=TFFinetuneConfig(...), output_dir=...)` is the Keras twin
of `protein_lm.pt.training.finetune`: same inputs (columns `sequence`, `label`, optional `id`,
`mask`), same token-budget batches, same selection metric (MCC, Q3, Spearman), and the same output
directory (a transformers model directory, `metrics.json`, `training_log.csv`,
`training_curves.png`), so a model trained here continues in PyTorch and vice versa.

Input pipeline: `tf.data.Dataset.from_generator` over `batching.token_budget_batches` (length
bucketing: sorted pools of 2,048 sequences, batches sized by a token budget that counts padding)
with dynamic padding per batch. Each Keras "epoch" is one evaluation interval of `eval_steps`
optimiser steps; the best weights by the validation metric are restored at the end.

On GPU, `precision="auto"` trains in mixed bfloat16 (float16 with loss scaling before Ampere) and
`jit_compile="auto"` turns XLA on; batch widths are then rounded up to a multiple of 64 tokens so
XLA compiles a bounded set of shapes. On CPU both stay off (XLA recompiles per shape there).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protein_lm.batching import IGNORE_INDEX, token_budget_batches
from protein_lm.finetuning.config import SELECTION_METRIC, FinetuneOptions, FinetuneOutcome
from protein_lm.finetuning.reporting import (
    LogEntry,
    atomic_output_dir,
    clean_metrics,
    write_run_outputs,
)
from protein_lm.finetuning.splits import prepare_splits
from protein_lm.tf.checkpoint import load_tf_model, save_tf_model
from protein_lm.tf.data import evaluate_split, round_len, train_dataset
from protein_lm.tf.model import keras_tf
from protein_lm.tf.predict import predict

__all__ = [
    "TFFinetuneConfig",
    "TFFinetuneResult",
    "finetune",
    "predict",
    "load_tf_model",
    "save_tf_model",
    "SELECTION_METRIC",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TFFinetuneConfig(FinetuneOptions):
    """Options of one Keras fine-tuning run: `FinetuneOptions` (same names and defaults as the
    PyTorch path) plus `jit_compile`: "auto" (XLA on GPU only), True or False.

    `learning_rate=None`: 1e-3 for `tiny` (from scratch), else 5e-5. `precision="auto"`: mixed
    bf16/fp16 on GPU, fp32 on CPU.
    """

    jit_compile: bool | str = "auto"

    def _checks(self) -> list[tuple[bool, str]]:
        return super()._checks() + [
            (self.jit_compile in ("auto", True, False),
             f"`jit_compile` must be 'auto', True or False, got {self.jit_compile!r}"),
        ]


@dataclass(frozen=True)
class TFFinetuneResult(FinetuneOutcome):
    """Outcome of the Keras `finetune` (fields: see `FinetuneOutcome`)."""


# ------------------------------------------------------------------------------- finetune
def _device_settings(config: TFFinetuneConfig) -> tuple[str, bool]:
    """Keras dtype policy and XLA flag for this machine and config."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    precision = config.precision
    if not gpus:
        if precision in ("bf16", "fp16"):
            warnings.warn(
                f"precision={precision!r} ignored on CPU; training in fp32", stacklevel=3
            )
        return "float32", config.jit_compile is True
    if precision == "auto":
        cc = tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0))
        precision = "bf16" if tuple(cc) >= (8, 0) else "fp16"
    policy = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[precision]
    return policy, config.jit_compile in ("auto", True)


def _schedule(keras: Any, peak: float, total: int, warmup: int) -> Any:
    """Linear warm-up to `peak`, then linear decay to 0 at `total` (transformers' "linear")."""

    class Linear(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step: Any) -> Any:
            s = keras.ops.cast(step, "float32")
            up = s / max(warmup, 1)
            down = (total - s) / max(total - warmup, 1)
            return peak * keras.ops.clip(keras.ops.minimum(up, down), 0.0, 1.0)

        def get_config(self) -> dict[str, Any]:
            return {"peak": peak, "total": total, "warmup": warmup}

    return Linear()


def finetune(
    train: Any,
    validation: Any,
    test: Any = None,
    *,
    config: TFFinetuneConfig,
    output_dir: str | os.PathLike[str],
    overwrite: bool = False,
    source_names: Sequence[str] = ("train", "validation", "test"),
) -> TFFinetuneResult:
    """Fine-tune `config.model` with Keras, keep the best weights on `validation`, score `test`.

    Parameters
    ----------
    train, validation, test : datasets.Dataset, DataFrame or dict of columns
        Columns `sequence`, `label` (class name, number, or one class character per residue),
        optional `id` and `mask` (0/1 per residue, 0 = unlabelled), e.g. from `data.read_table`.
    output_dir : path
        Written atomically; must not exist or be empty unless `overwrite`.
    source_names : three str
        Names of the splits in error messages (the CLI passes the file paths).
    """
    keras = keras_tf()
    import tensorflow as tf

    task = config.task
    splits = prepare_splits(train, validation, test, task, max_length=config.max_length,
                            length_policy=config.length_policy, source_names=source_names)
    train_s, val_s, test_s = splits.train, splits.validation, splits.test
    id2label, scale = splits.id2label, splits.scale

    policy, jit = _device_settings(config)
    multiple = 64 if jit else 1
    lengths = [
        round_len(min(len(s) + 2, config.max_length), multiple) - 2 for s in train_s.sequences
    ]
    n_batches = len(token_budget_batches(lengths, config.batch_tokens))
    total = config.max_steps or max(1, int(np.ceil((config.epochs or 3.0) * n_batches)))
    eval_steps = min(config.eval_steps or max(1, total // 10), total)
    rounds = -(-total // eval_steps)
    total = rounds * eval_steps  # whole evaluation intervals (Keras epochs)
    lr = config.learning_rate or (1e-3 if config.model == "tiny" else 5e-5)

    with atomic_output_dir(output_dir, overwrite=overwrite) as tmp:
        model = load_tf_model(
            config.model,
            task,
            id2label=id2label,
            dtype=policy,
            seed=config.seed,
            config_overrides=dict(config.model_overrides) or None,
        )
        optimizer = keras.optimizers.AdamW(
            learning_rate=_schedule(keras, lr, total, int(config.warmup_fraction * total)),
            weight_decay=config.weight_decay,
            global_clipnorm=1.0,
        )
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])  # as HF Trainer
        loss = (
            keras.losses.MeanSquaredError()
            if task == "regression"
            else keras.losses.SparseCategoricalCrossentropy(
                from_logits=True, ignore_class=IGNORE_INDEX
            )
        )
        model.compile(optimizer=optimizer, loss=loss, jit_compile=jit)
        spec = tf.TensorSpec((None, None), tf.int32)
        forward = tf.function(
            lambda x: model(x, training=False),
            jit_compile=jit,
            input_signature=[{"input_ids": spec, "attention_mask": spec}],
        )
        entries: list[LogEntry] = []
        best: dict[str, Any] = {"score": -np.inf, "step": None, "weights": None, "metrics": {}}
        key = SELECTION_METRIC[task]
        eval_tokens = config.eval_batch_tokens or 2 * config.batch_tokens
        start = time.monotonic()

        class Evaluate(keras.callbacks.Callback):
            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                if config.max_time_s and time.monotonic() - start > config.max_time_s:
                    self.model.stop_training = True

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                step = int(optimizer.iterations.numpy())
                ep = step / max(n_batches, 1)
                entries.append(LogEntry(step, ep, "train", "loss", float((logs or {})["loss"])))
                entries.append(
                    LogEntry(
                        step, ep, "train", "learning_rate", float(optimizer.learning_rate.numpy())
                    )
                )
                m = clean_metrics(
                    evaluate_split(forward, val_s, task, eval_tokens, config.max_length, scale)
                )
                entries.extend(LogEntry(step, ep, "validation", k, v) for k, v in m.items())
                if m[key] > best["score"]:  # keep the best weights in memory, as load_best_model
                    best.update(
                        score=m[key],
                        step=step,
                        metrics=m,
                        weights=[w.numpy() for w in self.model.weights],
                    )

        model.fit(
            train_dataset(train_s, task, config, multiple),
            epochs=rounds,
            steps_per_epoch=eval_steps,
            callbacks=[Evaluate()],
            shuffle=False,
            verbose=1 if config.progress else 0,
        )
        train_seconds = time.monotonic() - start
        steps = int(optimizer.iterations.numpy())
        if best["weights"] is not None:
            model.set_weights(best["weights"])
        test_m = (
            None
            if test_s is None
            else clean_metrics(
                evaluate_split(forward, test_s, task, eval_tokens, config.max_length, scale)
            )
        )
        model.hf_config.protein_lm_task = task
        if task == "regression":
            model.hf_config.protein_lm_label_scale = list(scale)
        model.hf_config.dtype = "float32"
        save_tf_model(model, tmp)
        write_run_outputs(
            tmp, entries, best["metrics"], test_m,
            config={**config.to_dict(), "framework": "tf"}, task=task, model=config.model,
            title=f"{task} ({config.model}, Keras)", best_step=best["step"], steps=steps,
            train_seconds=round(train_seconds, 2), framework="tf",
        )  # fmt: skip
    return TFFinetuneResult(
        Path(output_dir),
        best["metrics"],
        test_m,
        best["step"],
        steps,
        train_seconds,
        id2label,
        tuple(entries),
    )
