"""ESMFold on a tiny random config: loading, units, pTM over real residues, multimers, inputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("biotite")
import biotite.structure.io as bio_io  # noqa: E402

from protein_lm.errors import InvalidInputError, InvalidSequenceError  # noqa: E402
from protein_lm.folding.esmfold import (  # noqa: E402
    fold,
    load_folding_model,
    parse_chains,
    prepare,
    tiny_folding_config,
)
from protein_lm.folding.runtime import Folder  # noqa: E402
from protein_lm.sequences import FastaRecord, as_records  # noqa: E402
from proteins import LYSO, TRP  # noqa: E402



def test_tiny_config_is_a_tiny_esmfold(model) -> None:
    from protein_lm.models import load_model

    cfg = tiny_folding_config()
    assert cfg.is_folding_model and cfg.esmfold_config.trunk.num_blocks == 1
    assert cfg.hidden_size == 32 and cfg.vocab_size == 33 and cfg.hidden_dropout_prob == 0.0
    assert type(model).__name__ == "EsmForProteinFolding" and not model.training
    # ESMFold declares no sdpa support in transformers, so it is loaded with eager attention.
    assert model.config._attn_implementation == "eager"
    assert sum(p.numel() for p in model.parameters()) < 200_000
    same = load_folding_model("tiny", device="cpu", seed=0)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), same.parameters()))
    # The core builds no folding models: the tiny ESMFold lives in protein_lm.folding.
    with pytest.raises(ValueError, match=r"load_folding_model\('tiny'\)"):
        load_model("tiny", task="folding", device="cpu")
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
    assert as_records(long, validate_sequences=False) == [FastaRecord("seq0", long)]


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


def test_result_is_frozen(model) -> None:
    (res,) = fold(TRP, model)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.ptm = 1.0  # type: ignore[misc]


def test_load_kwargs_stream_to_cuda_only() -> None:
    """Issue #11: on CUDA the weights go from the safetensors file straight to the GPU."""
    from protein_lm.folding.esmfold import _load_kwargs

    assert _load_kwargs("cpu") == {}
    assert _load_kwargs("cuda") == {"device_map": torch.device("cuda")}
    assert _load_kwargs("cuda:1") == {"device_map": torch.device("cuda", 1)}


def test_load_from_a_directory_with_and_without_device_map(
    model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from protein_lm.folding import esmfold

    model.save_pretrained(tmp_path)
    loaded = load_folding_model(str(tmp_path), device="cpu")
    ref = model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())
    # The CUDA path (device_map, LM built in fp16), exercised on the CPU: the LM is loaded as
    # fp16 and `place` makes it fp32 again for CPU; the trunk never leaves fp32.
    seen = {}
    real = esmfold.place

    def spy(m, device):
        seen["lm"] = next(m.esm.parameters()).dtype
        seen["trunk"] = next(m.trunk.parameters()).dtype
        return real(m, device)

    monkeypatch.setattr(esmfold, "_load_kwargs", lambda dev: {"device_map": torch.device(dev)})
    monkeypatch.setattr(esmfold, "place", spy)
    streamed = load_folding_model(str(tmp_path), device="cpu")
    assert seen == {"lm": torch.float16, "trunk": torch.float32}
    assert next(streamed.esm.parameters()).dtype == torch.float32
    for k, v in streamed.state_dict().items():
        tol = 1e-3 if k.startswith("esm.") else 0.0  # the LM went through fp16
        torch.testing.assert_close(v, ref[k], atol=tol, rtol=tol)


def test_cpu_load_refuses_when_the_weights_exceed_the_free_ram(
    model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #17: on a CPU-only Colab the kernel would die loading esmfold_v1; refuse instead."""
    from protein_lm.errors import InvalidInputError
    from protein_lm.folding import memory

    need = memory.weight_bytes(model.config)
    assert need == sum(p.numel() for p in model.parameters()) * 4  # meta count = real count
    model.save_pretrained(tmp_path)
    monkeypatch.setattr(memory, "free_memory", lambda device: need - 1)
    with pytest.raises(InvalidInputError, match=r"ESMFold needs .* GB of RAM .* Runtime > Change"):
        load_folding_model(str(tmp_path), device="cpu")
    monkeypatch.setattr(memory, "free_memory", lambda device: need)
    assert load_folding_model(str(tmp_path), device="cpu") is not None
