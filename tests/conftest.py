"""Shared fixtures: the real data folder and tiny models built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from protein_lm.data import data_dirs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder holding the bundled real data (../shared/data in tests and CI)."""
    for d in data_dirs():
        if (d / "deeploc").is_dir():
            return d
    pytest.skip("real data folder ../shared/data not found")


@pytest.fixture(scope="session")
def esm_vocab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the ESM-2 vocab.txt, so EsmTokenizer can be built offline."""
    from protein_lm.tokenization import write_vocab

    d = tmp_path_factory.mktemp("vocab")
    write_vocab(d)
    return d
