"""Protein structures: a `Structure` record with PDB/mmCIF writers, and analysis on biotite.

Writers are hand-written (explicit-width f-strings for PDB, one `atom_site` loop for mmCIF) rather
than biotite's `PDBFile.set_structure`, so that folding does not need biotite,
the checks are ours (`_check_writable`, shared by both formats, with messages that name the
fix) and run metadata (pTM, timing) goes into the file header. Tests round-trip both formats
through biotite.

Analysis (`load_structure`, `ca_rmsd`, `tm_score`, `secondary_structure`, `compare`) uses biotite
and tmtools (the `fold` extra).
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

import numpy as np

from protein_lm.errors import InvalidInputError, StructureWriteError, require
from protein_lm.sequences import atomic_write_text

if TYPE_CHECKING:
    from biotite.structure import AtomArray, AtomArrayStack

# What the comparisons take: an AtomArray (of a stack, the first model), a `Structure` or a path.
_StructureLike: TypeAlias = "AtomArray | AtomArrayStack | Structure | str | os.PathLike[str]"

__all__ = [
    "CHAIN_IDS",
    "Structure",
    "Comparison",
    "load_structure",
    "read_metadata",
    "structure_format",
    "ca_rmsd",
    "tm_score",
    "secondary_structure",
    "compare",
]

# 62 one-character chain ids: what fits PDB column 22 (more chains need mmCIF).
CHAIN_IDS = string.ascii_uppercase + string.ascii_lowercase + string.digits
_META_PREFIX = "REMARK 999 PROTEIN_LM "  # our run metadata in PDB headers (999: free-text remark)
_META_CATEGORY = "_protein_lm."  # ...and in mmCIF, as items of a private category


@dataclass(frozen=True, eq=False)
class Structure:
    """One model of a (multi-chain) structure, atom by atom.

    Attributes
    ----------
    coords : ndarray of float32, shape (N, 3)
        Cartesian coordinates in Angstrom.
    atom_name, res_name, chain_id, element : ndarray of str, shape (N,)
        PDB atom name (`CA`), 3-letter residue name (`ALA`), chain id, element symbol.
    res_id : ndarray of int, shape (N,)
        Residue number, 1-based within each chain.
    b_factor : ndarray of float32, shape (N,)
        B-factor column; for predictions the residue's pLDDT on the 0-100 scale.
    metadata : Mapping[str, str]
        Written as `REMARK 999 PROTEIN_LM key value` (PDB) or `_protein_lm.key value` (mmCIF).
    """

    coords: np.ndarray
    atom_name: np.ndarray
    res_name: np.ndarray
    res_id: np.ndarray
    chain_id: np.ndarray
    element: np.ndarray
    b_factor: np.ndarray
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.coords)
        if np.shape(self.coords) != (n, 3):
            raise ValueError(f"`coords` must have shape (N, 3), got {np.shape(self.coords)}")
        for name in ("atom_name", "res_name", "res_id", "chain_id", "element", "b_factor"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"`{name}` has {len(getattr(self, name))} entries, expected {n} (atoms)"
                )

    def __len__(self) -> int:
        return len(self.coords)

    @property
    def chain_ids(self) -> list[str]:
        """Chain ids in order of first appearance."""
        return list(dict.fromkeys(self.chain_id.tolist()))

    def to_pdb(self) -> str:
        """PDB text (ATOM/TER/END records); `StructureWriteError` if PDB cannot hold it."""
        _check_writable(self, "pdb")
        # PDB is a columnar format: every width below is the column range of the wwPDB v3.3 spec.
        lines = [f"{_META_PREFIX}{key} {value}" for key, value in self.metadata.items()]
        serial = 0
        n = len(self)
        for i in range(n):
            serial += 1
            name = self.atom_name[i]
            name = name if len(name) == 4 else f" {name}"  # 1-letter elements start in column 14
            x, y, z = (float(v) for v in self.coords[i])
            lines.append(
                f"{'ATOM':<6}{serial:>5} {name:<4} {self.res_name[i]:>3} {self.chain_id[i]:1}"
                f"{int(self.res_id[i]):>4}    {x:>8.3f}{y:>8.3f}{z:>8.3f}{1.0:>6.2f}"
                f"{float(self.b_factor[i]):>6.2f}{'':10}{self.element[i]:>2}  "
            )
            if i == n - 1 or self.chain_id[i + 1] != self.chain_id[i]:
                serial += 1
                lines.append(
                    f"{'TER':<6}{serial:>5}      {self.res_name[i]:>3} "
                    f"{self.chain_id[i]:1}{int(self.res_id[i]):>4}"
                )
        lines.append("END")
        return "\n".join(lines) + "\n"

    def to_mmcif(self, name: str = "model") -> str:
        """mmCIF text: one `atom_site` loop (label and auth fields), one entity per chain."""
        _check_writable(self, "cif")
        block = "".join(c if c.isalnum() or c in "_-." else "_" for c in name) or "model"
        lines = [f"data_{block}", "#"]
        for key, value in self.metadata.items():
            lines.append(f"{_META_CATEGORY}{key} {_cif_value(str(value))}")
        if self.metadata:
            lines.append("#")
        columns = ("group_PDB", "id", "type_symbol", "label_atom_id", "label_alt_id",
                   "label_comp_id", "label_asym_id", "label_entity_id", "label_seq_id",
                   "pdbx_PDB_ins_code", "Cartn_x", "Cartn_y", "Cartn_z", "occupancy",
                   "B_iso_or_equiv", "auth_seq_id", "auth_comp_id", "auth_asym_id", "auth_atom_id",
                   "pdbx_PDB_model_num")  # fmt: skip
        lines.append("loop_")
        lines.extend(f"_atom_site.{c}" for c in columns)
        entity = {c: str(k + 1) for k, c in enumerate(self.chain_ids)}
        for i in range(len(self)):
            atom, res, chain = (
                _cif_value(str(v[i])) for v in (self.atom_name, self.res_name, self.chain_id)
            )
            x, y, z = (float(v) for v in self.coords[i])
            rid = int(self.res_id[i])
            ent, b = entity[self.chain_id[i]], float(self.b_factor[i])
            lines.append(
                f"ATOM {i + 1} {self.element[i]} {atom} . {res} {chain} {ent} {rid} ? "
                f"{x:.3f} {y:.3f} {z:.3f} 1.00 {b:.2f} {rid} {res} {chain} {atom} 1"
            )
        lines.append("#")
        return "\n".join(lines) + "\n"

    def write(
        self, path: str | os.PathLike[str], fmt: Literal["pdb", "cif"] | None = None
    ) -> Path:
        """Write atomically (temp file + rename) as PDB or mmCIF; `fmt` defaults to the suffix."""
        path = Path(path)
        atomic_write_text(path, self.to_text(structure_format(path, fmt), path.stem))
        return path

    def to_text(self, fmt: Literal["pdb", "cif"], name: str = "model") -> str:
        """`to_pdb()` or `to_mmcif(name)` by `fmt`."""
        if fmt not in ("pdb", "cif"):
            raise ValueError(f"`fmt` must be 'pdb' or 'cif', got {fmt!r}")
        return self.to_pdb() if fmt == "pdb" else self.to_mmcif(name)

    @classmethod
    def from_atom_array(
        cls, atoms: AtomArray, metadata: Mapping[str, str] | None = None
    ) -> Structure:
        """A `Structure` from a biotite `AtomArray` (B-factors from `b_factor`, else 0)."""
        b = (
            atoms.b_factor
            if "b_factor" in atoms.get_annotation_categories()
            else np.zeros(len(atoms))
        )
        return cls(
            np.asarray(atoms.coord, dtype=np.float32),
            atoms.atom_name,
            atoms.res_name,
            np.asarray(atoms.res_id),
            atoms.chain_id,
            atoms.element,
            np.asarray(b, dtype=np.float32),
            dict(metadata or {}),
        )

    def to_atom_array(self) -> AtomArray:
        """A `biotite.structure.AtomArray` with the same atoms and annotations."""
        struc = require("biotite.structure", "fold")
        arr = struc.AtomArray(len(self))
        arr.coord = np.asarray(self.coords, dtype=np.float32)
        arr.atom_name, arr.res_name, arr.chain_id = self.atom_name, self.res_name, self.chain_id
        arr.res_id, arr.element = np.asarray(self.res_id, dtype=int), self.element
        arr.hetero = np.zeros(len(self), dtype=bool)
        arr.set_annotation("b_factor", np.asarray(self.b_factor, dtype=np.float32))
        return arr


@dataclass(frozen=True)
class Comparison:
    """A predicted model against a reference (e.g. experimental) structure.

    `rmsd` (Angstrom) is over the CA atoms paired by a global sequence alignment, after optimal
    superposition; `tm_score` is TM-align's score normalised by the reference length (0-1).
    """

    rmsd: float
    tm_score: float
    n_aligned: int
    sequence_identity: float
    reference_length: int
    model_length: int


def structure_format(
    path: str | os.PathLike[str], fmt: Literal["pdb", "cif"] | None = None
) -> Literal["pdb", "cif"]:
    """`fmt` if given, else "cif" for a `.cif`/`.mmcif` suffix and "pdb" otherwise.

    Examples
    --------
    >>> structure_format("model.cif"), structure_format("model.ent"), structure_format("x", "cif")
    ('cif', 'pdb', 'cif')
    """
    if fmt is not None:
        return fmt
    return "cif" if Path(path).suffix.lower() in (".cif", ".mmcif") else "pdb"


def load_structure(
    path: str | os.PathLike[str], model: int = 1, chain: str | None = None
) -> AtomArray:
    """One model of a PDB/mmCIF file as a biotite `AtomArray` (amino acids, with B-factors)."""
    io = require("biotite.structure.io", "fold")
    struc = require("biotite.structure", "fold")
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"Structure file not found: {path}")
    arr = io.load_structure(str(path), model=model, extra_fields=["b_factor"])
    arr = arr[struc.filter_amino_acids(arr)]
    if chain is not None:
        arr = arr[arr.chain_id == chain]
    if len(arr) == 0:
        raise InvalidInputError(
            f"{path}: no amino-acid atoms" + (f" in chain {chain!r}" if chain else "")
        )
    return arr


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The `metadata` written into a PDB/mmCIF header by `Structure.write` (e.g. ptm, seconds)."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith(_META_PREFIX):
                key, _, value = line[len(_META_PREFIX) :].strip().partition(" ")
            elif line.startswith(_META_CATEGORY):
                key, _, value = line[len(_META_CATEGORY) :].strip().partition(" ")
                value = value.strip().strip("'\"")
            elif line.startswith(("ATOM", "loop_")):
                break  # metadata lives in the header only
            else:
                continue
            out[key] = value.strip()
    return out


def ca_rmsd(reference: _StructureLike, subject: _StructureLike, superimpose: bool = True) -> float:
    """CA RMSD (Angstrom) after optimal superposition (Kabsch, biotite) of equal-length structures.

    Use `compare` for structures whose residues differ (it pairs them by sequence alignment first).
    """
    struc = require("biotite.structure", "fold")
    ref, sub = _ca(reference), _ca(subject)
    if len(ref) != len(sub):
        raise ValueError(
            f"CA counts differ ({len(ref)} vs {len(sub)}); use `compare` to align by sequence"
        )
    if superimpose:
        sub, _ = struc.superimpose(ref, sub)
    return float(struc.rmsd(ref, sub))


def tm_score(reference: _StructureLike, model: _StructureLike) -> float:
    """TM-score (0-1) of `model` vs `reference` by TM-align (tmtools), normed by the reference."""
    tmtools = require("tmtools", "fold")
    ref, mod = _ca(reference), _ca(model)
    res = tmtools.tm_align(
        mod.coord.astype(np.float64),
        ref.coord.astype(np.float64),
        _one_letter(mod),
        _one_letter(ref),
    )
    return float(res.tm_norm_chain2)  # chain2 is the reference


def secondary_structure(atoms: AtomArray) -> str:
    """Per-residue 3-state secondary structure (H helix, E strand, C coil) by biotite's P-SEA."""
    struc = require("biotite.structure", "fold")
    sse = struc.annotate_sse(atoms)  # 'a' helix, 'b' strand, 'c' coil, '' for non-amino acids
    return "".join({"a": "H", "b": "E"}.get(s, "C") for s in sse)


def compare(model: _StructureLike, reference: _StructureLike) -> Comparison:
    """Compare a predicted `model` with a `reference` (AtomArray, `Structure` or file path).

    Residues are paired by a global alignment of the two CA sequences (BLOSUM62), so missing or
    extra residues in the experimental structure are fine; RMSD is computed on the pairs.
    """
    struc = require("biotite.structure", "fold")
    seq_mod = require("biotite.sequence", "fold")
    align = require("biotite.sequence.align", "fold")
    mod, ref = _ca(model), _ca(reference)
    s_mod, s_ref = (
        seq_mod.ProteinSequence(_one_letter(mod)),
        seq_mod.ProteinSequence(_one_letter(ref)),
    )
    matrix = align.SubstitutionMatrix.std_protein_matrix()
    ali = align.align_optimal(s_mod, s_ref, matrix, gap_penalty=(-10, -1), terminal_penalty=False)[
        0
    ]
    pairs = ali.trace[(ali.trace >= 0).all(axis=1)]
    if len(pairs) < 3:
        raise ValueError(
            f"Only {len(pairs)} residues could be paired; are these the same protein?"
        )
    fitted, _ = struc.superimpose(ref.coord[pairs[:, 1]], mod.coord[pairs[:, 0]])
    rmsd = float(np.sqrt(((fitted - ref.coord[pairs[:, 1]]) ** 2).sum(-1).mean()))
    identity = float(align.get_sequence_identity(ali, mode="shortest"))
    return Comparison(rmsd, tm_score(ref, mod), len(pairs), identity, len(ref), len(mod))


# ---------------------------------------------------------------- private helpers
def _check_writable(s: Structure, fmt: Literal["pdb", "cif"]) -> None:
    """Raise `StructureWriteError` for what the format cannot hold (naming the fix)."""
    if len(s) == 0:
        raise StructureWriteError("Structure has no atoms; nothing to write")
    coords = np.asarray(s.coords, dtype=np.float64)
    if not np.isfinite(coords).all():
        bad = int(np.flatnonzero(~np.isfinite(coords).all(axis=1))[0])
        raise StructureWriteError(
            f"Non-finite coordinate at atom {bad + 1} (residue {int(s.res_id[bad])}, chain "
            f"{s.chain_id[bad]!r}); the model output is NaN/inf - refold (e.g. in float32)"
        )
    if not np.isfinite(np.asarray(s.b_factor, dtype=np.float64)).all():
        raise StructureWriteError("Non-finite B-factor (pLDDT); refold or fill the column")
    if fmt == "cif":
        return
    if len(s.chain_ids) > len(CHAIN_IDS):
        raise StructureWriteError(
            f"{len(s.chain_ids)} chains do not fit PDB (at most {len(CHAIN_IDS)}); "
            "write mmCIF instead (format 'cif')"
        )
    checks = [
        ("chain id", s.chain_id, 1), ("residue name", s.res_name, 3),
        ("atom name", s.atom_name, 4), ("element", s.element, 2),
    ]  # fmt: skip
    for what, values, width in checks:
        too_long = [v for v in dict.fromkeys(values.tolist()) if len(v) > width]
        if too_long:
            raise StructureWriteError(
                f"PDB allows a {what} of at most {width} characters, got "
                f"{too_long[0]!r}; write mmCIF instead (format 'cif')"
            )
    lo, hi = coords.min(), coords.max()
    if lo < -999.999 or hi > 9999.999:  # 8.3f columns: 4 pre-decimal digits, 3 with a minus sign
        raise StructureWriteError(
            f"Coordinate {lo if lo < -999.999 else hi:.3f} overflows the PDB "
            "8.3f columns (-999.999 to 9999.999); write mmCIF instead (format 'cif')"
        )
    res = np.asarray(s.res_id)
    if res.max() > 9999 or res.min() < -999:
        raise StructureWriteError(
            f"Residue number {int(res.max())} overflows the 4 PDB columns "
            "(more than 9999 residues in a chain); write mmCIF instead (format 'cif')"
        )
    if len(s) + len(s.chain_ids) > 99999:
        raise StructureWriteError(
            f"{len(s)} atoms overflow the 5-column PDB serial number; write mmCIF "
            "instead (format 'cif')"
        )
    b = np.asarray(s.b_factor, dtype=np.float64)
    if b.min() < -99.99 or b.max() > 999.99:
        raise StructureWriteError(f"B-factor {b.max():.2f} overflows the 6.2f PDB columns")


def _cif_value(value: str) -> str:
    """Quote a CIF token when it is empty, has whitespace/quotes, or starts like a CIF keyword."""
    if (
        value
        and not any(c.isspace() or c in "'\"#" for c in value)
        and not value.startswith(("_", "$", "[", ";"))
        and value.lower() not in ("loop_", "stop_", "global_", ".", "?")
    ):
        return value
    if "'" not in value:
        return f"'{value}'"
    return f'"{value}"'


def _ca(atoms: _StructureLike) -> AtomArray:
    """CA atoms of an AtomArray, `Structure` or path (first model, amino acids only)."""
    if isinstance(atoms, (str, os.PathLike)):
        atoms = load_structure(atoms)
    elif isinstance(atoms, Structure):
        atoms = atoms.to_atom_array()
    if atoms.__class__.__name__ == "AtomArrayStack":
        atoms = atoms[0]
    ca = atoms[(atoms.atom_name == "CA") & (atoms.element == "C")]
    if len(ca) == 0:
        raise ValueError("Structure has no CA atoms")
    return ca


def _one_letter(ca: AtomArray) -> str:
    seq = require("biotite.sequence", "fold")
    out = []
    for name in ca.res_name:
        try:
            out.append(seq.ProteinSequence.convert_letter_3to1(name))
        except KeyError:
            out.append("X")
    return "".join(out)
