"""The folding notebook's 3D views render with no network (issue #17).

py3Dmol loads 3Dmol.js from a CDN, so an offline JupyterLab showed "3Dmol.js failed to load" in
every view; `viz.show_structure` now embeds 3Dmol.js from the data cache (`make setup` fetches it once,
like a package). Here the folding notebook is executed
(smoke mode), exported to HTML with nbconvert and opened in headless Chromium with every host name
unresolvable: each 3D view must have built its WebGL canvas, and one view, rendered alone, must
draw a molecule (non-white pixels). Needs Chromium (`.ci/run` installs Debian's `chromium`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
OFFLINE = ["--headless=new", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
           "--enable-unsafe-swiftshader", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--virtual-time-budget=15000"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium on this machine (apt-get install chromium; .ci/run does)")


def _run(browser: str, *args: str) -> str:
    done = subprocess.run([browser, *OFFLINE, *args], capture_output=True, text=True, timeout=120,
                          check=True)
    return done.stdout


def test_folding_views_render_offline_in_exported_html(tmp_path: Path, monkeypatch) -> None:
    browser = _chromium()
    from protein_lm.data import data_path
    from protein_lm.errors import DataNotFoundError
    from protein_lm.viz import VIEWER_JS

    try:  # never downloaded by a test: `make setup` caches it
        data_path(VIEWER_JS, download=False)
    except DataNotFoundError as exc:
        pytest.skip(f"3Dmol.js is not cached ({exc}); run `make setup` online once")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nbconvert = pytest.importorskip("nbconvert")
    monkeypatch.setenv("PROTEIN_LM_SMOKE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    nb = nbformat.read(NOTEBOOKS / "protein_folding.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    views = [o["data"]["text/html"] for c in nb.cells if c.cell_type == "code"
             for o in c.outputs if "3Dmol" in str(o.get("data", {}).get("text/html", ""))]
    assert len(views) >= 2
    assert all("cdn.jsdelivr.net" not in v and "data:text/javascript;base64," in v for v in views)

    page = tmp_path / "protein_folding.html"
    page.write_text(nbconvert.HTMLExporter().from_notebook_node(nb)[0], encoding="utf-8")
    dom = _run(browser, "--dump-dom", page.as_uri())
    assert "failed to load" not in dom
    assert dom.count("<canvas") >= len(views), "a 3D view did not start (no WebGL canvas)"

    alone = tmp_path / "view.html"
    alone.write_text(f"<html><body style='margin:0'>{views[0]}</body></html>", encoding="utf-8")
    shot = tmp_path / "view.png"
    _run(browser, "--window-size=700,520", f"--screenshot={shot}", alone.as_uri())
    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    drawn = np.mean(np.any(pixels < 0.9, axis=-1))  # share of clearly non-white pixels
    assert drawn > 0.01, f"the view is blank ({drawn:.2%} of pixels drawn)"
