"""Structure writers (round trip through biotite); analysis vs biotite/tmtools on real PDB data."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

biotite_struc = pytest.importorskip("biotite.structure")
import biotite.structure.io as bio_io  # noqa: E402
import tmtools  # noqa: E402

from protein_lm.errors import InvalidInputError, StructureWriteError  # noqa: E402
from protein_lm.folding.structure import (  # noqa: E402
    Structure,
    ca_rmsd,
    compare,
    load_structure,
    read_metadata,
    secondary_structure,
    tm_score,
)


@pytest.fixture(scope="module")
def structures(shared_data: Path) -> Path:
    return shared_data / "structures"


def _kabsch_rmsd(a: np.ndarray, b: np.ndarray) -> float:
    """Independent reference: RMSD after optimal superposition (numpy SVD)."""
    a, b = a - a.mean(0), b - b.mean(0)
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    rot = u @ np.diag([1, 1, d]) @ vt
    return float(np.sqrt((((b @ rot) - a) ** 2).sum(1).mean()))


def test_ca_rmsd_between_nmr_models_of_1l2y_matches_numpy_kabsch(structures: Path) -> None:
    stack = bio_io.load_structure(str(structures / "1l2y.pdb"))
    assert stack.stack_depth() == 38
    ca = stack[:, stack.atom_name == "CA"]
    for k in (1, 5, 37):
        ours = ca_rmsd(stack[0], stack[k])
        assert ours == pytest.approx(_kabsch_rmsd(ca[0].coord, ca[k].coord), abs=1e-4)
        fitted, _ = biotite_struc.superimpose(ca[0], ca[k])
        assert ours == pytest.approx(float(biotite_struc.rmsd(ca[0], fitted)), abs=1e-5)
    assert 0.1 < ca_rmsd(stack[0], stack[1]) < 3.0  # NMR models of one peptide: close, not equal


def test_tm_score_of_itself_is_one_and_matches_tmtools(structures: Path) -> None:
    lyso = load_structure(structures / "1aki.pdb")
    assert tm_score(lyso, lyso) == pytest.approx(1.0, abs=1e-6)
    stack = bio_io.load_structure(str(structures / "1l2y.pdb"))
    a, b = stack[0][stack[0].atom_name == "CA"], stack[1][stack[1].atom_name == "CA"]
    direct = tmtools.tm_align(
        b.coord.astype(float),
        a.coord.astype(float),
        "NLYIQWLKDGGPSSGRPPPS",
        "NLYIQWLKDGGPSSGRPPPS",
    )
    assert tm_score(stack[0], stack[1]) == pytest.approx(direct.tm_norm_chain2, abs=1e-9)
    assert 0.3 < tm_score(stack[0], stack[1]) < 1.0


def test_pdb_and_cif_of_1l2y_load_the_same_atoms(structures: Path) -> None:
    pdb, cif = load_structure(structures / "1l2y.pdb"), load_structure(structures / "1l2y.cif")
    assert len(pdb) == len(cif) == 304
    np.testing.assert_allclose(pdb.coord, cif.coord, atol=1e-3)
    assert ca_rmsd(pdb, cif) < 1e-3


def test_compare_pairs_residues_by_sequence_when_reference_has_gaps(structures: Path) -> None:
    lyso = load_structure(structures / "1aki.pdb")
    stack = bio_io.load_structure(str(structures / "1l2y.pdb"))
    model, ref = stack[0], stack[3]
    gappy = ref[(ref.res_id < 5) | (ref.res_id > 8)]  # experimental file missing residues 5-8
    cmp = compare(model, gappy)
    assert cmp.n_aligned == 16 and cmp.reference_length == 16 and cmp.model_length == 20
    assert cmp.sequence_identity == pytest.approx(1.0)
    keep = (model.res_id < 5) | (model.res_id > 8)
    assert cmp.rmsd == pytest.approx(ca_rmsd(gappy, model[keep]), abs=1e-4)
    same = compare(lyso, structures / "1aki.pdb")
    assert same.rmsd < 1e-4 and same.tm_score == pytest.approx(1.0) and same.n_aligned == 129


def test_secondary_structure_of_trp_cage_has_its_n_terminal_helix(structures: Path) -> None:
    ss = secondary_structure(load_structure(structures / "1l2y.pdb"))
    assert len(ss) == 20 and set(ss) <= set("HEC")
    assert "HHHHHHH" in ss[1:10]  # the alpha helix of residues 2-8
    lyso = secondary_structure(load_structure(structures / "1aki.pdb"))
    assert len(lyso) == 129 and lyso.count("H") > 30 and "E" in lyso


def test_load_structure_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        load_structure(tmp_path / "nope.pdb")


# ---------------------------------------------------------------- writers
@pytest.fixture(scope="module")
def lysozyme(structures: Path) -> Structure:
    arr = load_structure(structures / "1aki.pdb")
    rng = np.random.default_rng(0)
    return dataclasses.replace(
        Structure.from_atom_array(arr, {"ptm": "0.8123"}),
        b_factor=rng.uniform(0, 100, len(arr)).astype(np.float32),
    )


@pytest.mark.parametrize("fmt", ["pdb", "cif"])
def test_writer_round_trips_through_biotite(lysozyme: Structure, tmp_path: Path, fmt: str) -> None:
    path = lysozyme.write(tmp_path / f"lyso.{fmt}")
    back = bio_io.load_structure(str(path), model=1, extra_fields=["b_factor"])
    assert len(back) == len(lysozyme)
    assert back.atom_name.tolist() == lysozyme.atom_name.tolist()
    assert back.res_name.tolist() == lysozyme.res_name.tolist()
    assert back.res_id.tolist() == lysozyme.res_id.tolist()
    assert back.chain_id.tolist() == lysozyme.chain_id.tolist()
    assert back.element.tolist() == lysozyme.element.tolist()
    np.testing.assert_allclose(back.coord, lysozyme.coords, atol=5e-4)  # 3 decimals
    written = [float(f"{float(b):.2f}") for b in lysozyme.b_factor]  # the format's 2 decimals
    np.testing.assert_allclose(back.b_factor, written, atol=1e-6)
    assert read_metadata(path) == {"ptm": "0.8123"}
    assert not list(tmp_path.glob("*.tmp"))


def test_pdb_columns_are_fixed_width(lysozyme: Structure) -> None:
    atoms = [ln for ln in lysozyme.to_pdb().splitlines() if ln.startswith("ATOM")]
    assert {len(ln) for ln in atoms} == {80}
    first = atoms[0]
    assert (
        first[12:16] == " N  "
        and first[17:20] == "LYS"
        and first[21] == "A"
        and first[22:26] == "   1"
    )


def _toy(n_chains: int = 1, coord: float = 1.0) -> Structure:
    n = 3 * n_chains
    chains = np.array([f"{k}" if k < 10 else f"C{k}" for k in range(n_chains) for _ in range(3)])
    return Structure(
        np.full((n, 3), coord, np.float32),
        np.array(["N", "CA", "C"] * n_chains),
        np.array(["GLY"] * n),
        np.ones(n, int),
        chains,
        np.array(["N", "C", "C"] * n_chains),
        np.full(n, 50.0, np.float32),
    )


def test_check_writable_rejects_what_pdb_cannot_hold() -> None:
    nan = _toy()
    nan.coords[1, 0] = np.nan
    for fmt in ("to_pdb", "to_mmcif"):
        with pytest.raises(StructureWriteError, match="Non-finite coordinate at atom 2"):
            getattr(nan, fmt)()
    with pytest.raises(StructureWriteError, match="overflows the PDB 8.3f.*mmCIF"):
        _toy(coord=12345.0).to_pdb()
    assert "12345.000" in _toy(coord=12345.0).to_mmcif()
    big = dataclasses.replace(_toy(), res_id=np.array([1, 1, 10000]))
    with pytest.raises(StructureWriteError, match="9999 residues"):
        big.to_pdb()
    with pytest.raises(StructureWriteError, match="chain id of at most 1"):
        _toy(n_chains=11).to_pdb()
    many = dataclasses.replace(
        _toy(63), chain_id=np.array([f"{k:02d}" for k in range(63) for _ in range(3)])
    )
    with pytest.raises(StructureWriteError, match="63 chains do not fit PDB.*mmCIF"):
        many.to_pdb()
    assert many.to_mmcif().count("ATOM ") == 189
    with pytest.raises(StructureWriteError, match="B-factor"):
        dataclasses.replace(_toy(), b_factor=np.full(3, 1000.0, np.float32)).to_pdb()
    with pytest.raises(ValueError, match="expected 3"):
        Structure(np.zeros((3, 3)), np.array(["N"]), *([np.array(["X"] * 3)] * 5))


def test_mmcif_with_many_chains_round_trips(tmp_path: Path) -> None:
    many = dataclasses.replace(
        _toy(63), chain_id=np.array([f"{k:02d}" for k in range(63) for _ in range(3)])
    )
    back = bio_io.load_structure(str(many.write(tmp_path / "many.cif")), model=1)
    assert len(set(back.chain_id.tolist())) == 63
