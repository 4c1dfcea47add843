"""What folding produces: `FoldResult`, `FoldFailure`, `FoldInput`, `FoldingError`, constants,
and `decode_output`, which turns ESMFold's output into `FoldResult`s.

This module holds no model: `runtime` runs a loaded ESMFold and passes its output to
`decode_output`, `esmfold` prepares the inputs, `bulk` writes the results to disk.

Scores JSON (`FoldResult.write_scores`, and beside every structure of `FoldResult.write` and of
bulk runs as `<id>_scores.json`), the AlphaFold DB / ColabFold layout::

    {
      "plddt":   [float, ...],          # length L: per-residue pLDDT (CA atom), 0-100, 2 decimals;
                                        #   equal to the B-factors of the structure file
      "pae":     [[float, ...], ...],   # L x L: predicted aligned error in Angstrom, 2 decimals;
                                        #   row i = residue aligned on, column j = residue scored
      "max_pae": float,                 # largest PAE the model can predict (31.75 for ESMFold)
      "ptm":     float,                 # predicted TM-score over the L real residues, 4 decimals
      "iptm":    float                  # multimers only (key absent for one chain): interface pTM,
    }                                   #   pairs of residues in different chains, 4 decimals

L counts the residues of all chains in order (A then B ...), without the poly-G linker.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from protein_lm.errors import ProteinLMError, require
from protein_lm.folding.structure import CHAIN_IDS, Structure, structure_format
from protein_lm.limits import FOLD_MAX_RESIDUES
from protein_lm.sequences import atomic_write_text

if TYPE_CHECKING:
    import torch
    from transformers.models.esm.modeling_esmfold import EsmForProteinFoldingOutput

__all__ = [
    "DEFAULT_MODEL",
    "MAX_LENGTH",
    "MAX_PAE",
    "SCORES_SUFFIX",
    "FoldResult",
    "FoldFailure",
    "FoldInput",
    "FoldingError",
    "chain_id",
    "scores_path",
    "decode_output",
    "interface_ptm",
]

DEFAULT_MODEL = "facebook/esmfold_v1"
MAX_LENGTH = FOLD_MAX_RESIDUES  # default longest record, residues + linkers (protein_lm.limits)
MAX_PAE = 31.75  # ESMFold's (and AlphaFold's) last PAE bin centre, in Angstrom
SCORES_SUFFIX = "_scores.json"
_UNK = 20  # openfold residue type of X (`residue_constants.restype_num`)


class FoldingError(ProteinLMError, RuntimeError):
    """Records could not be folded (out of memory after every fallback, or a model error)."""


def chain_id(k: int) -> str:
    """Chain id of the k-th chain (0-based): A, B, ..., 9 for the first 62, then two characters.

    Examples
    --------
    >>> chain_id(0), chain_id(1), chain_id(62)
    ('A', 'B', 'AA')
    """
    n = len(CHAIN_IDS)
    return CHAIN_IDS[k] if k < n else CHAIN_IDS[k // n - 1] + CHAIN_IDS[k % n]


def scores_path(structure_path: str | os.PathLike[str]) -> Path:
    """The scores JSON beside a structure file: `out/x.pdb` -> `out/x_scores.json`."""
    path = Path(structure_path)
    return path.with_name(path.stem + SCORES_SUFFIX)


@dataclass(frozen=True, eq=False)
class FoldResult:
    """One predicted structure (linker removed). L = number of residues over all chains.

    Attributes
    ----------
    positions : ndarray of float32, shape (L, 37, 3)
        atom37 coordinates in Angstrom (openfold atom order); zero where `atom_mask` is False.
    atom_mask : ndarray of bool, shape (L, 37)
    plddt : ndarray of float32, shape (L,)
        Per-residue pLDDT (CA atom) on the 0-100 scale.
    pae : ndarray of float32, shape (L, L)
        Predicted aligned error in Angstrom (row: aligned residue, column: scored residue).
    ptm : float
        Predicted TM-score (0-1) over the L real residues.
    chain_index : ndarray of int64, shape (L,)
        0-based chain number of each residue.
    seconds : float
        Wall time of the residue's batch divided by the batch size.
    iptm : float or None
        Interface pTM (0-1) of a multimer (residue pairs in different chains); None for one chain.
    max_pae : float
        Largest PAE the model can predict, in Angstrom (its last bin centre).
    """

    id: str
    sequence: str
    positions: np.ndarray
    atom_mask: np.ndarray
    plddt: np.ndarray
    pae: np.ndarray
    ptm: float
    chain_index: np.ndarray
    seconds: float = 0.0
    device: str = "cpu"
    chunk_size: int | None = None
    iptm: float | None = None
    max_pae: float = MAX_PAE

    @property
    def chains(self) -> tuple[str, ...]:
        return tuple(self.sequence.split(":"))

    @property
    def mean_plddt(self) -> float:
        return float(self.plddt.mean())

    def __len__(self) -> int:
        return len(self.plddt)

    def to_structure(self) -> Structure:
        """Atom-level `Structure` with the residue's pLDDT (0-100) as every atom's B-factor."""
        rc = require("transformers.models.esm.openfold_utils.residue_constants", "fold")
        seq = self.sequence.replace(":", "")
        res_idx, atom_idx = np.nonzero(self.atom_mask)  # residue by residue, atom37 order
        names = np.array(rc.atom_types)[atom_idx]
        three = np.array([rc.restype_1to3.get(a, "UNK") for a in seq])
        res_id = np.empty(len(seq), dtype=np.int64)
        for c in np.unique(self.chain_index):  # 1-based numbering within each chain
            rows = np.flatnonzero(self.chain_index == c)
            res_id[rows] = np.arange(1, len(rows) + 1)
        chain = np.array([chain_id(int(c)) for c in range(int(self.chain_index.max()) + 1)])
        meta = {"id": self.id, "length": str(len(self)), "mean_plddt": f"{self.mean_plddt:.2f}",
                "ptm": f"{self.ptm:.4f}"}  # fmt: skip
        if self.iptm is not None:
            meta["iptm"] = f"{self.iptm:.4f}"
        return Structure(
            coords=self.positions[res_idx, atom_idx].astype(np.float32),
            atom_name=names, res_name=three[res_idx], res_id=res_id[res_idx],
            chain_id=chain[self.chain_index[res_idx]], element=np.array([n[0] for n in names]),
            b_factor=self.plddt[res_idx].astype(np.float32),
            metadata={**meta, "seconds": f"{self.seconds:.3f}"},
        )  # fmt: skip

    def to_pdb(self) -> str:
        return self.to_structure().to_pdb()

    def to_mmcif(self) -> str:
        return self.to_structure().to_mmcif(self.id)

    def scores(self) -> dict[str, Any]:
        """The scores JSON content (see the module docstring): plddt, pae, max_pae, ptm[, iptm]."""
        out: dict[str, Any] = {
            "plddt": np.round(self.plddt.astype(np.float64), 2).tolist(),
            "pae": np.round(self.pae.astype(np.float64), 2).tolist(),
            "max_pae": round(float(self.max_pae), 2),
            "ptm": round(float(self.ptm), 4),
        }
        if self.iptm is not None:
            out["iptm"] = round(float(self.iptm), 4)
        return out

    def write_scores(self, path: str | os.PathLike[str]) -> Path:
        """Write the scores JSON atomically; `ValueError` on NaN (which JSON cannot hold)."""
        path = Path(path)
        atomic_write_text(path, self._scores_json())
        return path

    def write(
        self,
        path: str | os.PathLike[str],
        fmt: Literal["pdb", "cif"] | None = None,
        *,
        scores: bool = True,
    ) -> Path:
        """Write atomically as PDB or mmCIF (by `fmt` or the file suffix); returns the path.

        With `scores` (default) the scores JSON is written beside it first (`scores_path(path)`:
        `x.pdb` -> `x_scores.json`). Both are checked before either file is written.
        """
        path = Path(path)
        text = self.to_structure().to_text(structure_format(path, fmt), path.stem)
        if scores:  # first, so that an existing structure file has its scores
            atomic_write_text(scores_path(path), self._scores_json())
        atomic_write_text(path, text)
        return path

    def _scores_json(self) -> str:
        try:
            return json.dumps(self.scores(), separators=(",", ":"), allow_nan=False) + "\n"
        except ValueError:
            raise ValueError(
                f"Scores of {self.id!r} contain NaN or infinity; JSON cannot hold them"
            ) from None


@dataclass(frozen=True)
class FoldFailure:
    """A record that was not folded; `reason`: invalid, too-long, out-of-memory, non-finite, error
    or write."""

    id: str
    sequence: str
    reason: str
    message: str


@dataclass(frozen=True, eq=False)
class FoldInput:
    """A checked record as model input (`prepare`); `aatype`/`residx`/`real` include the linker."""

    id: str
    chains: tuple[str, ...]
    aatype: np.ndarray  # (L_fold,) openfold residue types incl. linker
    residx: np.ndarray  # (L_fold,) residue index with a jump between chains
    real: np.ndarray  # (L_fold,) bool, False on linker residues
    chain_index: np.ndarray  # (L_real,)

    @property
    def length(self) -> int:
        return len(self.aatype)


def decode_output(
    items: list[FoldInput],
    output: EsmForProteinFoldingOutput,
    *,
    device: str,
    chunk_size: int | None,
) -> list[FoldResult]:
    """One `FoldResult` per item from the output of `EsmForProteinFolding` on their batch.

    Linker positions are dropped, pLDDT goes from 0-1 to 0-100 (CA atom), PAE stays in Angstrom,
    and pTM (and ipTM for multimers) is computed per item on its real residues only. `device`
    and `chunk_size` are recorded on the results; `seconds` is left for the caller to set.
    Non-finite values are kept (the caller's guard turns them into failures).
    """
    torch = require("torch", "torch")
    of = require("transformers.models.esm.openfold_utils", "fold")
    pos14 = output["positions"][-1]  # (B, L, 14, 3)
    pos37 = of.atom14_to_atom37(pos14, output).float().cpu().numpy()  # (B, L, 37, 3)
    pos14 = pos14.float().cpu().numpy()
    mask37 = output["atom37_atom_exists"].cpu().numpy() > 0.5  # (B, L, 37)
    plddt = output["plddt"][..., 1].float().cpu().numpy() * 100.0  # CA atom, 0-1 -> 0-100
    pae = output["predicted_aligned_error"].float().cpu().numpy()  # (B, L, L) Angstrom
    top = output.get("max_predicted_aligned_error")  # the last bin centre: one value for all
    max_pae = MAX_PAE if top is None else float(top.reshape(-1)[0])
    results: list[FoldResult] = []
    for b, it in enumerate(items):
        idx = np.flatnonzero(it.real)
        pos, msk = pos37[b, idx], mask37[b, idx].copy()
        # X (openfold type 20) gets no atoms from openfold; keep its frame origin as the CA.
        unk = it.aatype[idx] == _UNK
        pos[unk, 1], msk[unk, 1] = pos14[b, idx[unk], 1], True
        sel = torch.as_tensor(idx, device=output["ptm_logits"].device)
        logits = output["ptm_logits"][b].index_select(0, sel).index_select(1, sel).float()
        ptm = float("nan")  # compute_tm raises IndexError on NaN logits
        if bool(torch.isfinite(logits).all()):
            ptm = float(of.compute_tm(logits, max_bin=31, no_bins=logits.shape[-1]))
        multimer = len(it.chains) > 1
        results.append(
            FoldResult(
                it.id,
                ":".join(it.chains),
                pos.astype(np.float32),
                msk,
                plddt[b, idx].astype(np.float32),
                pae[b][np.ix_(idx, idx)].astype(np.float32),
                ptm,
                it.chain_index,
                device=device,
                chunk_size=chunk_size,
                iptm=interface_ptm(logits, it.chain_index) if multimer else None,
                max_pae=max_pae,
            )
        )
    return results


def interface_ptm(logits: torch.Tensor, chain_index: np.ndarray, max_bin: float = 31.0) -> float:
    """ipTM as in AlphaFold-Multimer: pTM restricted to residue pairs in different chains.

    `logits` is ESMFold's `ptm_logits` of one structure on real residues, shape (L, L, bins);
    d0 uses all L residues, each aligned residue's TM term is averaged over the residues of the
    other chains, and the best aligned residue is taken (as `compute_tm` does for pTM).
    """
    torch = require("torch", "torch")
    n, bins = logits.shape[0], logits.shape[-1]
    step = max_bin / (bins - 2)  # boundaries: linspace(0, max_bin, bins - 1)
    centers = torch.arange(bins, dtype=torch.float32, device=logits.device) * step + step / 2
    d0 = 1.24 * (max(n, 19) - 15) ** (1.0 / 3) - 1.8
    term = (logits.float().softmax(-1) * (1.0 / (1 + centers**2 / d0**2))).sum(-1)  # (L, L)
    chains = torch.as_tensor(chain_index, device=logits.device)
    other = (chains[:, None] != chains[None, :]).float()  # (L, L)
    per_aligned = (term * other).sum(-1) / (other.sum(-1) + 1e-8)  # (L,)
    return float(per_aligned.max())
