"""Predict with a Keras ESM-2 model: a fine-tuned directory (written by either framework).

Task inference, windows for long sequences and the assembly of the result are shared with the
PyTorch path (`protein_lm.finetuning.predictions`); this module only runs the Keras forward
passes, so both frameworks return the same `Predictions` for the same directory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from protein_lm.errors import InvalidInputError
from protein_lm.finetuning.predictions import (
    Predictions,
    assemble_predictions,
    finetuned_model_dir,
    model_task,
    plan_windows,
)
from protein_lm.limits import TRAINING_TOKENS
from protein_lm.sequences import FastaRecord, as_records
from protein_lm.tf.data import batch_logits

if TYPE_CHECKING:  # imports keras: loaded on first use, so a missing extra is named then
    from protein_lm.tf.model import EsmTaskModel

__all__ = ["predict", "load_finetuned"]


def load_finetuned(model_dir: str | os.PathLike[str]) -> EsmTaskModel:
    """The Keras model of a fine-tuned directory; refuses one without a trained head."""
    from protein_lm.tf.checkpoint import load_tf_model

    path = finetuned_model_dir(model_dir)
    task = model_task(json.loads((path / "config.json").read_text()))
    loaded = load_tf_model(str(path), task)
    if loaded.new_head:
        raise InvalidInputError(
            f"{path} has no trained {task} head ({', '.join(loaded.new_head)} missing); "
            "predict needs a directory written by `protein-lm finetune`"
        )
    return loaded


def predict(
    model: str | os.PathLike[str] | EsmTaskModel,
    sequences: str | os.PathLike[str] | Iterable[str | FastaRecord] | dict[str, str],
    *,
    batch_tokens: int = 8000,
    max_length: int = TRAINING_TOKENS,
) -> Predictions:
    """Predict with a fine-tuned model: a directory (PyTorch- or TF-written) or a Keras model.

    Parameters
    ----------
    model : path or EsmTaskModel
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
    from protein_lm.tf.model import inference_function  # quiet TF logs, TensorFlow backend

    if batch_tokens <= 0:
        raise ValueError(f"`batch_tokens` must be > 0, got {batch_tokens}")
    records = as_records(Path(sequences) if isinstance(sequences, os.PathLike) else sequences)
    if isinstance(model, (str, os.PathLike)):
        model = load_finetuned(model)
    cfg = model.hf_config
    task = model_task(cfg)
    forward = inference_function(model)
    items = plan_windows(records, task, max_length - 2)
    logits = batch_logits(forward, [s for _, _, s in items], batch_tokens, max_length)
    outputs: list[Any] = []
    for (_, _, sub), z in zip(items, logits):
        if task == "token-classification":
            outputs.append(_softmax(z[1 : 1 + len(sub)]))  # residue i is token i+1
        elif task == "regression":
            outputs.append(float(z[0]))
        else:
            outputs.append(_softmax(z))
    return assemble_predictions(task, cfg, records, items, outputs)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
