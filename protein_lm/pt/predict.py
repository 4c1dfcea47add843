"""Predict with a fine-tuned model directory (written by `finetune` or any ESM `save_pretrained`).

Sequences are run in length-sorted token-budget batches and returned in input order. Per-residue
tasks cover sequences longer than the model's window (1,022 residues) with overlapping windows
(stride half a window) whose class probabilities are averaged, so every residue gets a prediction;
sequence-level tasks read the first 1,022 residues (with a warning naming how many were cut).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protein_lm.batching import Collator, token_budget_batches
from protein_lm.errors import InvalidInputError, require
from protein_lm.finetuning.reporting import write_predictions
from protein_lm.sequences import FastaRecord, as_records

__all__ = ["Predictions", "predict", "predict_cli", "model_task"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Predictions:
    """Predictions for `ids`, in input order.

    `predictions` holds class names (sequence classification), floats in the training label unit
    (regression) or one class character per residue (token classification). `probabilities` is
    float32 (N, C) in `class_names` order for sequence classification, else None. `failed` lists
    the ids whose batch ran out of GPU memory: their prediction is "" (NaN for regression).
    """

    task: str
    ids: tuple[str, ...]
    predictions: tuple[Any, ...]
    probabilities: np.ndarray | None
    class_names: tuple[str, ...] | None
    failed: tuple[str, ...] = ()

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write `id, prediction[, prob_<class>...]` (see `reporting.write_predictions`)."""
        return write_predictions(path, self.ids, self.predictions, self.probabilities,
                                 self.class_names if self.probabilities is not None else None)


def model_task(config: Any) -> str:
    """The task of a saved model: `protein_lm_task` in its config, else inferred from its class."""
    task = getattr(config, "protein_lm_task", None)
    if task:
        return str(task)
    arch = (getattr(config, "architectures", None) or [""])[0]
    if "TokenClassification" in arch:
        return "token-classification"
    if "SequenceClassification" in arch:
        return "regression" if config.problem_type == "regression" else "sequence-classification"
    raise InvalidInputError(f"Model architecture {arch!r} is not a fine-tuned classification or "
                            "regression head; pass a directory written by `protein-lm finetune`")


def _windows(length: int, window: int) -> list[int]:
    """Start offsets of windows of `window` residues covering `length`, stride `window // 2`."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, max(window // 2, 1)))
    return [*starts, length - window]


def predict(
    model_dir: str | os.PathLike[str],
    sequences: str | os.PathLike[str] | Iterable[str | FastaRecord] | dict[str, str],
    *,
    batch_tokens: int = 8000,
    device: str | None = None,
    max_length: int = 1024,
    progress: bool = False,
) -> Predictions:
    """Predict with the fine-tuned model in `model_dir`.

    Parameters
    ----------
    sequences : FASTA path, iterable of str / FastaRecord, or {id: sequence}
        Validated with `sequences.as_records` (bare strings get ids seq0, seq1, ...).
    batch_tokens : int
        Token budget per batch (padding counted); lower it on a small GPU.
    """
    torch = require("torch", "torch")
    transformers = require("transformers", "torch")
    from protein_lm.models import load_model, resolve_device

    if batch_tokens <= 0:
        raise ValueError(f"`batch_tokens` must be > 0, got {batch_tokens}")
    records = as_records(Path(sequences) if isinstance(sequences, os.PathLike) else sequences)
    config = transformers.AutoConfig.from_pretrained(str(model_dir))
    task = model_task(config)
    dev = resolve_device(device)
    model = load_model(str(model_dir), task, device=dev).eval()  # type: ignore[arg-type]
    window = max_length - 2
    # One work item per (record, window start); sequence-level tasks use the first window only.
    items: list[tuple[int, int, str]] = []
    cut = 0
    for r, rec in enumerate(records):
        starts = _windows(len(rec.sequence), window) if task == "token-classification" else [0]
        cut += task != "token-classification" and len(rec.sequence) > window
        items += [(r, s, rec.sequence[s : s + window]) for s in starts]
    if cut:
        warnings.warn(f"{cut} sequence(s) longer than {window} residues: only their first "
                      f"{window} residues are used", stacklevel=2)
    collate = Collator("none", max_length=max_length, return_tensors="pt")
    batches = token_budget_batches([len(s) for _, _, s in items], batch_tokens)
    outputs: list[Any] = [None] * len(items)
    tqdm = require("tqdm.auto", "torch").tqdm
    with torch.inference_mode():
        for batch in tqdm(batches, desc="predict", unit="batch", disable=not progress):
            enc = collate([{"sequence": items[i][2]} for i in batch])
            try:
                logits = model(**{k: v.to(dev) for k, v in enc.items()}).logits.float()
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                log.error("GPU out of memory on a batch of %d sequence(s) (longest %d residues); "
                          "skipped. Lower --batch-tokens (now %d) to fit it.", len(batch),
                          max(len(items[i][2]) for i in batch), batch_tokens)
                continue  # its outputs stay None: reported in `failed`
            for row, i in enumerate(batch):
                if task == "token-classification":  # residues are tokens 1..L
                    n = len(items[i][2])
                    outputs[i] = torch.softmax(logits[row, 1 : n + 1], -1).cpu().numpy()
                elif task == "regression":
                    outputs[i] = float(logits[row, 0])
                else:
                    outputs[i] = torch.softmax(logits[row], -1).cpu().numpy()
    return _assemble(task, config, records, items, outputs)


def _assemble(task: str, config: Any, records: Sequence[FastaRecord],
              items: Sequence[tuple[int, int, str]], outputs: Sequence[Any]) -> Predictions:
    ids = tuple(rec.id for rec in records)
    bad = {r for (r, _, _), out in zip(items, outputs) if out is None}
    failed = tuple(ids[r] for r in sorted(bad))
    if task == "regression":
        mean, std = getattr(config, "protein_lm_label_scale", None) or (0.0, 1.0)
        # Undo the training standardisation: predictions in the label unit.
        preds = tuple(math.nan if o is None else float(o) * std + mean for o in outputs)
        return Predictions(task, ids, preds, None, None, failed)
    names = tuple(config.id2label[i] for i in range(len(config.id2label)))
    if task == "sequence-classification":  # one item per record, in record order
        probs = np.stack([np.full(len(names), np.nan) if o is None else o for o in outputs])
        best = np.nan_to_num(probs).argmax(1)
        preds = tuple("" if r in bad else names[k] for r, k in enumerate(best))
        return Predictions(task, ids, preds, probs.astype(np.float32), names, failed)
    sums = [np.zeros((len(rec.sequence), len(names)), dtype=np.float64) for rec in records]
    counts = [np.zeros((len(rec.sequence), 1)) for rec in records]
    for (r, start, sub), probs in zip(items, outputs):
        if probs is not None:
            sums[r][start : start + len(sub)] += probs
            counts[r][start : start + len(sub)] += 1
    lookup = np.array(names)
    preds = tuple("" if r in bad else "".join(lookup[(s / c).argmax(1)])
                  for r, (s, c) in enumerate(zip(sums, counts)))
    return Predictions(task, ids, preds, None, names, failed)


def predict_cli(args: Any) -> int:
    """`protein-lm predict --framework pt`: FASTA/CSV in, predictions CSV out."""
    from protein_lm.finetuning.reporting import read_predict_input

    if not Path(args.model).is_dir():
        raise InvalidInputError(f"--model {args.model!r} is not a directory; pass the output "
                                "directory of `protein-lm finetune`")
    records = read_predict_input(args.input)
    result = predict(args.model, records, batch_tokens=args.batch_tokens, device=args.device,
                     progress=True)
    result.to_csv(args.output)
    print(f"{len(result.ids)} predictions ({result.task}) written to {args.output}")
    if result.failed:
        print(f"{len(result.failed)} record(s) failed (GPU out of memory), first: "
              f"{result.failed[0]}; rerun them with a lower --batch-tokens", file=sys.stderr)
        return 1
    return 0
