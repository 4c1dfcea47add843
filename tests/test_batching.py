from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protein_lm.batching import (
    IGNORE_INDEX,
    Collator,
    TokenBudgetBatchSampler,
    align_token_labels,
    token_budget_batches,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 300), min_size=1, max_size=200), st.integers(50, 2000), st.booleans())
def test_token_budget_batches_cover_everything_within_budget(lengths, budget, shuffle) -> None:
    batches = token_budget_batches(lengths, budget, shuffle=shuffle, seed=3, pool_size=50)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for b in batches:
        cost = (max(lengths[i] for i in b) + 2) * len(b)
        assert cost <= budget or len(b) == 1  # an over-long sequence gets a batch of its own


def test_sampler_reshuffles_per_epoch_and_shards() -> None:
    lengths = np.random.default_rng(0).integers(20, 400, size=300)
    s = TokenBudgetBatchSampler(lengths, 2000, seed=1)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first
    r0 = TokenBudgetBatchSampler(lengths, 2000, seed=1, num_replicas=2, rank=0)
    r1 = TokenBudgetBatchSampler(lengths, 2000, seed=1, num_replicas=2, rank=1)
    assert len(r0) == len(r1)
    assert not {i for b in r0 for i in b} & {i for b in r1 for i in b}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.sampled_from([0, 1, 2, IGNORE_INDEX]), min_size=1, max_size=30),
                min_size=1, max_size=5))
def test_token_labels_align_residue_i_to_token_i_plus_1(residue_labels) -> None:
    seqs = ["A" * len(lab) for lab in residue_labels]
    batch = Collator("token-classification")([{"sequence": s, "labels": lab}
                                                for s, lab in zip(seqs, residue_labels)])
    labels, ids = batch["labels"], batch["input_ids"]
    assert labels.shape == ids.shape
    for row, lab in enumerate(residue_labels):
        assert labels[row, 0] == IGNORE_INDEX  # <cls>
        assert labels[row, 1 : 1 + len(lab)].tolist() == lab
        assert (labels[row, 1 + len(lab):] == IGNORE_INDEX).all()  # <eos> and padding
        assert ids[row, 1 + len(lab)] == 2  # token after the last residue is <eos>


def test_collator_sequence_and_regression_labels() -> None:
    ex = [{"sequence": "MKT", "labels": 1}, {"sequence": "M", "labels": 0}]
    b = Collator("sequence-classification")(ex)
    assert b["labels"].tolist() == [1, 0] and b["input_ids"].shape == (2, 5)
    r = Collator("regression")([{"sequence": "MK", "labels": 0.5}])
    assert r["labels"].dtype == np.float32


def test_truncation_keeps_labels_of_kept_residues() -> None:
    out = align_token_labels([[0, 1, 2, 0, 1]], width=4)
    assert out.tolist() == [[IGNORE_INDEX, 0, 1, IGNORE_INDEX]]


def test_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="`max_tokens` must be > 0, got 0"):
        token_budget_batches([1, 2], 0)
