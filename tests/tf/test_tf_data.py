"""`tf.data`: batched forward passes keep input order; evaluation of a split (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from protein_lm.finetuning.splits import Split
from protein_lm.tf.data import batch_logits, evaluate_split, round_len


def _forward(batch: dict) -> np.ndarray:
    """Fake token head: logit 0 = token id, logit 1 = attention mask, shape (B, T, 2)."""
    return np.stack([batch["input_ids"], batch["attention_mask"]], -1).astype(np.float32)


def test_batch_logits_are_in_input_order_and_unpadded() -> None:
    seqs = ["MKTAYIAK", "GS", "MKTAYIAKQRQISF", "W"]
    out = batch_logits(_forward, seqs, batch_tokens=20)
    assert [o.shape for o in out] == [(len(s) + 2, 2) for s in seqs]
    assert all(o[:, 1].all() for o in out)  # no padded positions returned
    cut = batch_logits(_forward, seqs, batch_tokens=20, max_length=6)
    assert [o.shape[0] for o in cut] == [6, 4, 6, 3]


def test_round_len() -> None:
    assert [round_len(n, 64) for n in (1, 64, 65)] == [64, 64, 128]
    assert round_len(37, 1) == 37


def test_evaluate_split_scores_sequence_classification() -> None:
    split = Split(["a", "b"], ["MK", "GSH"], [1, 0])

    def forward(batch: dict) -> np.ndarray:  # class 1 for length 4 tokens, else class 0
        n = batch["attention_mask"].sum(1)
        return np.stack([(n != 4) * 5.0, (n == 4) * 5.0], -1)

    m = evaluate_split(forward, split, "sequence-classification", 100, 1024, (0.0, 1.0))
    assert m["accuracy"] == 1.0 and m["loss"] == pytest.approx(np.log1p(np.exp(-5.0)))
