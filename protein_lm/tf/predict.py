"""Predict with a Keras ESM-2 model, and the `protein-lm finetune/predict --framework tf` commands.

A model directory is read the same way whichever framework wrote it: the task comes from
`config.json` (`protein_lm_task`, else the architecture and `problem_type`), class names from
`id2label`, and regression predictions are mapped back to label units with
`protein_lm_label_scale` (mean, std) when training standardised them. Per-residue tasks score
sequences longer than the model's 1,022 residues in overlapping windows (probabilities averaged
where windows overlap), so every residue gets a prediction; sequence tasks truncate them with a
warning.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from protein_lm.batching import Collator, token_budget_batches
from protein_lm.errors import InvalidInputError
from protein_lm.sequences import as_records
from protein_lm.tokenization import MAX_TOKENS

# One result type and one task rule for both frameworks (torch_inference imports torch lazily).
from protein_lm.pt.predict import Predictions, model_task

__all__ = ["predict", "batch_logits", "predict_cli", "finetune_cli"]

log = logging.getLogger(__name__)


def batch_logits(
    forward: Any, sequences: Sequence[str], batch_tokens: int, max_length: int = MAX_TOKENS
) -> list[np.ndarray]:
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
        logits = np.asarray(
            forward({k: b[k].astype(np.int32) for k in ("input_ids", "attention_mask")}),
            np.float32,
        )
        for row, i in enumerate(idx):
            out[i] = logits[row, : lengths[i] + 2] if logits.ndim == 3 else logits[row]
    return out  # type: ignore[return-value]


def _load(model: Any) -> Any:
    from protein_lm.tf.checkpoint import load_tf_model

    if not isinstance(model, (str, Path)):
        return model
    path = Path(model)
    if not (path / "config.json").is_file():
        raise InvalidInputError(
            f"--model {str(path)!r} is not a model directory (no config.json); "
            "predict needs a directory written by `protein-lm finetune`"
        )
    cfg = json.loads((path / "config.json").read_text())
    task = model_task(SimpleNamespace(**{"problem_type": None, **cfg}))
    loaded = load_tf_model(str(path), task)
    if loaded.new_head:
        raise InvalidInputError(
            f"{path} has no trained {task} head ({', '.join(loaded.new_head)} "
            "missing); predict needs a directory written by finetune"
        )
    return loaded


def predict(
    model: Any, sequences: Any, *, batch_tokens: int = 8000, max_length: int = MAX_TOKENS - 2
) -> Predictions:
    """Predict with a fine-tuned model: a directory (PyTorch- or TF-written) or a Keras model.

    Parameters
    ----------
    model : path or keras.Model
        A directory written by `finetune` (either framework), or a model from `load_tf_model`.
    sequences : FASTA path, iterable of str / FastaRecord, or {id: sequence}
        Validated with `sequences.as_records` (bare strings get ids seq0, seq1, ...).
    batch_tokens : int
        Token budget per batch, padding counted.

    Returns
    -------
    Predictions
        The same type as `protein_lm.pt.predict.predict` returns (`to_csv` writes the file).
    """
    from protein_lm.tf.model import keras_tf

    keras_tf()  # quiet TF logs, TensorFlow backend
    import tensorflow as tf

    if batch_tokens <= 0:
        raise ValueError(f"`batch_tokens` must be > 0, got {batch_tokens}")
    model = _load(model)
    records = as_records(Path(sequences) if isinstance(sequences, os.PathLike) else sequences)
    cfg = model.hf_config
    task = model_task(cfg)
    spec = tf.TensorSpec((None, None), tf.int32)
    forward = tf.function(
        lambda x: model(x, training=False),
        input_signature=[{"input_ids": spec, "attention_mask": spec}],
    )
    window, ids = max_length - 2, tuple(r.id for r in records)
    if task == "token-classification":
        items = [
            (n, start, r.sequence[start : start + window])
            for n, r in enumerate(records)
            for start in _window_starts(len(r.sequence), window)
        ]
        logits = batch_logits(forward, [s for _, _, s in items], batch_tokens, max_length)
        names = tuple(cfg.id2label[i] for i in range(cfg.num_labels))
        sums = [np.zeros((len(r.sequence), len(names))) for r in records]
        counts = [np.zeros((len(r.sequence), 1)) for r in records]
        for (n, start, sub), lg in zip(items, logits):
            # Probabilities of overlapping windows are averaged (as torch_inference).
            sums[n][start : start + len(sub)] += _softmax(
                lg[1 : 1 + len(sub)]
            )  # residue i: token i+1
            counts[n][start : start + len(sub)] += 1
        lookup = np.array(names)
        preds = tuple("".join(lookup[(s / c).argmax(1)]) for s, c in zip(sums, counts))
        return Predictions(task, ids, preds, None, names)
    cut = sum(len(r.sequence) > window for r in records)
    if cut:
        warnings.warn(
            f"{cut} sequence(s) longer than {window} residues: only their first {window} "
            "residues are used",
            stacklevel=2,
        )
    z = np.stack(batch_logits(forward, [r.sequence for r in records], batch_tokens, max_length))
    if task == "regression":
        mean, std = getattr(cfg, "protein_lm_label_scale", None) or (0.0, 1.0)
        return Predictions(task, ids, tuple(float(v) * std + mean for v in z[:, 0]), None, None)
    names = tuple(cfg.id2label[i] for i in range(cfg.num_labels))
    probs = _softmax(z).astype(np.float32)
    return Predictions(task, ids, tuple(names[k] for k in probs.argmax(1)), probs, names)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _window_starts(length: int, window: int) -> list[int]:
    """Starts of windows of `window` residues covering `length`, overlapping by about half."""
    if length <= window:
        return [0]
    stride = window // 2
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


# ------------------------------------------------------------------------------------ CLI
def predict_cli(args: argparse.Namespace) -> int:
    """`protein-lm predict --framework tf`: write `id, prediction[, prob_<class>...]` CSV."""
    from protein_lm.finetuning.reporting import read_predict_input

    if not Path(args.model).is_dir():
        raise InvalidInputError(
            f"--model {args.model!r} is not a directory; pass the output "
            "directory of `protein-lm finetune`"
        )
    records = read_predict_input(args.input)  # all input checked before the model is loaded
    result = predict(args.model, records, batch_tokens=args.batch_tokens)
    result.to_csv(args.output)
    print(f"{len(result.ids)} predictions ({result.task}) written to {args.output}")
    return 0


def finetune_cli(args: argparse.Namespace) -> int:
    """`protein-lm finetune --framework tf`: read the CSV/TSV files, train, print the metrics."""
    from protein_lm.data import read_table
    from protein_lm.tf.training import TFFinetuneConfig, finetune

    pt_only = [
        flag
        for flag, used in (
            ("--lora", getattr(args, "lora", False)),
            ("--class-weights", getattr(args, "class_weights", "none") not in (None, "none")),
            ("--gradient-checkpointing", getattr(args, "gradient_checkpointing", False)),
            ("--device", getattr(args, "device", None) is not None),
        )
        if used
    ]
    if pt_only:
        raise InvalidInputError(
            f"{', '.join(pt_only)}: PyTorch-only option(s); drop them or use --framework pt"
        )
    # Every file is read and validated before any training starts.
    splits = {
        name: read_table(p, args.task) if p is not None else None
        for name, p in (
            ("train", args.train),
            ("validation", args.validation),
            ("test", args.test),
        )
    }
    config = TFFinetuneConfig(
        task=args.task,
        model=args.model,
        epochs=args.epochs,
        max_steps=args.max_steps,
        max_time_s=getattr(args, "max_time", None),
        learning_rate=args.learning_rate,
        batch_tokens=args.batch_tokens,
        eval_steps=getattr(args, "eval_steps", None),
        seed=args.seed,
        precision=getattr(args, "precision", "auto"),
        length_policy=getattr(args, "length_policy", "truncate"),
        progress=not getattr(args, "no_progress", False),
    )
    result = finetune(
        splits["train"],
        splits["validation"],
        splits["test"],
        config=config,
        output_dir=args.output_dir,
        overwrite=getattr(args, "overwrite", False),
    )
    print(
        f"Saved the model to {result.output_dir} ({result.steps} steps, "
        f"{result.train_seconds:.0f} s); validation: {_fmt(result.validation)}"
        + (f"; test: {_fmt(result.test)}" if result.test else "")
    )
    return 0


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()) if k != "n_residues")
