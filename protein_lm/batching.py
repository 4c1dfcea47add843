"""Token-budget batches and a framework-neutral collator with dynamic padding.

A batch costs `(longest sequence + special tokens) x number of sequences` tokens, padding
included (fair-esm's `FastaBatchedDataset.get_batch_indices` rule, not its `fold.py` rule that
ignores padding). Batches are index lists usable as a torch `DataLoader(batch_sampler=...)` or to
build `tf.data` pipelines.

Label alignment for per-residue tasks: residue i (0-based) belongs to token i+1, because token 0
is `<cls>`; `<cls>`, `<eos>`, padding and unlabelled (masked) residues get -100.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from protein_lm.tokenization import encode

__all__ = [
    "IGNORE_INDEX",
    "token_budget_batches",
    "TokenBudgetBatchSampler",
    "align_token_labels",
    "Collator",
]

IGNORE_INDEX = -100


def token_budget_batches(
    lengths: Sequence[int] | np.ndarray,
    max_tokens: int,
    *,
    extra_tokens: int = 2,
    max_batch_size: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    pool_size: int | None = None,
) -> list[list[int]]:
    """Group sequence indices into batches whose padded size stays within `max_tokens`.

    Sequences are sorted by length (within pools of `pool_size` randomly drawn sequences when
    `shuffle=True`, so batches differ between seeds/epochs) and a batch is closed when
    `(max_len + extra_tokens) * (n + 1)` would exceed `max_tokens`. A sequence longer than the
    budget gets a batch of its own. With `shuffle=True` the batch order is shuffled too.

    Examples
    --------
    Three short proteins share a batch; a 100-residue one fills a 110-token budget alone:

    >>> token_budget_batches([30, 100, 25, 28], max_tokens=110)
    [[2, 3, 0], [1]]
    """
    if max_tokens <= 0:
        raise ValueError(f"`max_tokens` must be > 0, got {max_tokens}")
    lengths = np.asarray(lengths, dtype=np.int64)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths)) if shuffle else np.arange(len(lengths))
    pool = pool_size or max(len(order), 1)
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = order[start : start + pool]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        current: list[int] = []
        longest = 0
        for idx in chunk.tolist():
            size = int(lengths[idx]) + extra_tokens
            new_longest = max(longest, size)
            full = max_batch_size is not None and len(current) >= max_batch_size
            if current and (new_longest * (len(current) + 1) > max_tokens or full):
                batches.append(current)
                current, new_longest = [], size
            current.append(idx)
            longest = new_longest
        if current:
            batches.append(current)
    if shuffle:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class TokenBudgetBatchSampler:
    """Iterable of token-budget batches for `DataLoader(batch_sampler=...)`; reshuffles per epoch.

    Call `set_epoch(e)` (the transformers Trainer and accelerate do) for a new order each epoch;
    the order depends only on `seed + epoch`, so every process of a DDP run sees the same batches
    before `shard` picks its share.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        max_tokens: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        pool_size: int | None = 2048,
        max_batch_size: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.max_tokens, self.shuffle, self.seed = max_tokens, shuffle, seed
        self.pool_size, self.max_batch_size = pool_size, max_batch_size
        self.num_replicas, self.rank, self.epoch = num_replicas, rank, 0
        self._batches = self._make()

    def _make(self) -> list[list[int]]:
        batches = token_budget_batches(
            self.lengths,
            self.max_tokens,
            shuffle=self.shuffle,
            seed=self.seed + self.epoch,
            pool_size=self.pool_size,
            max_batch_size=self.max_batch_size,
        )
        if self.num_replicas > 1:
            # Every replica must run the same number of steps: drop the ragged tail.
            usable = len(batches) - len(batches) % self.num_replicas
            batches = batches[self.rank : usable : self.num_replicas]
        return batches

    def set_epoch(self, epoch: int) -> None:
        """Use the order of `epoch` (seeded by `seed + epoch`)."""
        if epoch != self.epoch:
            self.epoch = epoch
            self._batches = self._make()

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)


def align_token_labels(residue_labels: Sequence[Sequence[int]], width: int) -> np.ndarray:
    """Place per-residue labels at token positions 1..L of a `(B, width)` array of -100.

    Parameters
    ----------
    residue_labels : sequence of int sequences
        One label per residue, -100 for unlabelled residues.
    width : int
        Padded token length of the batch (residues + 2 special tokens, or more).

    Examples
    --------
    Residue i's label goes to token i + 1 (after `<cls>`); `<cls>`, `<eos>` and padding get -100:

    >>> align_token_labels([[0, 1, 2], [2, 2]], width=6)
    array([[-100,    0,    1,    2, -100, -100],
           [-100,    2,    2, -100, -100, -100]])
    """
    out = np.full((len(residue_labels), width), IGNORE_INDEX, dtype=np.int64)
    for row, row_labels in enumerate(residue_labels):
        labels = np.asarray(row_labels, dtype=np.int64)
        n = min(len(labels), width - 2)  # truncated sequences keep the labels of kept residues
        out[row, 1 : 1 + n] = labels[:n]
    return out


class Collator:
    """Tokenise and pad a list of examples into numpy arrays (dynamic padding).

    Each example is a mapping with `sequence` and, for training, `labels`: an int class id
    (sequence classification), a float (regression) or a per-residue int sequence with -100 for
    unlabelled residues (token classification).
    """

    def __init__(
        self,
        task: Literal["sequence-classification", "token-classification", "regression", "none"],
        *,
        max_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        return_tensors: Literal["np", "pt", "tf"] = "np",
    ) -> None:
        self.task, self.max_length = task, max_length
        self.pad_to_multiple_of, self.return_tensors = pad_to_multiple_of, return_tensors

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        seqs = [ex["sequence"] for ex in examples]
        batch = encode(
            seqs,
            max_length=self.max_length,
            truncation=self.max_length is not None,
            pad_to_multiple_of=self.pad_to_multiple_of,
            return_tensors="np",
        )
        if examples and "labels" in examples[0] and self.task != "none":
            labels = [ex["labels"] for ex in examples]
            if self.task == "token-classification":
                batch["labels"] = align_token_labels(labels, batch["input_ids"].shape[1])
            elif self.task == "regression":
                batch["labels"] = np.asarray(labels, dtype=np.float32)
            else:
                batch["labels"] = np.asarray(labels, dtype=np.int64)
        if self.return_tensors == "np":
            return batch
        if self.return_tensors == "pt":
            import torch

            return {k: torch.from_numpy(v) for k, v in batch.items()}
        import tensorflow as tf

        return {k: tf.constant(v) for k, v in batch.items()}
