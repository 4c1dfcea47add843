"""Hugging Face model card (`README.md`) for a fine-tuned model directory, written offline.

Every `finetune` output directory gets one (`protein_lm.finetuning.reporting.write_run_outputs`
calls `write_model_card`), so the folder can be pushed to the Hub as it is. The card is a README.md
with YAML front matter (library_name, tags, base_model, metrics) and sections for the task,
labels, data and the validation/test metrics read from `metrics.json`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from protein_lm.sequences import atomic_write_text

__all__ = ["MODEL_CARD", "TASK_DESCRIPTIONS", "write_model_card"]

MODEL_CARD = "README.md"
TASK_DESCRIPTIONS = {
    "sequence-classification": "one class per protein",
    "token-classification": "one class per residue",
    "regression": "one number per protein",
}
_PIPELINE = {
    "sequence-classification": "text-classification",
    "token-classification": "token-classification",
    "regression": "text-classification",
}
_HUB_BASES = ("facebook/",)  # base models the Hub knows; `tiny` and local paths are not linked


def _yaml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid YAML scalar


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _metrics_table(metrics: Mapping[str, Any]) -> list[str]:
    rows = ["| split | metric | value |", "|---|---|---|"]
    for split in ("validation", "test"):
        for name, value in sorted((metrics.get(split) or {}).items()):
            if isinstance(value, (int, float)):
                rows.append(f"| {split} | {name} | {value:.4g} |")
    return rows if len(rows) > 2 else ["No metrics recorded."]


def write_model_card(
    output_dir: str | os.PathLike[str],
    *,
    task: str | None = None,
    base_model: str | None = None,
    labels: Sequence[str] | None = None,
    dataset: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    framework: str = "pt",
    extra_text: str = "",
) -> Path:
    """Write `output_dir/README.md`, a Hub model card; missing fields are read from the folder.

    Parameters
    ----------
    task : str, optional
        "sequence-classification", "token-classification" or "regression"; default: `metrics.json`
        `task`, else `config.json` `protein_lm_task`.
    base_model : str, optional
        The model fine-tuned (hub id, local path or `tiny`); default: `metrics.json` `model`.
    labels : sequence of str, optional
        Class names in id order; default: `config.json` `id2label` (none for regression).
    dataset : str, optional
        Free text naming the training data (e.g. "DeepLoc 1.0, membrane vs soluble").
    metrics : mapping, optional
        `{"validation": {...}, "test": {...}}`; default: the folder's `metrics.json`.
    """
    out = Path(output_dir)
    saved = _read_json(out / "metrics.json")
    config = _read_json(out / "config.json")
    metrics = metrics if metrics is not None else saved
    task = task or saved.get("task") or config.get("protein_lm_task") or "unknown"
    base_model = base_model or saved.get("model") or "unknown"
    framework = saved.get("framework", framework)
    if labels is None and config.get("id2label") and task != "regression":
        id2label = config["id2label"]
        labels = [id2label[k] for k in sorted(id2label, key=int)]
    names = sorted(
        n
        for n in {n for s in ("validation", "test") for n in (metrics.get(s) or {})}
        if n != "loss" and not n.startswith("n_")
    )  # counts such as n_residues

    front = [
        "---",
        "library_name: transformers",
        "tags:",
        "- protein",
        "- esm2",
        "- protein_lm",
        f"- {task}",
    ]
    if base_model.startswith(_HUB_BASES):
        front.append(f"base_model: {_yaml_str(base_model)}")
    if task in _PIPELINE:
        front.append(f"pipeline_tag: {_PIPELINE[task]}")
    if names:
        front += ["metrics:"] + [f"- {n}" for n in names]
    front.append("---")

    what = TASK_DESCRIPTIONS.get(task, task)
    body = [
        f"# ESM-2 fine-tuned for {task} ({what})",
        "",
        f"Fine-tuned from `{base_model}` with protein_lm "
        f"({'PyTorch' if framework == 'pt' else 'Keras 3 / TensorFlow'} back end). "
        "The folder is a "
        "standard transformers model directory: `AutoModelFor...from_pretrained` loads it.",
        "",
        "## Labels",
        "",
        ", ".join(f"`{lab}`" for lab in labels)
        if labels
        else "Regression: one number per protein (in the training labels' units).",
        "",
        "## Data",
        "",
        dataset or "Not recorded (see `finetune_config.json` for the training options).",
        "",
        "## Metrics",
        "",
        "Validation: the best checkpoint's scores (used to choose it); "
        "test: scored once, at the end.",
        "",
        *_metrics_table(metrics),
        "",
        "## Use",
        "",
        "```",
        "protein-lm predict --model <this folder or hub id> proteins.fasta -o predictions.csv",
        "```",
    ]
    if extra_text:
        body += ["", extra_text]
    path = out / MODEL_CARD
    atomic_write_text(path, "\n".join(front + [""] + body) + "\n")
    return path
