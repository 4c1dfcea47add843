"""Predictions of a fine-tuned model: the result type and the rules both frameworks share.

A model directory is read the same way whichever framework wrote it: the task comes from
`config.json` (`protein_lm_task`, else the architecture and `problem_type`, see `model_task`),
class names from `id2label`, and regression outputs are mapped back to label units with
`protein_lm_label_scale` (mean, std). Per-residue tasks cover sequences longer than the model's
window with overlapping windows (`limits.windows`: stride half a window) whose class probabilities
are averaged, so every residue gets a prediction; sequence-level tasks read the first window only,
with a warning naming how many sequences were cut (`plan_windows`). A backend only runs the
forward passes: `plan_windows` -> forward per item -> `assemble_predictions`.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from protein_lm.errors import InvalidInputError
from protein_lm.finetuning.reporting import write_predictions
from protein_lm.limits import window_starts, windows
from protein_lm.sequences import FastaRecord

if TYPE_CHECKING:
    from transformers import PretrainedConfig

__all__ = [
    "Predictions",
    "model_task",
    "finetuned_model_dir",
    "window_starts",
    "plan_windows",
    "assemble_predictions",
]

log = logging.getLogger(__name__)

# One work item: (record index, start residue of the window, window's residues).
Item = tuple[int, int, str]


@dataclass(frozen=True)
class Predictions:
    """Predictions for `ids`, in input order.

    `predictions` holds class names (sequence classification), floats in the training label unit
    (regression) or one class character per residue (token classification). `probabilities` is
    float32 (N, C) in `class_names` order for sequence classification, else None. `failed` lists
    the ids whose batch ran out of GPU memory or whose output was not finite: their prediction is
    "" (NaN for regression).
    """

    task: str
    ids: tuple[str, ...]
    predictions: tuple[str, ...] | tuple[float, ...]
    probabilities: np.ndarray | None
    class_names: tuple[str, ...] | None
    failed: tuple[str, ...] = ()

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write `id, prediction[, prob_<class>...]` (see `reporting.write_predictions`)."""
        return write_predictions(
            path,
            self.ids,
            self.predictions,
            self.probabilities,
            self.class_names if self.probabilities is not None else None,
        )


def model_task(config: PretrainedConfig | Mapping[str, Any]) -> str:
    """The task of a saved model: `protein_lm_task` in its config, else inferred from its class.

    `config` is a transformers config or the dict of a `config.json`.
    """
    get = config.get if isinstance(config, Mapping) else lambda k: getattr(config, k, None)
    task = get("protein_lm_task")
    if task:
        return str(task)
    arch = (get("architectures") or [""])[0]
    if "TokenClassification" in arch:
        return "token-classification"
    if "SequenceClassification" in arch:
        return "regression" if get("problem_type") == "regression" else "sequence-classification"
    raise InvalidInputError(
        f"Model architecture {arch!r} is not a fine-tuned classification or "
        "regression head; pass a directory written by `protein-lm finetune`"
    )


def finetuned_model_dir(model_dir: str | os.PathLike[str]) -> Path:
    """`model_dir` checked by `models.resolve_model` (config and safetensors present); must be a
    local directory, as `finetune` writes."""
    from protein_lm.models import resolve_model

    source = resolve_model(str(model_dir))
    if not source.local:
        raise InvalidInputError(
            f"Model {str(model_dir)!r} is not a local directory; predict "
            "needs the output directory of `protein-lm finetune`"
        )
    return Path(source.name)


def plan_windows(records: Sequence[FastaRecord], task: str, window: int) -> list[Item]:
    """One work item per (record, window); sequence-level tasks use the first window only."""
    items: list[Item] = []
    cut = 0
    for r, rec in enumerate(records):
        per_residue = task == "token-classification"
        parts = windows(rec.sequence, window) if per_residue else [(0, rec.sequence[:window])]
        cut += not per_residue and len(rec.sequence) > window
        items += [(r, s, sub) for s, sub in parts]
    if cut:
        warnings.warn(
            f"{cut} sequence(s) longer than {window} residues: only their first "
            f"{window} residues are used",
            stacklevel=3,
        )
    return items


def assemble_predictions(
    task: str,
    config: PretrainedConfig,
    records: Sequence[FastaRecord],
    items: Sequence[Item],
    outputs: Sequence[np.ndarray | float | None],
) -> Predictions:
    """Combine per-item outputs into `Predictions` in record order.

    `outputs[i]` belongs to `items[i]`: class probabilities (C,) for sequence classification,
    (len(window), C) for token classification, a float (training scale) for regression, or None
    for an item whose batch failed (its record is listed in `failed`).
    """
    ids = tuple(rec.id for rec in records)
    # A NaN/inf output (broken weights, an overflow in half precision) is a failure, never a
    # prediction: argmax over NaN would name a class, and a NaN regression value looks like data.
    nonfinite = sorted(
        {r for (r, _, _), o in zip(items, outputs) if o is not None and not np.isfinite(o).all()}
    )
    if nonfinite:
        log.error(
            "non-finite model output (NaN/inf) for %d record(s), listed as failed: %s",
            len(nonfinite),
            ", ".join(ids[r] for r in nonfinite[:10]) + (" ..." if len(nonfinite) > 10 else ""),
        )
        outputs = [None if r in nonfinite else o for (r, _, _), o in zip(items, outputs)]
    bad = {r for (r, _, _), out in zip(items, outputs) if out is None}
    failed = tuple(ids[r] for r in sorted(bad))
    if task == "regression":
        mean, std = getattr(config, "protein_lm_label_scale", None) or (0.0, 1.0)
        # Undo the training standardisation: predictions in the label unit.
        values = tuple(math.nan if o is None else float(o) * std + mean for o in outputs)
        return Predictions(task, ids, values, None, None, failed)
    names = tuple(config.id2label[i] for i in range(len(config.id2label)))
    if task == "sequence-classification":  # one item per record, in record order
        probs = np.stack([np.full(len(names), np.nan) if o is None else o for o in outputs])
        best = np.nan_to_num(probs).argmax(1)
        preds = tuple("" if r in bad else names[k] for r, k in enumerate(best))
        return Predictions(task, ids, preds, probs.astype(np.float32), names, failed)
    sums = [np.zeros((len(rec.sequence), len(names)), dtype=np.float64) for rec in records]
    counts = [np.zeros((len(rec.sequence), 1)) for rec in records]
    for (r, start, sub), window_probs in zip(items, outputs):
        if window_probs is not None:
            sums[r][start : start + len(sub)] += window_probs
            counts[r][start : start + len(sub)] += 1
    lookup = np.array(names)
    preds = tuple(
        "" if r in bad else "".join(lookup[(s / c).argmax(1)])
        for r, (s, c) in enumerate(zip(sums, counts))
    )
    return Predictions(task, ids, preds, None, names, failed)
