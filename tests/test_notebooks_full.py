"""The notebooks' full path, the one Colab users run, executed top to bottom (issue #17).

`make test` runs the notebooks under nbval in smoke mode (`PROTEIN_LM_SMOKE=1`: small subsets).
Here every notebook that trains, embeds or folds runs its *full* path instead, on all the data, with
the model swapped for `tiny` (`PROTEIN_LM_MODEL`) and training capped (`PROTEIN_LM_MAX_STEPS`), so a
break that only the full path reaches (a long sequence, a full-size split, a non-smoke branch)
fails CI. Outputs are written to a temporary folder; TensorFlow's start-up lines must not appear in
any cell's stderr. About 8 minutes on 2 cores, so `make test` leaves these out (`-m "not full_path"`)
and `make test-full-path` runs them; `.ci/run` runs both.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import notebook_checks

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
FULL_PATH = [
    "protein_language_modeling.ipynb",
    "protein_language_modeling_tf.ipynb",
    "embeddings_and_variants.ipynb",
    "protein_folding.ipynb",
]


@pytest.mark.full_path
@pytest.mark.parametrize("name", FULL_PATH, ids=lambda n: n.removesuffix(".ipynb"))
def test_full_path_runs_top_to_bottom_on_the_tiny_model(name: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.delenv("PROTEIN_LM_SMOKE", raising=False)
    monkeypatch.setenv("PROTEIN_LM_MODEL", "tiny")
    monkeypatch.setenv("PROTEIN_LM_MAX_STEPS", "5")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:  # the kernel shares the machine with the other worker
        share = str(max(1, (os.cpu_count() or 1) // workers))
        for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            monkeypatch.setenv(var, share)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the cell on any error
    stderr = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.outputs if o.get("name") == "stderr")
    noise = [n for n in notebook_checks.load().NOISE if n in stderr]
    assert not noise, f"TensorFlow start-up lines in {name}: {noise}"
    stdout = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                     for o in c.outputs if o.get("name") == "stdout")
    assert "smoke mode: False" in stdout and "model: tiny" in stdout  # the full path, on tiny
