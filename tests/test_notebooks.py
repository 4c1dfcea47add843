"""The tutorial notebooks: committed clean, and what a learner sees when they run (smoke mode).

nbval (README's second test command) checks that every cell runs; it cannot see what a cell shows
when its output is ignored. Here each notebook is executed once with nbclient in smoke mode and its
outputs are read: the figures and 3D views it must render (a figure that silently fails to show is
the bug of issue #11), no tqdm "IProgress not found" warning, every split whose class counts are
printed holds every class (a metric on a split missing a class means nothing), and the per-residue
task visibly learns (test Q3 above the majority-class baseline).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"

# notebook -> (minimum images, minimum 3D views, prints per-split class counts)
EXPECTED = {
    "getting_started.ipynb": (1, 0, False),
    # membrane: curves + confusion; SS: label strip + curves + confusion
    "protein_language_modeling.ipynb": (5, 0, True),
    "protein_language_modeling_tf.ipynb": (2, 0, True),  # two training-curve plots
    "protein_folding.ipynb": (2, 2, False),  # pLDDT/PAE panels + insulin PAE; two 3D views
    "embeddings_and_variants.ipynb": (3, 0, True),  # PCA, BLAT scatter, contact map
}
_SPLIT_LINE = re.compile(r"^(train|validation|test)\s+\d+ proteins (\{.*\})\s*$", re.M)


def _committed(name: str) -> dict:
    return json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))


def _text(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


# ------------------------------------------------------------------ committed files (fast)
def test_every_notebook_is_listed() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED), ids=lambda n: n.removesuffix(".ipynb"))
def test_committed_notebook_is_clean_with_badge_primer_and_generator(name: str) -> None:
    nb = _committed(name)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, "strip outputs"
    text = "\n".join(_text(c) for c in nb["cells"])
    common = (SCRIPTS / "notebook_common.py").read_text(encoding="utf-8")
    repo = ast.literal_eval(re.search(r"^REPO_URL = (.+)$", common, re.M).group(1))
    slug = repo.removeprefix("https://github.com/")
    assert f"colab.research.google.com/github/{slug}/blob/" in text  # the Open-in-Colab badge
    assert f"git+{repo}" in text  # the install cell uses the same address
    assert "protein_lm[colab]" in text  # never reinstalls Colab's CUDA torch
    assert "🧬" in text and "🤖" in text, "a primer for each audience"
    assert (SCRIPTS / f"make_{name.removesuffix('.ipynb')}.py").is_file()


# ------------------------------------------------------------------ executed (minutes)
def _execute(name: str, workdir: Path) -> dict:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute()
    finally:  # keep the executed notebook beside the run outputs, to read after a failure
        nbformat.write(nb, workdir / name)
    return nb


def _outputs(nb: dict) -> list[dict]:
    return [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]


def _stream(nb: dict, name: str) -> str:
    return "".join(o.get("text", "") for o in _outputs(nb)
                   if o["output_type"] == "stream" and o["name"] == name)


def _is_3d(data: dict) -> bool:
    return "application/3dmoljs_load.v0" in data or "3Dmol" in str(data.get("text/html", ""))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED), ids=lambda n: n.removesuffix(".ipynb"))
def test_notebook_renders_and_learns_in_smoke_mode(name: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROTEIN_LM_SMOKE", "1")  # the kernel inherits the environment
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # A kernel that inherits MPLBACKEND=Agg (CI sets it for headless tests) shows no figure at all;
    # a user's Jupyter has no such variable and uses the inline backend, which is what we count.
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = _execute(name, tmp_path)
    min_images, min_3d, has_splits = EXPECTED[name]

    datas = [o.get("data", {}) for o in _outputs(nb) if "data" in o]
    images = sum("image/png" in d for d in datas)
    views = sum(_is_3d(d) for d in datas)
    assert images >= min_images, f"{images} images shown, expected at least {min_images}"
    assert views >= min_3d, f"{views} 3D views shown, expected at least {min_3d}"

    stderr, stdout = _stream(nb, "stderr"), _stream(nb, "stdout")
    assert "TqdmWarning" not in stderr and "IProgress not found" not in stderr
    assert "cuInit" not in stderr, "TensorFlow's CUDA probing log should be silenced"

    groups = [ast.literal_eval(m.group(2)) for m in _SPLIT_LINE.finditer(stdout)]
    if has_splits:
        assert groups, "the notebook prints its per-split class counts"
    for text in (o.get("text", "") for o in _outputs(nb) if o.get("name") == "stdout"):
        splits = [ast.literal_eval(m.group(2)) for m in _SPLIT_LINE.finditer(text)]
        classes = set().union(*splits) if splits else set()
        for counts in splits:
            assert set(counts) == classes and len(classes) >= 2, f"a split misses a class: {splits}"

    q3 = re.search(r"test Q3: ([0-9.]+)", stdout)
    baseline = re.search(r"majority-class baseline on test: ([0-9.]+)", stdout)
    if q3 and baseline:  # the per-residue task learns from scratch in smoke mode
        assert float(q3.group(1)) > float(baseline.group(1)) + 0.02, stdout

    if name == "protein_folding.ipynb":
        from protein_lm.folding.results import FoldResult

        if hasattr(FoldResult, "write_scores"):
            assert "keys: " in stdout and "'pae'" in stdout and "'ptm'" in stdout
    if name == "protein_language_modeling.ipynb":
        card = (tmp_path / "runs" / "pt_secondary_structure" / "README.md").read_text()
        assert card.startswith("---\nlibrary_name: transformers\n")
        assert "FLIP secondary structure" in card and "| test | q3 |" in card
