"""`tf.data` input pipeline and split evaluation for the Keras fine-tuning path.

Training batches are `batching.token_budget_batches` (length bucketing: sorted pools of 2,048
sequences, batch size set by a token budget that counts padding) streamed through
`tf.data.Dataset.from_generator` with dynamic padding per batch, a new order each epoch. Labels are
encoded with `data.encode_labels` and scored with `protein_lm.metrics`, as in the PyTorch path.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from protein_lm.batching import IGNORE_INDEX, Collator, token_budget_batches
from protein_lm.errors import InvalidInputError
from protein_lm.tf.predict import batch_logits

if TYPE_CHECKING:
    from protein_lm.tf.training import TFFinetuneConfig

__all__ = ["Split", "prepare_split", "round_len", "train_dataset", "evaluate_split"]


# ----------------------------------------------------------------------------------- data
@dataclass
class Split:
    """A validated split: ids, cleaned sequences and encoded labels (training scale)."""

    ids: list[str]
    sequences: list[str]
    labels: list[Any]  # class id, standardised float, or per-residue ids with -100


def prepare_split(
    data: Any, task: str, label2id: dict[str, int] | None, source: str, config: "TFFinetuneConfig"
) -> tuple[Split, dict[int, str] | None]:
    """Validate a split (errors name the row and id) and encode its labels."""
    import datasets

    from protein_lm.data import encode_labels
    from protein_lm.sequences import validate

    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas DataFrame
        data = datasets.Dataset.from_pandas(data, preserve_index=False)
    elif isinstance(data, Mapping):
        data = datasets.Dataset.from_dict(dict(data))
    if not isinstance(data, datasets.Dataset):
        raise InvalidInputError(
            f"{source}: expected a datasets.Dataset, DataFrame or dict of "
            f"columns, got {type(data).__name__}"
        )
    missing = {"sequence", "label"} - set(data.column_names)
    if missing or len(data) == 0:
        raise InvalidInputError(
            f"{source}: needs rows with columns sequence and label; has "
            f"{len(data)} rows and columns {data.column_names}"
        )
    ids = data["id"] if "id" in data.column_names else [f"row{i + 1}" for i in range(len(data))]
    seqs, limit = [], config.max_length - 2
    for i, (rid, seq) in enumerate(zip(ids, data["sequence"])):
        try:
            seq = validate(seq, str(rid), gaps="keep")
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(
                f"{source}, row {i + 1} (id {rid!r}), field 'sequence': {exc}"
            ) from None
        if task == "token-classification" and len(data[i]["label"]) != len(seq):
            raise InvalidInputError(
                f"{source}, row {i + 1} (id {rid!r}), field 'label': "
                f"{len(data[i]['label'])} labels for {len(seq)} residues"
            )
        if len(seq) > limit and config.length_policy == "error":
            raise InvalidInputError(
                f"{source}, row {i + 1} (id {rid!r}), field 'sequence': "
                f"{len(seq)} residues > {limit}; use length_policy='truncate'"
            )
        seqs.append(seq)
    n_long = sum(len(s) > limit for s in seqs)
    if n_long:
        warnings.warn(
            f"{source}: {n_long} sequence(s) longer than {limit} residues are truncated "
            "(their cut-off residues are not trained or scored)",
            stacklevel=3,
        )
    encoded, id2label = encode_labels(data, task, label2id, source=source)  # type: ignore[arg-type]
    return Split(list(map(str, ids)), seqs, list(encoded["labels"])), id2label


def round_len(n_tokens: int, multiple: int) -> int:
    return -(-n_tokens // multiple) * multiple


def train_dataset(split: Split, task: str, config: "TFFinetuneConfig", multiple: int) -> Any:
    """Endless `tf.data` stream of dynamically padded token-budget batches, reshuffled."""
    import tensorflow as tf

    collate = Collator(task, max_length=config.max_length, pad_to_multiple_of=multiple)
    # Batch by the padded width the collator will produce, so the budget holds after rounding.
    lengths = [
        round_len(min(len(s) + 2, config.max_length), multiple) - 2 for s in split.sequences
    ]

    def batches() -> Any:
        epoch = 0
        while True:
            for idx in token_budget_batches(
                lengths,
                config.batch_tokens,
                shuffle=True,
                seed=config.seed + epoch,
                pool_size=2048,
            ):
                b = collate(
                    [{"sequence": split.sequences[i], "labels": split.labels[i]} for i in idx]
                )
                x = {k: b[k].astype(np.int32) for k in ("input_ids", "attention_mask")}
                y = b["labels"].astype(np.float32 if task == "regression" else np.int32)
                yield x, (y[:, None] if task == "regression" else y)
            epoch += 1

    ids = tf.TensorSpec((None, None), tf.int32)
    y_spec = {
        "token-classification": tf.TensorSpec((None, None), tf.int32),
        "sequence-classification": tf.TensorSpec((None,), tf.int32),
        "regression": tf.TensorSpec((None, 1), tf.float32),
    }[task]
    sig = ({"input_ids": ids, "attention_mask": ids}, y_spec)
    return tf.data.Dataset.from_generator(batches, output_signature=sig).prefetch(2)


# --------------------------------------------------------------------------- evaluation
def evaluate_split(
    forward: Any,
    split: Split,
    task: str,
    batch_tokens: int,
    max_length: int,
    scale: tuple[float, float],
) -> dict[str, float]:
    """Loss (on the training scale) and the task's metrics on a whole split."""
    from protein_lm.metrics import classification_metrics, regression_metrics, token_metrics

    logits = batch_logits(forward, split.sequences, batch_tokens, max_length)
    if task == "token-classification":
        labs, lgts = [], []
        for seq_logits, residue_labels in zip(logits, split.labels):
            n = min(len(residue_labels), seq_logits.shape[0] - 2)
            labs.append(np.asarray(residue_labels[:n]))
            lgts.append(seq_logits[1 : 1 + n])  # residue i is token i+1
        y, z = np.concatenate(labs), np.concatenate(lgts)
        keep = y != IGNORE_INDEX
        m = {k: v for k, v in token_metrics(y, z.argmax(-1)).items() if k != "accuracy"}
        m["loss"] = _cross_entropy(z[keep], y[keep])
        return m
    z = np.stack(logits)  # (N, C) sequence-level logits
    if task == "regression":
        pred, y = z[:, 0], np.asarray(split.labels, np.float64)
        mean, std = scale
        return {
            **regression_metrics(y * std + mean, pred * std + mean),
            "loss": float(np.mean((pred - y) ** 2)),
        }
    y = np.asarray(split.labels)
    return {**classification_metrics(y, z.argmax(-1)), "loss": _cross_entropy(z, y)}


def _cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    z = logits.astype(np.float64) - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())
