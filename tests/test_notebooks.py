"""The tutorial notebooks as committed: no outputs, the Colab badge, the primers, a generator.

What a notebook shows when it runs (figures, 3D views, no tqdm warning, classes per split, Q3 above
the majority class) is checked where it runs, once: `notebooks/conftest.py` adds an
`<notebook>::outputs` item after each notebook's cells under `pytest --nbval-lax notebooks/`.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import notebook_checks

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _notebook_checks():
    """notebooks/conftest.py as a module (its EXPECTED table names every notebook)."""
    return notebook_checks.load()


EXPECTED = _notebook_checks().EXPECTED


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


def test_output_checks_fail_on_what_a_learner_must_not_see() -> None:
    """The checks `notebooks/conftest.py` runs on nbval's cell outputs are not vacuous."""
    check = _notebook_checks().check_outputs
    png = {"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}}

    def out(text: str, name: str = "stdout") -> dict:
        return {"output_type": "stream", "name": name, "text": text}

    good = "train 10 proteins {'a': 5, 'b': 5}\ntest 4 proteins {'a': 2, 'b': 2}\n"
    check("getting_started.ipynb", [png], [])
    check("embeddings_and_variants.ipynb", [png, png, png, out(good)], [good])
    with pytest.raises(AssertionError, match="images shown"):
        check("getting_started.ipynb", [out("no figure")], ["no figure"])
    with pytest.raises(AssertionError):
        check("getting_started.ipynb", [png, out("IProgress not found", "stderr")], [])
    tf_line = "I0000 port.cc:153] oneDNN custom operations are on. You may see slightly different"
    with pytest.raises(AssertionError, match="start-up noise"):
        check("getting_started.ipynb", [png, out(tf_line, "stderr")], [])
    with pytest.raises(AssertionError, match="3D views"):
        check("protein_folding.ipynb", [png, png], [])
    with pytest.raises(AssertionError, match="class counts"):
        check("embeddings_and_variants.ipynb", [png, png, png], [])
    bad = "train 10 proteins {'a': 5, 'b': 5}\ntest 4 proteins {'a': 4}\n"
    with pytest.raises(AssertionError, match="misses a class"):
        check("embeddings_and_variants.ipynb", [png, png, png, out(bad)], [bad])
    flat = good + "test Q3: 0.40\nmajority-class baseline on test: 0.39\n"
    with pytest.raises(AssertionError):
        check("embeddings_and_variants.ipynb", [png, png, png, out(flat)], [flat])
