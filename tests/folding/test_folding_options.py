"""FoldOptions: validation, dict round trip, and how the entry points take it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from proteins import TRP

from protein_lm.folding.options import FoldOptions, fold_options


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunk_size": 0}, r"`chunk_size` must be a positive int, 'auto' or None, got 0"),
        ({"chunk_size": "big"}, r"`chunk_size` must be a positive int, 'auto' or None, got 'big'"),
        ({"max_tokens": 0}, r"`max_tokens` must be > 0, got 0\."),
        ({"max_tokens": True}, r"`max_tokens` must be > 0, got True\."),
        ({"num_recycles": -1}, r"`num_recycles` must be >= 0, or None .*, got -1\."),
        ({"num_recycles": 1.5}, r"`num_recycles` must be >= 0, or None .*, got 1\.5\."),
        ({"cpu_fallback": "no"}, r"`cpu_fallback` must be True or False, got 'no'\."),
        ({"device": 0}, r"`device` must be a str such as 'cpu' or 'cuda', or None, got 0\."),
    ],
    ids=["chunk-zero", "chunk-str", "tokens-zero", "tokens-bool", "recycles-negative",
         "recycles-float", "fallback-str", "device-int"],
)  # fmt: skip
def test_invalid_options_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        FoldOptions(**kwargs)


def test_defaults_round_trip_and_frozen() -> None:
    opts = FoldOptions()
    assert (opts.device, opts.chunk_size, opts.max_tokens, opts.num_recycles, opts.cpu_fallback) \
        == (None, "auto", 1024, None, True)  # fmt: skip
    custom = FoldOptions(device="cpu", chunk_size=None, max_tokens=np.int64(64), num_recycles=0,
                         cpu_fallback=False)  # fmt: skip
    for o in (opts, custom):
        assert FoldOptions.from_dict(json.loads(json.dumps(o.to_dict(), default=int))) == o
    with pytest.raises(ValueError, match=r"Unknown FoldOptions keys \['chunk'\]; allowed: "):
        FoldOptions.from_dict({"chunk": 8})
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.max_tokens = 8  # type: ignore[misc]


def test_torch_device_is_kept_as_its_name() -> None:
    torch = pytest.importorskip("torch")
    assert FoldOptions(device=torch.device("cpu")).device == "cpu"


def test_fold_options_merges_keywords_or_takes_the_object() -> None:
    assert fold_options(None, chunk_size=32, max_tokens=64) == FoldOptions(
        chunk_size=32, max_tokens=64
    )
    opts = FoldOptions(chunk_size=16)
    assert fold_options(opts, chunk_size="auto", max_tokens=1024, device=None) is opts
    with pytest.raises(TypeError, match=r"given twice: `options` and \['max_tokens'\]"):
        fold_options(opts, max_tokens=8)
    with pytest.raises(TypeError, match=r"Unknown folding options \['chunk'\]"):
        fold_options(None, chunk=8)
    with pytest.raises(TypeError, match="`options` must be a FoldOptions or None, got dict"):
        fold_options({"chunk_size": 8})  # type: ignore[arg-type]


def test_entry_points_take_options(model, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from protein_lm.folding.bulk import fold_fasta
    from protein_lm.folding.esmfold import build_folder, fold, iter_fold, prepare
    from protein_lm.folding.runtime import Folder
    from protein_lm.sequences import FastaRecord

    opts = FoldOptions(device="cpu", chunk_size=8, num_recycles=0)
    (res,) = fold(TRP, model, options=opts)
    assert res.chunk_size == 8 and res.device == "cpu"
    (kw,) = fold(TRP, model, device="cpu", chunk_size=8, num_recycles=0)
    np.testing.assert_array_equal(res.positions, kw.positions)
    items, _ = prepare([FastaRecord("t", TRP)])
    (it,) = iter_fold(items, model, options=opts)
    assert it.chunk_size == 8
    with pytest.raises(TypeError, match="given twice"):
        fold(TRP, model, options=opts, chunk_size=16)
    with pytest.raises(ValueError, match="`max_tokens` must be > 0"):
        fold(TRP, model, max_tokens=0)
    folder = build_folder(model, opts)
    assert isinstance(folder, Folder) and folder.options is opts
    with pytest.raises(TypeError, match="build_folder takes a FoldOptions, got 'cpu'"):
        build_folder(model, "cpu")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Folder takes a FoldOptions"):
        Folder(model, "cpu")  # type: ignore[arg-type]
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">t\n{TRP}\n")
    report = fold_fasta(fasta, tmp_path / "out", model, options=opts, progress=False)
    assert report.folded == 1 and (tmp_path / "out" / "t.pdb").exists()


def test_cli_refuses_bad_options_before_loading(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("torch")
    from protein_lm.cli import main
    from protein_lm.folding import esmfold

    monkeypatch.setattr(esmfold, "load_folding_model", lambda *a, **k: pytest.fail("loaded"))
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">t\n{TRP}\n")
    assert main(["fold", str(fasta), "-o", str(tmp_path / "o"), "--model", "tiny",
                 "--max-tokens", "0"]) == 2  # fmt: skip
    assert main(["fold", str(fasta), "-o", str(tmp_path / "o"), "--model", "tiny",
                 "--num-recycles", "-1"]) == 2  # fmt: skip
