"""Predict in PyTorch with a fine-tuned model directory (from `finetune` or `save_pretrained`).

Sequences are run in length-sorted token-budget batches and returned in input order. Windows for
long sequences, task inference and the assembly of the result are shared with the Keras path
(`protein_lm.finetuning.predictions`); this module only runs the PyTorch forward passes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from protein_lm.batching import Collator, token_budget_batches
from protein_lm.errors import require
from protein_lm.finetuning.predictions import (
    Predictions,
    assemble_predictions,
    finetuned_model_dir,
    model_task,
    plan_windows,
)
from protein_lm.limits import TRAINING_TOKENS
from protein_lm.precision import cpu_precision
from protein_lm.sequences import FastaRecord, as_records

__all__ = ["Predictions", "predict", "model_task"]

log = logging.getLogger(__name__)


def predict(
    model_dir: str | os.PathLike[str],
    sequences: str | os.PathLike[str] | Iterable[str | FastaRecord] | dict[str, str],
    *,
    batch_tokens: int = 8000,
    device: str | None = None,
    max_length: int = TRAINING_TOKENS,
    progress: bool = False,
    precision: str = "auto",
) -> Predictions:
    """Predict with the fine-tuned model in `model_dir`.

    Parameters
    ----------
    sequences : FASTA path, iterable of str / FastaRecord, or {id: sequence}
        Validated with `sequences.as_records` (bare strings get ids seq0, seq1, ...).
    batch_tokens : int
        Token budget per batch (padding counted); lower it on a small GPU.
    precision : {"auto", "float32", "bfloat16", "int8"}
        CPU numerics (`protein_lm.precision`); ignored on CUDA. Probabilities are float32.
    """
    torch = require("torch", "torch")
    transformers = require("transformers", "torch")
    from protein_lm.models import load_model, resolve_device

    if batch_tokens <= 0:
        raise ValueError(f"`batch_tokens` must be > 0, got {batch_tokens}")
    records = as_records(Path(sequences) if isinstance(sequences, os.PathLike) else sequences)
    model_dir = finetuned_model_dir(model_dir)
    config = transformers.AutoConfig.from_pretrained(str(model_dir))
    task = model_task(config)
    dev = resolve_device(device)
    model = load_model(str(model_dir), task, device=dev).eval()  # type: ignore[arg-type]
    items = plan_windows(records, task, max_length - 2)
    collate = Collator("none", max_length=max_length, return_tensors="pt")
    batches = token_budget_batches([len(s) for _, _, s in items], batch_tokens)
    outputs: list[Any] = [None] * len(items)
    tqdm = require("tqdm.auto", "torch").tqdm
    with cpu_precision(model, precision) as model, torch.inference_mode():
        for batch in tqdm(batches, desc="predict", unit="batch", disable=not progress):
            enc = collate([{"sequence": items[i][2]} for i in batch])
            try:
                logits = model(**{k: v.to(dev) for k, v in enc.items()}).logits.float()
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                log.error(
                    "GPU out of memory on a batch of %d sequence(s) (longest %d residues); "
                    "skipped. Lower --batch-tokens (now %d) to fit it.",
                    len(batch),
                    max(len(items[i][2]) for i in batch),
                    batch_tokens,
                )
                continue  # its outputs stay None: reported in `failed`
            for row, i in enumerate(batch):
                if task == "token-classification":  # residues are tokens 1..L
                    n = len(items[i][2])
                    outputs[i] = torch.softmax(logits[row, 1 : n + 1], -1).cpu().numpy()
                elif task == "regression":
                    outputs[i] = float(logits[row, 0])
                else:
                    outputs[i] = torch.softmax(logits[row], -1).cpu().numpy()
    return assemble_predictions(task, config, records, items, outputs)
