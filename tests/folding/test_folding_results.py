"""FoldResult and its scores JSON (plddt, pae, max_pae, ptm, iptm) beside each structure."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("biotite")
import biotite.structure.io as bio_io  # noqa: E402

from protein_lm.folding.esmfold import fold, load_folding_model, prepare  # noqa: E402
from protein_lm.folding.results import (  # noqa: E402
    MAX_PAE,
    FoldResult,
    chain_id,
    decode_output,
    interface_ptm,
    scores_path,
)
from protein_lm.sequences import FastaRecord  # noqa: E402

DIMER = "KVFGRCELAAAMKRHGLDNYRGYSLG:NLYIQWLKDGGPSSGRPPPS"  # lysozyme fragment : Trp-cage


@pytest.fixture(scope="module")
def results():
    model = load_folding_model("tiny", device="cpu")
    return {r.id: r for r in fold({"mono": DIMER.split(":")[0], "dimer": DIMER}, model)}


def _ca_b_factors(path: Path) -> np.ndarray:
    arr = bio_io.load_structure(str(path), model=1, extra_fields=["b_factor"])
    return arr.b_factor[arr.atom_name == "CA"]


@pytest.mark.parametrize("fmt", ["pdb", "cif"])
@pytest.mark.parametrize("rid", ["mono", "dimer"])
def test_scores_json_matches_the_structure(results, tmp_path: Path, rid: str, fmt: str) -> None:
    res = results[rid]
    path = res.write(tmp_path / f"{rid}.{fmt}")
    scores = json.loads((tmp_path / f"{rid}_scores.json").read_text())
    assert scores_path(path) == tmp_path / f"{rid}_scores.json"
    n = len(res)
    assert len(scores["plddt"]) == n and np.shape(scores["pae"]) == (n, n)
    assert all(0 <= v <= 100 for v in scores["plddt"])
    np.testing.assert_allclose(scores["plddt"], _ca_b_factors(path), atol=0.0051)
    np.testing.assert_allclose(scores["pae"], res.pae, atol=0.0051)
    assert scores["max_pae"] == MAX_PAE == pytest.approx(res.max_pae)
    assert 0 <= np.min(scores["pae"]) and np.max(scores["pae"]) <= scores["max_pae"]
    assert scores["ptm"] == pytest.approx(res.ptm, abs=5e-5)
    if rid == "dimer":
        assert set(scores) == {"plddt", "pae", "max_pae", "ptm", "iptm"}
        assert 0 < scores["iptm"] < 1 and scores["iptm"] == pytest.approx(res.iptm, abs=5e-5)
    else:
        assert set(scores) == {"plddt", "pae", "max_pae", "ptm"} and res.iptm is None


def test_write_scores_alone_and_no_scores(results, tmp_path: Path) -> None:
    res = results["mono"]
    res.write(tmp_path / "a.pdb", scores=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pdb"]
    out = res.write_scores(tmp_path / "s.json")
    assert json.loads(out.read_text())["plddt"] == res.scores()["plddt"]
    assert not list(tmp_path.glob(".*.tmp"))


def test_nan_scores_write_nothing(results, tmp_path: Path) -> None:
    bad = dataclasses.replace(results["mono"], pae=np.full_like(results["mono"].pae, np.nan))
    with pytest.raises(ValueError, match="'mono' contain NaN"):
        bad.write(tmp_path / "bad.pdb")
    assert not list(tmp_path.iterdir())  # neither the structure nor the scores


def test_interface_ptm_matches_a_numpy_reference() -> None:
    rng = np.random.default_rng(0)
    n, bins = 30, 64
    logits = rng.normal(size=(n, n, bins)).astype(np.float32)
    chains = np.array([0] * 12 + [1] * 18)
    centers = np.append(np.linspace(0, 31, bins - 1) + 0.25, 31.75)
    d0 = 1.24 * (n - 15) ** (1 / 3) - 1.8
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    term = (probs / (1 + centers**2 / d0**2)).sum(-1)
    other = chains[:, None] != chains[None, :]
    expected = max((term[i] * other[i]).sum() / other[i].sum() for i in range(n))
    assert interface_ptm(torch.from_numpy(logits), chains) == pytest.approx(expected, abs=1e-5)


def test_decode_output_of_the_tiny_model_matches_fold(model) -> None:
    """`decode_output` on a raw forward pass (padded batch, a multimer with its linker)."""
    records = [FastaRecord("mono", DIMER.split(":")[0]), FastaRecord("dimer", DIMER)]
    items, _ = prepare(records)
    n, length = len(items), max(it.length for it in items)
    aatype, mask, residx = (torch.zeros(n, length, dtype=torch.long) for _ in range(3))
    for i, it in enumerate(items):
        aatype[i, : it.length] = torch.from_numpy(it.aatype)
        mask[i, : it.length] = 1
        residx[i, : it.length] = torch.from_numpy(it.residx)
    model.trunk.set_chunk_size(None)
    with torch.inference_mode():
        out = model(aatype, attention_mask=mask, position_ids=residx)
    decoded = {r.id: r for r in decode_output(items, out, device="cpu", chunk_size=None)}
    assert list(decoded) == ["mono", "dimer"]
    want = {r.id: r for r in fold({"mono": records[0].sequence, "dimer": DIMER}, model,
                                  chunk_size=None)}  # fmt: skip
    for rid, res in decoded.items():
        n_res = len(res.sequence.replace(":", ""))  # the linker is dropped
        assert isinstance(res, FoldResult) and res.device == "cpu" and res.chunk_size is None
        assert res.positions.shape == (n_res, 37, 3) and res.positions.dtype == np.float32
        assert res.atom_mask.shape == (n_res, 37) and res.pae.shape == (n_res, n_res)
        assert 0 <= res.plddt.min() and res.plddt.max() <= 100  # 0-100, not 0-1
        assert 0 <= res.pae.min() and res.pae.max() <= res.max_pae == pytest.approx(MAX_PAE)
        assert 0 < res.ptm < 1 and res.seconds == 0.0
        assert (res.iptm is None) == (rid == "mono")
        np.testing.assert_allclose(res.positions, want[rid].positions, atol=1e-4)
        np.testing.assert_allclose(res.plddt, want[rid].plddt, atol=1e-3)
        np.testing.assert_allclose(res.pae, want[rid].pae, atol=1e-3)
        assert res.ptm == pytest.approx(want[rid].ptm, abs=1e-5)
        np.testing.assert_array_equal(res.atom_mask, want[rid].atom_mask)
    assert 0 < decoded["dimer"].iptm < 1
    np.testing.assert_array_equal(np.unique(decoded["dimer"].chain_index), [0, 1])


def test_chain_ids() -> None:
    assert [chain_id(k) for k in (0, 25, 26, 61, 62, 63)] == ["A", "Z", "a", "9", "AA", "AB"]
