"""Framework-neutral outputs of a training run: atomic directory, log, metrics, plot, predictions.

Both training back ends (`protein_lm.pt.training`, `protein_lm.tf.training`) write these files:

- `training_log.csv`: one row per logging event, columns `step, epoch, split, name, value`
  (long format: `split` is "train", "validation" or "test", `name` a loss or metric name such as
  `loss`, `q3`, `accuracy`), written by `write_training_log`;
- `metrics.json`: `{"validation": {...}, "test": {...} | null, "best_step": ..., ...}` written
  by `write_metrics` (validation = the best checkpoint's scores, test = evaluated once at the end);
- `training_curves.png`: loss and validation metric against step (`plot_training_curves`);
- `README.md`: a Hub model card (`protein_lm.finetuning.model_card`);
- `finetune_config.json`: the options of the run.

`write_run_outputs` writes all of these for a finished run, so both back ends write the same files;
the predictions CSV: `id, prediction[, prob_<class>...]` (`write_predictions`);
`read_predict_input`
  reads what `protein-lm predict` accepts (FASTA, or CSV/TSV with `sequence` and optional `id`).

A run writes into `atomic_output_dir(final)`, a temporary sibling folder renamed onto `final` only
when the block finishes without an exception, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protein_lm.errors import InvalidInputError, require
from protein_lm.files import atomic_file, atomic_output_dir, atomic_write_text, read_rows
from protein_lm.sequences import FastaRecord, read_fasta, validate

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "LogEntry",
    "atomic_output_dir",  # re-exported from `protein_lm.files`, its home
    "write_training_log",
    "read_training_log",
    "write_metrics",
    "write_run_outputs",
    "clean_metrics",
    "plot_training_curves",
    "write_predictions",
    "read_predict_input",
    "TRAINING_LOG",
    "METRICS_FILE",
    "CURVES_FILE",
    "CONFIG_FILE",
]

TRAINING_LOG = "training_log.csv"
METRICS_FILE = "metrics.json"
CURVES_FILE = "training_curves.png"
CONFIG_FILE = "finetune_config.json"

log = logging.getLogger(__name__)
_SCORES = ("accuracy", "macro_f1", "mcc", "q3", "spearman", "pearson")  # all within [-1, 1]


@dataclass(frozen=True)
class LogEntry:
    """One logged value: `value` of `name` ("loss", "q3", ...) on `split` at optimiser `step`."""

    step: int
    epoch: float
    split: str  # "train", "validation" or "test"
    name: str
    value: float


def write_training_log(entries: Sequence[LogEntry], path: str | os.PathLike[str]) -> Path:
    """Write `entries` as `training_log.csv` (columns step, epoch, split, name, value)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["step", "epoch", "split", "name", "value"])
    for e in entries:
        writer.writerow([e.step, f"{e.epoch:.4f}", e.split, e.name, repr(float(e.value))])
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def read_training_log(path: str | os.PathLike[str]) -> list[LogEntry]:
    """Read a `training_log.csv` written by `write_training_log`."""
    return [
        LogEntry(int(r["step"]), float(r["epoch"]), r["split"], r["name"], float(r["value"]))
        for r in read_rows(path)
    ]


def _clean(obj: Any) -> Any:  # any JSON-like value (numpy scalars included)
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None (JSON has no NaN)."""
    if isinstance(obj, Mapping):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def clean_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """One type per metric whichever path produced it: counts (`n_*`, e.g. `n_residues`) are
    int, everything else float (loggers hand counts over as floats)."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        value = value.item() if hasattr(value, "item") else value
        if key.startswith("n_") and value is not None and math.isfinite(value):
            out[key] = round(value)
        else:
            out[key] = float(value) if isinstance(value, numbers.Real) else value
    return out


def write_metrics(
    path: str | os.PathLike[str],
    validation: Mapping[str, Any],
    test: Mapping[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """Write `metrics.json` = `{"validation": ..., "test": ... or null, **extra}` (sorted keys)."""
    payload = {
        "validation": clean_metrics(validation),
        "test": clean_metrics(test) if test is not None else None,
    }
    payload.update(extra)
    atomic_write_text(path, json.dumps(_clean(payload), indent=2, sort_keys=True) + "\n")
    return Path(path)


def write_run_outputs(
    output_dir: str | os.PathLike[str],
    entries: Sequence[LogEntry],
    validation: Mapping[str, Any],
    test: Mapping[str, Any] | None,
    *,
    config: Mapping[str, Any],
    task: str,
    model: str,
    title: str,
    **extra: Any,
) -> Path:
    """Write a finished run's files into `output_dir` (the model itself is saved by the back end).

    `training_log.csv`, `metrics.json` (`task`, `model` and `extra` beside the scores),
    `training_curves.png`, `finetune_config.json` (`config`) and the Hub model card `README.md`,
    which reads the model's `config.json` for the labels, so save the model first.
    """
    from protein_lm.finetuning.model_card import write_model_card

    out = Path(output_dir)
    write_training_log(entries, out / TRAINING_LOG)
    write_metrics(out / METRICS_FILE, validation, test, task=task, model=model, **extra)
    plot_training_curves(entries, out / CURVES_FILE, title=title)
    atomic_write_text(out / CONFIG_FILE, json.dumps(dict(config), indent=2) + "\n")
    write_model_card(out)
    return out


def plot_training_curves(
    entries: Sequence[LogEntry], path: str | os.PathLike[str], *, title: str = ""
) -> Path:
    """Save a two-panel PNG: losses (train, validation) and validation metrics against step."""
    require("matplotlib", "notebooks")
    # A bare Figure draws with its own canvas: no pyplot, and the user's backend is never changed
    # (matplotlib.use() in a notebook kernel would silence every later plt.show()).
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    ax_loss, ax_metric = fig.subplots(1, 2)
    series: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
    for e in entries:
        xs, ys = series.setdefault((e.split, e.name), ([], []))
        xs.append(e.step)
        ys.append(e.value)
    for (split, name), (xs, ys) in sorted(series.items()):
        # Test is scored once; learning rate, grad norm, counts and (unbounded) MSE: not plotted.
        if split == "test" or ("loss" not in name and name not in _SCORES):
            continue
        ax = ax_loss if "loss" in name else ax_metric
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=f"{split} {name}")
    ax_loss.set(xlabel="optimiser step", ylabel="loss", title="loss")
    ax_metric.set(xlabel="optimiser step", ylabel="score", title="validation metrics")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_metric):
        if ax.lines:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    # A file object, so the format comes from `path` and not from the temporary file's name.
    fmt = Path(path).suffix.lstrip(".").lower() or None
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format=fmt)
    return Path(path)


def write_predictions(
    path: str | os.PathLike[str],
    ids: Sequence[str],
    predictions: Sequence[str | float],
    probabilities: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Write the predictions CSV: `id, prediction` plus `prob_<class>` columns when given.

    Parameters
    ----------
    predictions : sequence
        Class names, numbers (regression) or per-residue strings (token tasks), one per id.
    probabilities : array of float, shape (N, C), optional
        Class probabilities of sequence classification, columns in `class_names` order.
    """
    if len(ids) != len(predictions):
        raise ValueError(f"{len(ids)} ids but {len(predictions)} predictions")
    header = ["id", "prediction"]
    if probabilities is not None:
        width = len(probabilities[0]) if len(ids) else len(class_names or ())
        if class_names is None or len(class_names) != width:
            raise ValueError(f"`class_names` must name all {width} probability columns")
        header += [f"prob_{c}" for c in class_names]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for i, (rid, pred) in enumerate(zip(ids, predictions)):
        is_number = isinstance(pred, numbers.Real) and not isinstance(pred, numbers.Integral)
        row = [rid, repr(float(pred)) if is_number else pred]
        if probabilities is not None:
            row += [f"{float(p):.6g}" for p in probabilities[i]]
        writer.writerow(row)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def read_predict_input(path: str | os.PathLike[str]) -> list[FastaRecord]:
    """Records of a FASTA file, or of a CSV/TSV with a `sequence` column (optional `id`).

    Other columns (e.g. `label`) are ignored. Raises `InvalidInputError` naming the file, row and
    field for a missing file, no records, a missing column or an invalid sequence.
    """
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: file not found")
    if path.suffix.lower() not in (".csv", ".tsv", ".tab"):
        return read_fasta(path)
    reader = read_rows(path)
    if "sequence" not in (reader.fieldnames or []):
        raise InvalidInputError(f"{path}: no 'sequence' column; found {reader.fieldnames}")
    records = []
    for i, row in enumerate(reader, start=1):
        rid = (row.get("id") or "").strip() or f"row{i}"
        try:
            records.append(FastaRecord(rid, validate(row["sequence"] or "", rid)))
        except ValueError as exc:
            raise InvalidInputError(
                f"{path}, row {i} (id {rid!r}), field 'sequence': {exc}"
            ) from None
    if not records:
        raise InvalidInputError(f"{path}: no data rows")
    return records
