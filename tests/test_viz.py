"""py3Dmol view coloured by pLDDT with a legend; pLDDT line plot and PAE heatmap."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("py3Dmol")
pytest.importorskip("torch")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

from protein_lm.folding.esmfold import fold, load_folding_model  # noqa: E402
from protein_lm.viz import (  # noqa: E402
    PLDDT_BANDS,
    plddt_band_colors,
    plot_pae,
    plot_plddt,
    show_structure,
)


@pytest.fixture(scope="module")
def dimer():
    (res,) = fold({"d": "MKTAYIAKQRQISFV:GSHMLEDPVDAFQ"}, load_folding_model("tiny", device="cpu"))
    rng = np.random.default_rng(
        0
    )  # spread pLDDT over all four bands (the tiny model predicts ~50)
    return dataclasses.replace(res, plddt=rng.uniform(0, 100, len(res)).astype(np.float32))


def test_band_colors_follow_alphafold_thresholds() -> None:
    assert plddt_band_colors(np.array([90.5, 90.0, 70.0, 50.0, 49.9])) == [
        "#0053D6",
        "#65CBF3",
        "#FFDB13",
        "#FF7D45",
        "#FF7D45",
    ]


def test_view_colours_each_residue_by_its_band_and_has_a_legend(dimer) -> None:
    view = show_structure(dimer)
    js = view.startjs + view.endjs
    for _, color, label in PLDDT_BANDS:
        assert label in js  # legend
        assert color in js
    n_colored = sum(js.count(f'"{c}"') for _, c, _ in PLDDT_BANDS) - len(
        PLDDT_BANDS
    )  # minus legend
    assert n_colored >= 4 and '"chain": "B"' in js


def test_view_accepts_paths_and_text(dimer, shared_data: Path, tmp_path: Path) -> None:
    assert "addModel" in show_structure(shared_data / "structures" / "1l2y.pdb").startjs
    assert "addModel" in show_structure(dimer.to_mmcif(), color="chain").startjs
    cif = dimer.write(tmp_path / "d.cif")
    assert "addModel" in show_structure(cif, color="spectrum").startjs
    with pytest.raises(ValueError, match="color"):
        show_structure(dimer, color="rainbow")  # type: ignore[arg-type]


def test_plots(dimer) -> None:
    ax = plot_plddt(dimer)
    (line,) = ax.get_lines()[:1]
    np.testing.assert_allclose(line.get_ydata(), dimer.plddt)
    assert ax.get_ylim() == (0, 100) and "mean pLDDT" in ax.get_title()
    ax2 = plot_pae(dimer)
    assert ax2.images[0].get_array().shape == (len(dimer), len(dimer))
    assert len(ax2.lines) == 2  # chain boundary, both axes
    with pytest.raises(ValueError, match="square"):
        plot_pae(np.zeros((3, 4)))
    matplotlib.pyplot.close("all")


def test_view_embeds_the_cached_viewer_or_says_it_falls_back_to_the_cdn(dimer, monkeypatch) -> None:
    """Issue #17: 3Dmol.js comes from the data cache (offline views); without it, a warning."""
    from protein_lm import data
    from protein_lm import viz as viz_module
    from protein_lm.errors import DataNotFoundError

    viz_module._local_3dmol.cache_clear()
    monkeypatch.setattr(data, "data_path", lambda name, **kw: (_ for _ in ()).throw(
        DataNotFoundError(f"{name} not found")))
    with pytest.warns(UserWarning, match="load 3Dmol.js from a CDN"):
        html = viz_module.show_structure(dimer)._make_html()
    assert "data:text/javascript;base64," not in html and "cdn.jsdelivr.net" in html
    viz_module._local_3dmol.cache_clear()
