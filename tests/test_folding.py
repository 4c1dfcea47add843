"""ESMFold on a tiny random config: units, pTM over real residues, multimers, memory policy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("biotite")
import biotite.structure.io as bio_io  # noqa: E402

from protein_lm.folding import runtime as folding_runtime  # noqa: E402
from protein_lm.errors import InvalidInputError, InvalidSequenceError  # noqa: E402
from protein_lm.folding.esmfold import (  # noqa: E402
    FoldingError,
    FoldResult,
    _raw_records,
    fold,
    load_folding_model,
    parse_chains,
    prepare,
    tiny_folding_config,
)
from protein_lm.folding.runtime import Folder, auto_chunk_size  # noqa: E402
from protein_lm.sequences import FastaRecord  # noqa: E402

LYSO = (  # hen lysozyme, PDB 1AKI
    "KVFGRCELAAAMKRHGLDNYRGYSLGNWVCAAKFESNFNTQATNRNTDGSTDYGILQINSRWWCNDGRTPGSRNLCNIPCSALLSSDITASVN"
    "CAKKIVSDGNGMNAWVAWRNRCKGTDVQAWIRGCRL"
)
TRP = "NLYIQWLKDGGPSSGRPPPS"


@pytest.fixture(scope="module")
def model():
    return load_folding_model("tiny", device="cpu")


def test_tiny_config_is_a_tiny_esmfold() -> None:
    from protein_lm.models import load_model

    cfg = tiny_folding_config()
    assert cfg.is_folding_model and cfg.esmfold_config.trunk.num_blocks == 1
    assert cfg.hidden_size == 32 and cfg.vocab_size == 33 and cfg.hidden_dropout_prob == 0.0
    # ESMFold declares no sdpa support in transformers, so it is loaded with eager attention.
    m = load_model("tiny", task="folding", device="cpu", attn_implementation="eager")
    assert type(m).__name__ == "EsmForProteinFolding"
    assert sum(p.numel() for p in m.parameters()) < 200_000
    deeper = tiny_folding_config(esmfold_config={"trunk": {"num_blocks": 2}}, num_layers=3)
    assert deeper.esmfold_config.trunk.num_blocks == 2 and deeper.num_hidden_layers == 3
    assert deeper.esmfold_config.trunk.structure_module.num_blocks == 2  # nested defaults kept


def test_result_units_and_shapes(model) -> None:
    (res,) = fold({"lyso": LYSO}, model)
    n = len(LYSO)
    assert res.id == "lyso" and len(res) == n and res.positions.shape == (n, 37, 3)
    assert (
        res.plddt.shape == (n,) and res.pae.shape == (n, n) and res.chain_index.tolist() == [0] * n
    )
    assert (
        0 <= res.plddt.min() and res.plddt.max() <= 100 and res.plddt.mean() > 1
    )  # 0-100, not 0-1
    assert 0 <= res.pae.min() and res.pae.max() <= 32  # Angstrom, bins up to 31 A
    assert 0 < res.ptm < 1
    assert np.isfinite(res.positions).all() and res.device == "cpu"
    from transformers.models.esm.openfold_utils import residue_constants as rc

    expected = rc.restype_atom37_mask[[rc.restype_order[a] for a in LYSO]].sum()
    assert res.atom_mask.sum() == expected and not res.positions[~res.atom_mask].any()


def test_plddt_ptm_match_transformers_for_one_unpadded_chain(model) -> None:
    (ours,) = fold(LYSO[:60], model, chunk_size=None)
    raw = model.infer(
        LYSO[:60]
    )  # transformers' own path: no padding, so its pTM is over real residues
    np.testing.assert_allclose(ours.plddt, raw["plddt"][0, :, 1].numpy() * 100, atol=1e-4)
    np.testing.assert_allclose(ours.pae, raw["predicted_aligned_error"][0].numpy(), atol=1e-4)
    assert ours.ptm == pytest.approx(float(raw["ptm"]), abs=1e-5)


def test_ptm_and_plddt_ignore_padding_in_a_batch(model) -> None:
    alone = fold({"short": LYSO[:30]}, model)[0]
    batch = fold({"short": LYSO[:30], "long": LYSO}, model, max_tokens=10_000)
    assert [r.id for r in batch] == ["short", "long"]
    assert batch[0].ptm == pytest.approx(alone.ptm, abs=1e-4)
    np.testing.assert_allclose(batch[0].plddt, alone.plddt, atol=1e-3)
    np.testing.assert_allclose(batch[0].positions, alone.positions, atol=1e-3)
    raw = model.infer([LYSO[:30], LYSO])
    assert float(raw["ptm"]) != pytest.approx(
        alone.ptm, abs=1e-4
    )  # transformers: one value per batch


def test_inputs_from_str_dict_list_and_fasta(model, tmp_path: Path) -> None:
    fasta = tmp_path / "in.fasta"
    fasta.write_text(f">a desc\n{TRP}\n>b\n{TRP[:10]}:{TRP[10:]}\n")
    assert [r.id for r in fold(TRP, model)] == ["seq0"]
    assert [r.id for r in fold([TRP, TRP], model)] == ["seq0", "seq1"]
    assert [r.id for r in fold(fasta, model)] == ["a", "b"]
    assert [r.id for r in fold(str(fasta), model)] == ["a", "b"]
    assert [r.id for r in fold(fasta.read_text(), model)] == ["a", "b"]
    assert [r.id for r in fold([FastaRecord("x", TRP)], model)] == ["x"]
    with pytest.raises(InvalidInputError, match="Duplicate"):
        fold([FastaRecord("x", TRP), FastaRecord("x", TRP)], model)
    with pytest.raises(InvalidInputError, match="not found"):
        fold(str(tmp_path / "missing.fasta"), model)
    long = "M" + "ACDEFGHIKLMNPQRSTVWY" * 15  # longer than a file name may be
    assert _raw_records(long) == [FastaRecord("seq0", long)]


def test_heterodimer_has_two_chains_and_no_linker_atoms(model, tmp_path: Path) -> None:
    a, b = LYSO[:40], TRP
    (res,) = fold({"dimer": f"{a}:{b}"}, model)
    assert len(res) == 60 and res.chains == (a, b) and res.sequence == f"{a}:{b}"
    assert res.chain_index.tolist() == [0] * 40 + [1] * 20 and res.pae.shape == (60, 60)
    for fmt in ("pdb", "cif"):
        arr = bio_io.load_structure(str(res.write(tmp_path / f"d.{fmt}")), model=1)
        assert sorted(set(arr.chain_id.tolist())) == ["A", "B"]
        ca = arr[arr.atom_name == "CA"]
        assert len(ca) == 60  # no 25-residue poly-G linker
        assert ca.res_id[ca.chain_id == "B"].tolist() == list(range(1, 21))
        seq_b = "".join(
            __import__("biotite.sequence", fromlist=["x"]).ProteinSequence.convert_letter_3to1(r)
            for r in ca.res_name[ca.chain_id == "B"]
        )
        assert seq_b == b
    assert "TER" in res.to_pdb()


def test_prepare_builds_linker_and_residue_index_jump() -> None:
    (item,), bad = prepare(
        [FastaRecord("d", "MKT:AC:W")], linker_length=2, residue_index_offset=100
    )
    assert not bad
    assert item.aatype.shape == (3 + 2 + 2 + 2 + 1,)
    assert item.real.tolist() == [True] * 3 + [False] * 2 + [True] * 2 + [False] * 2 + [True]
    assert item.residx.tolist() == [0, 1, 2, 3, 4, 105, 106, 107, 108, 209]
    assert item.chain_index.tolist() == [0, 0, 0, 1, 1, 2]
    (no_linker,), _ = prepare([FastaRecord("d", "MKT:AC")], linker_length=0)
    assert no_linker.residx.tolist() == [0, 1, 2, 515, 516]


@pytest.mark.parametrize(
    ("seq", "match"),
    [
        ("MKTJ", r"Invalid residue 'J' at position 4 of 'rec7'"),
        ("MKT:AJ", r"position 2 of 'rec7, chain B'"),
        (":MKT", "separator ':' at the start of 'rec7'"),
        ("MKT:", "separator ':' at the end of 'rec7'"),
        ("MKT::AC", "Empty chain"),
        ("", "empty"),
        ("  \n", "empty"),
    ],
    ids=[
        "letter",
        "letter-chain-b",
        "leading-colon",
        "trailing-colon",
        "double-colon",
        "empty",
        "blank",
    ],
)
def test_bad_sequences_name_the_record(seq: str, match: str) -> None:
    with pytest.raises(InvalidSequenceError, match=match):
        parse_chains(seq, "rec7")
    _, bad = prepare([FastaRecord("rec7", seq)])
    assert bad[0].id == "rec7" and bad[0].reason == "invalid"


def test_bad_record_fails_before_any_folding(model, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Folder, "run", lambda *a, **k: pytest.fail("folded before validation"))
    with pytest.raises(InvalidSequenceError, match="'bad'"):
        fold({"ok": TRP, "bad": "MKT:"}, model)
    with pytest.raises(
        InvalidInputError, match=r"'long' has 129 residues .* max_length 100.*max_length=None"
    ):
        fold({"long": LYSO}, model, max_length=100)


def test_too_long_is_allowed_with_max_length_none(model) -> None:
    (res,) = fold({"long": LYSO}, model, max_length=None, chunk_size=32)
    assert len(res) == 129 and res.chunk_size == 32


def test_unknown_residues_keep_a_ca(model) -> None:
    (res,) = fold("MKXTAUB", model)
    s = res.to_structure()
    assert s.res_name.tolist().count("UNK") == 3
    assert (s.atom_name[s.res_name == "UNK"] == "CA").all()


def test_language_model_is_fp32_on_cpu_even_if_halved(model) -> None:
    model.esm.half()  # what ESMFold.__init__ does when fp16_esm=True
    fold(TRP, model)
    assert next(model.esm.parameters()).dtype == torch.float32
    assert not any(p.requires_grad for p in model.parameters())


# ---------------------------------------------------------------- memory policy
def test_auto_chunk_size_shrinks_with_memory_and_grows_with_length() -> None:
    gib = 2**30
    assert auto_chunk_size(50, 8 * gib) is None
    assert auto_chunk_size(2000, 80 * gib) is not None  # (2000^3 x 4 heads) attention does not fit
    sizes = [auto_chunk_size(800, m * gib) for m in (4, 8, 16, 32)]
    assert sizes == sorted(sizes, key=lambda c: c or 10**9)
    assert auto_chunk_size(3000, 1 * gib) == 4  # nothing fits: smallest, then the OOM fallbacks
    assert auto_chunk_size(500, 4 * gib, batch_size=4) <= (auto_chunk_size(500, 4 * gib) or 10**9)


def _oom(msg: str = "CUDA out of memory (simulated)") -> Exception:
    return torch.cuda.OutOfMemoryError(msg)


def test_oom_retries_with_smaller_chunks(model, monkeypatch: pytest.MonkeyPatch) -> None:
    real_run, attempts = Folder.run, []

    def run(self, items, device, chunk):
        attempts.append((len(items), device, chunk))
        if chunk is None or chunk > 16:
            raise _oom()
        return real_run(self, items, device, chunk)

    monkeypatch.setattr(Folder, "run", run)
    (res,) = fold({"x": LYSO[:60]}, model, chunk_size=None)
    assert res.chunk_size == 16 and res.id == "x"
    assert attempts == [(1, "cpu", None), (1, "cpu", 32), (1, "cpu", 16)]


def test_oom_splits_batches_before_shrinking_chunks(
    model, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run, attempts = Folder.run, []

    def run(self, items, device, chunk):
        attempts.append(len(items))
        if len(items) > 1:
            raise _oom()
        return real_run(self, items, device, chunk)

    monkeypatch.setattr(Folder, "run", run)
    out = fold({"a": TRP, "b": TRP[:15], "c": TRP[:12]}, model, max_tokens=10_000)
    assert [r.id for r in out] == ["a", "b", "c"] and attempts[0] == 3 and attempts.count(1) == 3


def test_oom_on_gpu_falls_back_to_cpu(model, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated GPU: every attempt on 'cuda' runs out of memory, the CPU attempt folds it."""
    real_run, attempts = Folder.run, []

    def run(self, items, device, chunk):
        attempts.append((device, chunk))
        if device == "cuda":
            raise _oom()
        return real_run(self, items, device, chunk)

    monkeypatch.setattr(Folder, "run", run)
    monkeypatch.setattr(folding_runtime, "_free", lambda device: None)
    folder = Folder(model, "cpu", 64, None, cpu_fallback=True)
    folder.home = "cuda"  # pretend the model lives on a GPU
    items, _ = prepare([FastaRecord("x", LYSO[:70])])
    (res,) = folder.fold_batch(items)
    assert isinstance(res, FoldResult) and res.device == "cpu"
    assert attempts == [
        ("cuda", 64),
        ("cuda", 32),
        ("cuda", 16),
        ("cuda", 8),
        ("cuda", 4),
        ("cpu", 64),
    ]


def test_oom_everywhere_is_reported_not_raised_mid_batch(
    model, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = Folder.run

    def run(self, items, device, chunk):
        if any(it.id == "huge" for it in items):
            raise _oom()
        return real_run(self, items, device, chunk)

    monkeypatch.setattr(Folder, "run", run)
    from protein_lm.folding.esmfold import iter_fold

    items, _ = prepare(
        [FastaRecord("ok", TRP), FastaRecord("huge", LYSO), FastaRecord("ok2", TRP[:15])]
    )
    out = {r.id: r for r in iter_fold(items, model, max_tokens=10_000)}
    assert isinstance(out["ok"], FoldResult) and isinstance(out["ok2"], FoldResult)
    assert out["huge"].reason == "out-of-memory" and "larger GPU" in out["huge"].message
    with pytest.raises(FoldingError, match="'huge': out of memory"):
        fold({"ok": TRP, "huge": LYSO}, model)


def test_other_errors_fail_only_their_batch(model, monkeypatch: pytest.MonkeyPatch) -> None:
    real_run = Folder.run

    def run(self, items, device, chunk):
        if items[0].id == "boom":
            raise RuntimeError("kernel exploded")
        return real_run(self, items, device, chunk)

    monkeypatch.setattr(Folder, "run", run)
    from protein_lm.folding.esmfold import iter_fold

    items, _ = prepare([FastaRecord("boom", TRP), FastaRecord("fine", LYSO)])
    out = {r.id: r for r in iter_fold(items, model, max_tokens=30)}
    assert out["boom"].reason == "error" and "kernel exploded" in out["boom"].message
    assert isinstance(out["fine"], FoldResult)


def test_chunk_size_is_validated(model) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        fold(TRP, model, chunk_size=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_language_model_is_fp16_on_gpu() -> None:
    m = load_folding_model("tiny", device="cuda")
    assert next(m.esm.parameters()).dtype == torch.float16
    assert next(m.trunk.parameters()).dtype == torch.float32
    (res,) = fold(LYSO, m)
    assert res.device.startswith("cuda") and np.isfinite(res.positions).all()


def test_result_is_frozen(model) -> None:
    (res,) = fold(TRP, model)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.ptm = 1.0  # type: ignore[misc]
