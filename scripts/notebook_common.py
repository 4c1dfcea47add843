"""What the make_*.py notebook generators share: the repository address, Colab badge and setup.

REPO_URL is the one place that names the repository: the "Open in Colab" badges and the install
cell of every notebook are built from it (README: "Notebooks"). Run a generator from the repo
root, e.g. `python scripts/make_protein_folding.py`; notebooks are written without outputs.
"""

from __future__ import annotations

import nbformat as nbf

__all__ = ["REPO_URL", "BRANCH", "colab_url", "badge", "setup_code", "md", "code", "write"]

REPO_URL = "https://github.com/protein-lm/protein_lm"
BRANCH = "main"

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell


def colab_url(notebook: str) -> str:
    """Colab address opening `notebooks/<notebook>` of REPO_URL at BRANCH."""
    path = REPO_URL.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{path}/blob/{BRANCH}/notebooks/{notebook}"


def badge(notebook: str) -> str:
    """The "Open in Colab" badge (markdown) for `notebook`."""
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"({colab_url(notebook)})")


def setup_code(what: str, extra_lines: str = "") -> str:
    """First code cell: install in Colab (keeping Colab's own CUDA torch), read PROTEIN_LM_SMOKE,
    PROTEIN_LM_MODEL (MODEL_OVERRIDE) and PROTEIN_LM_MAX_STEPS (MAX_STEPS).

    `[colab]` lists every dependency except torch and tensorflow, which Colab preinstalls with
    CUDA support: the `torch==2.13.0` pin of the `torch`/`fold` extras would replace it with a
    CPU wheel.
    """
    lines = [
        f"# Setup: in Colab install the package; SMOKE (set by CI) = {what}.",
        "import os, sys",
        *([extra_lines] if extra_lines else []),
        'if "google.colab" in sys.modules:  # Colab keeps its own CUDA torch and TensorFlow',
        '    get_ipython().run_line_magic("pip", "install -q '
        f"'protein_lm[colab] @ git+{REPO_URL}@{BRANCH}'\")",
        'SMOKE = os.environ.get("PROTEIN_LM_SMOKE", "0") == "1"',
        "if SMOKE:  # no hub/transformers/datasets progress widgets: static viewers show them stuck at 0%",
        '    for var in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):',
        '        os.environ[var] = "1"',
        "# The full path on another model, with capped training (CI: PROTEIN_LM_MODEL=tiny",
        "# PROTEIN_LM_MAX_STEPS=5); unset, the notebook uses the models and epochs below.",
        'MODEL_OVERRIDE = os.environ.get("PROTEIN_LM_MODEL") or None',
        'MAX_STEPS = int(os.environ.get("PROTEIN_LM_MAX_STEPS") or 0) or None',
    ]
    return "\n".join(lines)


def write(cells: list, notebook: str) -> None:
    """Write `notebooks/<notebook>` with no outputs and no execution counts."""
    nb = nbf.v4.new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"},
    })
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:02d}"  # stable ids: regenerating gives a clean diff
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbf.write(nb, f"notebooks/{notebook}")
