"""`tf.data` input pipeline, batched forward passes and split evaluation for the Keras path.

Training batches are `batching.token_budget_batches` (length bucketing: sorted pools of 2,048
sequences, batch size set by a token budget that counts padding) streamed through
`tf.data.Dataset.from_generator` with dynamic padding per batch, a new order each epoch. Labels are
validated once for both frameworks (`finetuning.splits`) and scored with `protein_lm.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from protein_lm.batching import IGNORE_INDEX, Collator, token_budget_batches
from protein_lm.finetuning.splits import Split
from protein_lm.tokenization import MAX_TOKENS

if TYPE_CHECKING:  # tensorflow loads inside `train_dataset`: this module imports without it
    import tensorflow as tf

    from protein_lm.finetuning.config import FinetuneOptions

__all__ = ["batch_logits", "round_len", "train_dataset", "evaluate_split"]

# `forward`: a Keras model's inference function, e.g. `protein_lm.tf.model.inference_function`.
_Forward = Callable[[dict[str, np.ndarray]], "tf.Tensor"]


# ----------------------------------------------------------------------------------- data
def batch_logits(
    forward: _Forward, sequences: Sequence[str], batch_tokens: int, max_length: int = MAX_TOKENS
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


def round_len(n_tokens: int, multiple: int) -> int:
    """`n_tokens` rounded up to a multiple of `multiple`."""
    return -(-n_tokens // multiple) * multiple


def train_dataset(
    split: Split, task: str, config: FinetuneOptions, multiple: int
) -> tf.data.Dataset:
    """Endless `tf.data` stream of dynamically padded token-budget batches, reshuffled."""
    import tensorflow as tf

    collate = Collator(
        task,  # type: ignore[arg-type]
        max_length=config.max_length,
        pad_to_multiple_of=multiple,
    )
    # Batch by the padded width the collator will produce, so the budget holds after rounding.
    lengths = [
        round_len(min(len(s) + 2, config.max_length), multiple) - 2 for s in split.sequences
    ]

    def batches() -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
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
    forward: _Forward,
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
