"""Predict with a Keras ESM-2 model, and the `protein-lm finetune/predict --framework tf` commands.

A model directory is read the same way whichever framework wrote it: the task comes from
`config.json` (`protein_lm_task`, else the architecture and `problem_type`), class names from
`id2label`, and regression predictions are mapped back to label units with
`protein_lm_label_scale` (mean, std) when training standardised them. Per-residue tasks score
sequences longer than the model's 1,022 residues in overlapping windows (logits averaged where
windows overlap), so every residue gets a prediction; sequence tasks truncate them with a warning.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from protein_lm.batching import Collator, token_budget_batches
from protein_lm.errors import InvalidInputError, InvalidSequenceError
from protein_lm.sequences import FastaRecord, read_fasta, validate
from protein_lm.tokenization import MAX_TOKENS

__all__ = ["TFPredictions", "predict", "batch_logits", "read_inputs", "predict_cli", "finetune_cli"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TFPredictions:
    """Predictions for `ids`: class names, numbers (label units) or per-residue class strings;
    `probabilities` (N, C) softmax of sequence classification, columns in `class_names` order."""

    ids: tuple[str, ...]
    predictions: tuple[Any, ...]
    probabilities: np.ndarray | None
    class_names: tuple[str, ...] | None
    task: str


def batch_logits(forward: Any, sequences: Sequence[str], batch_tokens: int,
                 max_length: int = MAX_TOKENS) -> list[np.ndarray]:
    """Logits per sequence in input order: (C,) for sequence heads, (T_i, C) for token heads.

    Batches are token-budget batches of length-sorted sequences (little padding); `forward` maps
    `{"input_ids", "attention_mask"}` int32 arrays to logits. Longer sequences are truncated to
    `max_length` tokens.
    """
    collate = Collator("none", max_length=max_length)
    lengths = [min(len(s) + 2, max_length) - 2 for s in sequences]
    out: list[np.ndarray | None] = [None] * len(sequences)
    for idx in token_budget_batches(lengths, batch_tokens):
        b = collate([{"sequence": sequences[i]} for i in idx])
        logits = np.asarray(forward({k: b[k].astype(np.int32)
                                     for k in ("input_ids", "attention_mask")}), np.float32)
        for row, i in enumerate(idx):
            out[i] = logits[row, : lengths[i] + 2] if logits.ndim == 3 else logits[row]
    return out  # type: ignore[return-value]


def _task_of(cfg: Any) -> str:
    task = getattr(cfg, "protein_lm_task", None)
    if task:
        return str(task)
    arch = (getattr(cfg, "architectures", None) or [""])[0]
    if arch == "EsmForTokenClassification":
        return "token-classification"
    if arch == "EsmForSequenceClassification":
        return "regression" if cfg.problem_type == "regression" else "sequence-classification"
    raise InvalidInputError(f"config.json names architecture {arch!r}: not a fine-tuned "
                            "classifier/regressor; fine-tune it first (protein-lm finetune)")


def _load(model: Any) -> Any:
    from protein_lm.tf_esm import load_tf_model

    if not isinstance(model, (str, Path)):
        return model
    path = Path(model)
    if not (path / "config.json").is_file():
        raise InvalidInputError(f"--model {str(path)!r} is not a model directory (no config.json); "
                                "predict needs a directory written by `protein-lm finetune`")
    cfg = json.loads((path / "config.json").read_text())

    class _Cfg:  # attribute view of config.json for _task_of
        def __init__(self, d: dict[str, Any]) -> None:
            self.__dict__.update(d)

    task = _task_of(_Cfg({"problem_type": None, **cfg}))
    loaded = load_tf_model(str(path), task)
    if loaded.new_head:
        raise InvalidInputError(f"{path} has no trained {task} head ({', '.join(loaded.new_head)} "
                                "missing); predict needs a directory written by finetune")
    return loaded


def predict(model: Any, sequences: Any, *, batch_tokens: int = 8000) -> TFPredictions:
    """Predict with a fine-tuned model (directory path or Keras model from `load_tf_model`).

    Parameters
    ----------
    sequences : str, list of str, {id: sequence}, FASTA path, or list of `FastaRecord`
        Validated with `sequences.validate`; errors name the record.
    """
    import tensorflow as tf

    from protein_lm.sequences import as_records

    model = _load(model)
    records = as_records(sequences)
    cfg, task = model.hf_config, _task_of(model.hf_config)
    spec = tf.TensorSpec((None, None), tf.int32)
    forward = tf.function(lambda x: model(x, training=False),
                          input_signature=[{"input_ids": spec, "attention_mask": spec}])
    seqs, window = [r.sequence for r in records], MAX_TOKENS - 2
    names = tuple(cfg.id2label[i] for i in range(cfg.num_labels)) if task != "regression" else None
    if task == "token-classification":
        pieces, owners = [], []
        for n, seq in enumerate(seqs):
            for start in _window_starts(len(seq), window):
                pieces.append(seq[start : start + window])
                owners.append((n, start))
        logits = batch_logits(forward, pieces, batch_tokens)
        sums = [np.zeros((len(s), cfg.num_labels)) for s in seqs]
        counts = [np.zeros((len(s), 1)) for s in seqs]
        for (n, start), lg in zip(owners, logits):
            m = lg.shape[0] - 2
            sums[n][start : start + m] += lg[1 : 1 + m]  # residue i is token i+1
            counts[n][start : start + m] += 1
        preds = tuple("".join(names[c] for c in (s / c_).argmax(-1)) for s, c_ in zip(sums, counts))
        return TFPredictions(tuple(r.id for r in records), preds, None, names, task)
    long = [r.id for r in records if len(r.sequence) > window]
    if long:
        warnings.warn(f"{len(long)} sequence(s) longer than {window} residues are truncated "
                      f"(first: {long[0]!r})", stacklevel=2)
    z = np.stack(batch_logits(forward, seqs, batch_tokens))
    if task == "regression":
        mean, std = getattr(cfg, "protein_lm_label_scale", None) or (0.0, 1.0)
        return TFPredictions(tuple(r.id for r in records), tuple(float(v) for v in z[:, 0] * std + mean),
                             None, None, task)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    preds = tuple(names[i] for i in p.argmax(-1))
    return TFPredictions(tuple(r.id for r in records), preds, p, names, task)


def _window_starts(length: int, window: int) -> list[int]:
    """Starts of windows of `window` residues covering `length`, overlapping by about half."""
    if length <= window:
        return [0]
    stride = window // 2
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


def read_inputs(path: str | Path) -> list[FastaRecord]:
    """Records of a FASTA file, or of a CSV/TSV with a `sequence` column (and optional `id`)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8-sig")
    if text.lstrip().startswith(">"):
        return read_fasta(path)
    delim = "\t" if path.suffix.lower() in (".tsv", ".tab") or "\t" in text.split("\n", 1)[0] else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delim)
    if "sequence" not in [f.strip() for f in reader.fieldnames or []]:
        raise InvalidInputError(f"{path}: neither FASTA nor a table with a 'sequence' column "
                                f"(columns: {reader.fieldnames})")
    records, seen = [], set()
    for i, row in enumerate(reader, start=1):
        row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        rid = row.get("id") or f"row{i}"
        if rid in seen:
            raise InvalidInputError(f"{path}, row {i}: duplicate id {rid!r}")
        seen.add(rid)
        try:
            records.append(FastaRecord(rid, validate(row["sequence"], rid)))
        except InvalidSequenceError as exc:
            raise InvalidInputError(f"{path}, row {i} (id {rid!r}), field 'sequence': {exc}") from None
    if not records:
        raise InvalidInputError(f"{path}: no data rows")
    return records


# ------------------------------------------------------------------------------------ CLI
def predict_cli(args: argparse.Namespace) -> int:
    """`protein-lm predict --framework tf`: write `id, prediction[, prob_<class>...]` CSV."""
    from protein_lm.reporting import write_predictions

    records = read_inputs(args.input)  # all input checked before the model is loaded
    result = predict(args.model, records, batch_tokens=args.batch_tokens)
    write_predictions(args.output, result.ids, result.predictions, result.probabilities,
                      result.class_names)
    print(f"Wrote {len(result.ids)} {result.task} predictions to {args.output}")
    return 0


def finetune_cli(args: argparse.Namespace) -> int:
    """`protein-lm finetune --framework tf`: read the CSV/TSV files, train, print the metrics."""
    from protein_lm.data import read_table
    from protein_lm.tf_training import TFFinetuneConfig, finetune

    if getattr(args, "lora", False):
        raise InvalidInputError("--lora is available with --framework pt only (peft is PyTorch)")
    splits = {name: read_table(p, args.task) if p is not None else None
              for name, p in (("train", args.train), ("validation", args.validation),
                              ("test", args.test))}
    config = TFFinetuneConfig(task=args.task, model=args.model, epochs=args.epochs,
                              max_steps=args.max_steps, learning_rate=args.learning_rate,
                              batch_tokens=args.batch_tokens, seed=args.seed)
    result = finetune(splits["train"], splits["validation"], splits["test"], config=config,
                      output_dir=args.output_dir, overwrite=getattr(args, "overwrite", False))
    print(f"Saved the model to {result.output_dir} ({result.steps} steps, "
          f"{result.train_seconds:.0f} s); validation: {_fmt(result.validation)}"
          + (f"; test: {_fmt(result.test)}" if result.test else ""))
    return 0


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()) if k != "n_residues")
