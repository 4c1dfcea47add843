"""Pictures of predictions: a py3Dmol view coloured by pLDDT, and matplotlib pLDDT / PAE plots.

Structures can be given as a `FoldResult`, a `Structure`, PDB text or a PDB/mmCIF path.
matplotlib and py3Dmol are imported inside the functions that use them.
"""

from __future__ import annotations

import base64
import functools
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias

import numpy as np

from protein_lm.errors import require

if TYPE_CHECKING:  # names for the annotations only: matplotlib/py3Dmol are imported lazily
    from matplotlib.axes import Axes
    from py3Dmol import view as View

    from protein_lm.folding.results import FoldResult
    from protein_lm.folding.structure import Structure

# What `show_structure` accepts: a fold result, a structure, PDB/mmCIF text or a file path.
StructureLike: TypeAlias = "FoldResult | Structure | str | os.PathLike[str]"

__all__ = [
    "PLDDT_BANDS",
    "plddt_band_colors",
    "show_structure",
    "plot_plddt",
    "plot_pae",
    "plot_contact_map",
]

# The AlphaFold DB convention: (lower bound, colour, label), highest band first.
PLDDT_BANDS: tuple[tuple[float, str, str], ...] = (
    (90.0, "#0053D6", "very high (pLDDT > 90)"),
    (70.0, "#65CBF3", "confident (70-90)"),
    (50.0, "#FFDB13", "low (50-70)"),
    (-np.inf, "#FF7D45", "very low (< 50)"),
)


def plddt_band_colors(plddt: np.ndarray) -> list[str]:
    """The AlphaFold DB colour (hex) of each pLDDT value (0-100 scale).

    Examples
    --------
    >>> plddt_band_colors(np.array([95.0, 75.0, 10.0]))
    ['#0053D6', '#65CBF3', '#FF7D45']
    """
    return [next(color for lo, color, _ in PLDDT_BANDS if v > lo or lo == -np.inf) for v in plddt]


VIEWER_JS = "viewers/3Dmol-min.js"  # a `protein_lm.data` file: cached once, SHA-256 checked


@functools.cache
def _local_3dmol() -> str | None:
    """3Dmol.js as a `data:` address (the browser loads it with no network), or None when it is
    not on disk and cannot be downloaded (the view then uses py3Dmol's CDN address).

    Looked up like every data file (`PROTEIN_LM_DATA`, `../shared/data`, the cache), downloaded
    once from the npm registry when missing. Cached per process: one attempt, one warning.
    """
    from protein_lm.data import data_path
    from protein_lm.errors import DataNotFoundError

    try:
        js = data_path(VIEWER_JS).read_bytes()
    except DataNotFoundError as exc:
        warnings.warn(
            f"3D views load 3Dmol.js from a CDN, so they stay blank without network: {exc}",
            stacklevel=3,
        )
        return None
    return "data:text/javascript;base64," + base64.b64encode(js).decode("ascii")


def show_structure(
    structure: StructureLike,
    *,
    color: Literal["plddt", "chain", "spectrum"] = "plddt",
    style: Literal["cartoon", "stick", "sphere"] = "cartoon",
    width: int = 640,
    height: int = 480,
    legend: bool = True,
) -> View:
    """A `py3Dmol.view`; `color="plddt"` colours by the B-factor column with AlphaFold's colours.

    Colouring is done per residue with explicit selections, so it works in any 3Dmol viewer
    version; the legend is drawn as screen-fixed labels. The view carries its own copy of 3Dmol.js
    (`_local_3dmol`, about 0.7 MB in the notebook output) instead of py3Dmol's CDN address, so it
    renders in an offline JupyterLab, in exported HTML and on air-gapped machines.
    """
    if color not in ("plddt", "chain", "spectrum"):
        raise ValueError(f"`color` must be 'plddt', 'chain' or 'spectrum', got {color!r}")
    py3dmol = require("py3Dmol", "fold")
    text, fmt, s = _as_text(structure)
    local = _local_3dmol()
    view = py3dmol.view(width=width, height=height, **({"js": local} if local else {}))
    view.addModel(text, fmt)
    if color == "chain":
        view.setStyle({style: {"colorscheme": "chain"}})
    elif color == "spectrum":
        view.setStyle({style: {"color": "spectrum"}})
    else:
        ca = s.atom_name == "CA"
        uppers = (np.inf, *(band[0] for band in PLDDT_BANDS[:-1]))
        for (lo, hex_color, _), hi in zip(PLDDT_BANDS, uppers, strict=True):
            in_band = ca & (s.b_factor > lo) & (s.b_factor <= hi)
            for chain in dict.fromkeys(s.chain_id[in_band].tolist()):
                resi = s.res_id[in_band & (s.chain_id == chain)].tolist()
                view.setStyle({"chain": chain, "resi": resi}, {style: {"color": hex_color}})
        if legend:
            for k, (_, hex_color, label) in enumerate(PLDDT_BANDS):
                view.addLabel(label, {
                    "position": {"x": 10, "y": 10 + 22 * k, "z": 0}, "useScreen": True,
                    "backgroundColor": hex_color, "fontColor": "black", "fontSize": 12,
                    "backgroundOpacity": 0.9,
                })  # fmt: skip
    view.zoomTo()
    return view


def plot_plddt(
    result: FoldResult | np.ndarray, ax: Axes | None = None, *, title: str | None = None
) -> Axes:
    """Line plot of per-residue pLDDT (0-100) with the confidence bands shaded; returns the Axes.

    `result` is a `FoldResult` (chain boundaries are marked) or an array of shape (L,).
    """
    plt = require("matplotlib.pyplot", "notebooks")
    plddt = np.asarray(getattr(result, "plddt", result), dtype=float)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3), layout="constrained")
    uppers = (100.0, *(band[0] for band in PLDDT_BANDS[:-1]))
    for (lo, hex_color, _), hi in zip(PLDDT_BANDS, uppers, strict=True):
        ax.axhspan(max(lo, 0.0), hi, color=hex_color, alpha=0.15, lw=0)
    ax.plot(np.arange(1, len(plddt) + 1), plddt, color="black", lw=1)
    _chain_lines(ax, result, axis="x")
    ax.set(
        xlim=(1, max(len(plddt), 2)),
        ylim=(0, 100),
        xlabel="residue",
        ylabel="pLDDT",
        title=title
        or (
            f"{result.id}: mean pLDDT {result.mean_plddt:.1f}"
            if not isinstance(result, np.ndarray) and hasattr(result, "id")
            else None
        ),
    )
    return ax


def plot_pae(
    result: FoldResult | np.ndarray,
    ax: Axes | None = None,
    *,
    vmax: float = 31.75,
    title: str | None = None,
) -> Axes:
    """Heatmap of the predicted aligned error in Angstrom (row: aligned residue); returns the Axes.

    `vmax` defaults to the centre of ESMFold's last PAE bin (31.75 A).
    """
    plt = require("matplotlib.pyplot", "notebooks")
    pae = np.asarray(getattr(result, "pae", result), dtype=float)
    if pae.ndim != 2 or pae.shape[0] != pae.shape[1]:
        raise ValueError(f"PAE must be a square matrix, got shape {pae.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    n = len(pae)
    image = ax.imshow(pae, cmap="Greens_r", vmin=0, vmax=vmax, extent=(0.5, n + 0.5, n + 0.5, 0.5))
    ax.figure.colorbar(image, ax=ax, label="expected position error (Å)")
    _chain_lines(ax, result, axis="both")
    ax.set(
        xlabel="scored residue",
        ylabel="aligned residue",
        title=title
        or (
            f"{result.id}: pTM {result.ptm:.2f}"
            if not isinstance(result, np.ndarray) and hasattr(result, "ptm")
            else None
        ),
    )
    return ax


# ---------------------------------------------------------------- private helpers
def _as_text(structure: StructureLike) -> tuple[str, str, Structure]:
    """(file text, py3Dmol format, an object with atom_name/b_factor/chain_id/res_id arrays)."""
    from protein_lm.folding.structure import Structure, load_structure

    if hasattr(structure, "to_structure"):  # FoldResult
        structure = structure.to_structure()
    if isinstance(structure, Structure):
        return structure.to_pdb(), "pdb", structure
    if isinstance(structure, str) and "\n" in structure:  # file text, not a path
        is_cif = structure.lstrip().startswith("data_")
        with (
            tempfile.TemporaryDirectory() as tmp
        ):  # biotite reads files; round-trip via a temp file
            path = Path(tmp) / ("model.cif" if is_cif else "model.pdb")
            path.write_text(structure, encoding="utf-8")
            return structure, "cif" if is_cif else "pdb", load_structure(path)
    if isinstance(structure, (str, os.PathLike)):
        path = Path(structure)
        fmt = "cif" if path.suffix.lower() in (".cif", ".mmcif") else "pdb"
        return path.read_text(encoding="utf-8"), fmt, load_structure(path)
    raise TypeError(
        f"Expected a FoldResult, Structure, PDB/mmCIF text or path, got {type(structure).__name__}"
    )


def _chain_lines(ax: Axes, result: object, axis: str) -> None:
    chain_index = getattr(result, "chain_index", None)
    if chain_index is None:
        return
    for boundary in np.flatnonzero(np.diff(chain_index)) + 1.5:
        if axis in ("x", "both"):
            ax.axvline(boundary, color="grey", lw=1, ls="--")
        if axis == "both":
            ax.axhline(boundary, color="grey", lw=1, ls="--")


def plot_contact_map(
    contacts: np.ndarray,
    ax: Axes | None = None,
    *,
    title: str | None = None,
    min_separation: int = 6,
) -> Axes:
    """Heatmap of contact probabilities (0-1), shape (L, L), e.g. `Embeddings.contacts[i]`.

    Pairs closer than `min_separation` in sequence (trivially in contact) are greyed out in the
    lower triangle; the upper triangle shows every pair. NaN (windowed pairs never seen together)
    is left blank. Returns the Axes.
    """
    plt = require("matplotlib.pyplot", "notebooks")
    c = np.asarray(contacts, dtype=float)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"contacts must be a square matrix, got shape {c.shape}")
    n = len(c)
    i, j = np.indices(c.shape)
    shown = np.where((i > j) & (i - j < min_separation), np.nan, c)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4), layout="constrained")
    extent = (0.5, n + 0.5, n + 0.5, 0.5)
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1, extent=extent)
    # The near-diagonal band in grey (a NaN would be drawn white, like a 0 probability).
    band = np.where((i > j) & (i - j < min_separation), 1.0, np.nan)
    grey = require("matplotlib.colors", "notebooks").ListedColormap(["lightgrey"])
    ax.imshow(band, cmap=grey, vmin=0, vmax=1, extent=extent)
    ax.figure.colorbar(image, ax=ax, label="contact probability")
    ax.set(xlabel="residue", ylabel="residue", title=title)
    return ax
