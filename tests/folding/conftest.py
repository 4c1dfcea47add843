"""Shared by the folding tests: the tiny random ESMFold, built once per test file."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")  # per file: a test that patches the model cannot leak
def model():
    """A tiny random ESMFold on CPU (seeded; eval mode)."""
    pytest.importorskip("torch")
    from protein_lm.folding.esmfold import load_folding_model

    return load_folding_model("tiny", device="cpu")
