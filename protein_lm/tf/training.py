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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protein_lm.batching import token_budget_batches
from protein_lm.finetuning.config import SELECTION_METRIC, FinetuneOptions, FinetuneOutcome
from protein_lm.finetuning.plan import plan_training
from protein_lm.finetuning.reporting import CONFIG_FILE, atomic_output_dir, write_run_outputs
from protein_lm.finetuning.splits import prepare_splits
from protein_lm.tf.checkpoint import load_tf_model, save_tf_model
from protein_lm.tf.data import round_len
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
            (
                self.jit_compile in ("auto", True, False),
                f"`jit_compile` must be 'auto', True or False, got {self.jit_compile!r}",
            ),
        ]


@dataclass(frozen=True)
class TFFinetuneResult(FinetuneOutcome):
    """Outcome of the Keras `finetune` (fields: see `FinetuneOutcome`)."""


# ------------------------------------------------------------------------------- finetune
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
    # Keras and TensorFlow load here, on first use: this module imports without the tf extra.
    from protein_lm.tf.trainer import device_settings, fit_and_select

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
    policy, jit = device_settings(config.precision, config.jit_compile)
    multiple = 64 if jit else 1
    lengths = [
        round_len(min(len(s) + 2, config.max_length), multiple) - 2 for s in splits.train.sequences
    ]
    n_batches = len(token_budget_batches(lengths, config.batch_tokens))
    plan = plan_training(config, splits, n_batches, framework="tf")

    with atomic_output_dir(output_dir, overwrite=overwrite, marker=CONFIG_FILE) as tmp:
        model = load_tf_model(
            config.model,
            task,
            id2label=splits.id2label,
            dtype=policy,
            seed=config.seed,
            config_overrides=dict(config.model_overrides) or None,
        )
        fit = fit_and_select(model, splits, config, plan, jit=jit, multiple=multiple)
        plan.stamp(model.hf_config)
        model.hf_config.dtype = "float32"
        save_tf_model(model, tmp)
        write_run_outputs(
            tmp, fit.entries, fit.validation, fit.test,
            config={**config.to_dict(), "framework": "tf"}, task=task, model=config.model,
            title=f"{task} ({config.model}, Keras)", best_step=fit.best_step, steps=fit.steps,
            train_seconds=round(fit.train_seconds, 2), framework="tf",
        )  # fmt: skip
    return TFFinetuneResult(
        Path(output_dir),
        fit.validation,
        fit.test,
        fit.best_step,
        fit.steps,
        fit.train_seconds,
        splits.id2label,
        fit.entries,
    )
