"""Shared fixtures, built once per session (per xdist worker): the real data folder, the parsed
FLIP secondary-structure data and its short CPU subsets, a small random ESM-2 folder, and one small
model fine-tuned on those subsets. Tests must not modify what these return (write into
`tmp_path`)."""

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


# A 2-layer, 32-wide ESM-2: what the CPU fine-tuning tests train (seconds, not minutes).
SMALL = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4,
         "intermediate_size": 64}


def short_records(ds, n: int, max_len: int = 120):
    """The first `n` records of a split with at most `max_len` residues (fast CPU tests)."""
    keep = [i for i, s in enumerate(ds["sequence"]) if len(s) <= max_len][:n]
    return ds.select(keep)


@pytest.fixture(scope="session")
def secondary_structure(shared_data: Path):
    """`load_secondary_structure()` (FLIP SS3, ~2 s to parse), parsed once per session."""
    from protein_lm.data import load_secondary_structure

    return load_secondary_structure()


@pytest.fixture(scope="session")
def ss(secondary_structure) -> dict:
    """Short FLIP SS3 subsets: 64 train, 16 validation, 16 test records of <= 120 residues."""
    d = secondary_structure
    return {"train": short_records(d["train"], 64),
            "validation": short_records(d["validation"], 16),
            "test": short_records(d["test"], 16)}


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random `SMALL` ESM-2 masked-LM folder with its tokenizer, to pass as `--model`."""
    pytest.importorskip("torch")
    from protein_lm.models import load_model
    from protein_lm.tokenization import hf_tokenizer

    d = tmp_path_factory.mktemp("small_model")
    load_model("tiny", "masked-lm", config_overrides=SMALL, device="cpu").save_pretrained(d)
    hf_tokenizer().save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def ss_run(ss: dict, tmp_path_factory: pytest.TempPathFactory):
    """One PyTorch token-classification fine-tune of `SMALL` on `ss` (4 steps, validation every 2,
    test split scored): `(output folder, FinetuneResult)`, shared by the training, predict and CLI
    tests."""
    pytest.importorskip("torch")
    from protein_lm.pt.training import FinetuneConfig, finetune

    out = tmp_path_factory.mktemp("ss_run") / "run"
    config = FinetuneConfig(task="token-classification", max_steps=4, eval_steps=2,
                            batch_tokens=2000, progress=False, model_overrides=SMALL, device="cpu")
    return out, finetune(ss["train"], ss["validation"], ss["test"], config=config, output_dir=out)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules holding a `slow` test run first, the rest keep their order.

    With `make test`'s `-n 2 --dist loadscope --no-loadscope-reorder` each module is a unit of
    work handed out in this order, so the two learning tests (minutes each, their own modules)
    start at once on the two workers and the many short modules fill in behind them, instead of
    a learning test starting last. Without xdist the order changes nothing but the log.
    """
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)
