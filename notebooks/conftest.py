"""What each tutorial notebook must show when it runs (`pytest --nbval-lax notebooks/`).

nbval executes every code cell and fails on an error, but with `--nbval-lax` it compares no output.
This file reads the outputs nbval collected (each cell item keeps them in `test_outputs`) and adds
one more test item per notebook, `<notebook>::outputs`, that runs after its last cell and checks:
the figures and 3D views it renders (a figure that silently fails to show is the bug of issue #11),
no tqdm "IProgress not found" warning and none of TensorFlow's start-up lines (`NOISE`), every
split whose class counts are printed holds every class (a metric on a split missing a class means nothing), the
per-residue task visibly learns (test Q3 above the majority-class baseline), and the files the
notebook writes. So each notebook executes once per test run (CI: smoke mode).

The kernel must render figures the way a user's Jupyter does: a kernel that inherits CI's
`MPLBACKEND=Agg` shows no figure at all, so that variable is removed before any kernel starts.
With pytest-xdist, use `--dist loadfile` (or loadscope): a notebook's cells and its check must
run in one worker, in one kernel.
"""

from __future__ import annotations

import ast
import os
import re
import time
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent

# notebook -> (minimum images, minimum 3D views, prints per-split class counts)
EXPECTED = {
    "getting_started.ipynb": (1, 0, False),
    # membrane: curves + confusion; SS: label strip + curves + confusion
    "protein_language_modeling.ipynb": (5, 0, True),
    "protein_language_modeling_tf.ipynb": (2, 0, True),  # two training-curve plots
    "protein_folding.ipynb": (2, 2, False),  # pLDDT/PAE panels + insulin PAE; two 3D views
    "embeddings_and_variants.ipynb": (3, 0, True),  # PCA, BLAT scatter, contact map
}
# TensorFlow's C++ start-up lines (written to fd 2 past TF_CPP_MIN_LOG_LEVEL): never in a cell's output
NOISE = ("absl::InitializeLog", "oneDNN custom operations", "Could not find cuda drivers", "cuInit")
_SPLIT_LINE = re.compile(r"^(train|validation|test)\s+\d+ proteins (\{.*\})\s*$", re.M)
_STARTED = time.time()  # files the notebooks write must be newer than this


def _nbval_on(config: pytest.Config) -> bool:
    option = config.option
    return bool(getattr(option, "nbval", False) or getattr(option, "nbval_lax", False))


def pytest_configure(config: pytest.Config) -> None:
    if _nbval_on(config):
        # The kernels inherit this environment: the inline backend (what users see) and no hub.
        os.environ.pop("MPLBACKEND", None)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        # Under pytest-xdist (`-n 2 --dist loadfile`; make test runs notebooks in one process)
        # kernels run side by side: each gets its share of the cores, as oversubscribed
        # torch/TensorFlow threads stall each other.
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
        if workers > 1:
            share = str(max(1, (os.cpu_count() or 1) // workers))
            for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
                os.environ.setdefault(var, share)


def _is_cell(item: pytest.Item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "cell_num")


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselection, which then applies to these items too
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    if not _nbval_on(config):
        return
    cells: dict[pytest.Collector, list[pytest.Item]] = {}
    last: dict[pytest.Collector, int] = {}
    for i, item in enumerate(items):
        if _is_cell(item):
            cells.setdefault(item.parent, []).append(item)
            last[item.parent] = i
    for nb_file, i in sorted(last.items(), key=lambda kv: kv[1], reverse=True):
        check = NotebookOutputs.from_parent(nb_file, name="outputs")
        check.cells = cells[nb_file]
        items.insert(i + 1, check)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.failed:
        _FAILED_NODES.add(report.nodeid)


_FAILED_NODES: set[str] = set()


def _stream(outputs: list[dict], name: str) -> str:
    return "".join(o.get("text", "") for o in outputs
                   if o.get("output_type") == "stream" and o.get("name") == name)


def _is_3d(data: dict) -> bool:
    return "application/3dmoljs_load.v0" in data or "3Dmol" in str(data.get("text/html", ""))


class NotebookOutputs(pytest.Item):
    """The output checks of one notebook, run after its cells (same kernel session)."""

    cells: list[pytest.Item]  # set by pytest_collection_modifyitems

    def runtest(self) -> None:
        name = self.parent.path.name
        failed = [it.name for it in self.cells if it.nodeid in _FAILED_NODES]
        if failed:
            pytest.skip(f"not checked: {', '.join(failed)} failed (see above)")
        unrun = [it.name for it in self.cells
                 if it.test_outputs is None and not it.options["skip"]]
        if unrun:
            pytest.skip(f"not checked: {', '.join(unrun)} did not run (deselected?)")
        assert name in EXPECTED, f"add {name} to EXPECTED in {__file__}"
        outputs = [o for it in self.cells for o in (it.test_outputs or [])]
        stdouts = [_stream(it.test_outputs or [], "stdout") for it in self.cells]
        check_outputs(name, outputs, stdouts)

    def reportinfo(self) -> tuple[Path, None, str]:
        return self.path, None, f"{self.parent.path.name}::outputs"


def check_outputs(name: str, outputs: list[dict], cell_stdouts: list[str]) -> None:
    """Assert what a learner must see in notebook `name` (smoke mode), from its cell outputs."""
    min_images, min_3d, has_splits = EXPECTED[name]

    datas = [o.get("data", {}) for o in outputs if "data" in o]
    images = sum("image/png" in d for d in datas)
    views = sum(_is_3d(d) for d in datas)
    assert images >= min_images, f"{images} images shown, expected at least {min_images}"
    assert views >= min_3d, f"{views} 3D views shown, expected at least {min_3d}"

    stderr, stdout = _stream(outputs, "stderr"), _stream(outputs, "stdout")
    assert "TqdmWarning" not in stderr and "IProgress not found" not in stderr
    widgets = sum("application/vnd.jupyter.widget-view+json" in d for d in datas)
    assert widgets == 0, f"{widgets} progress widgets in smoke mode (stuck at 0% in static viewers)"
    noise = [n for n in NOISE if n in stderr]
    assert not noise, f"TensorFlow start-up noise in the outputs: {noise}"

    groups = [ast.literal_eval(m.group(2)) for m in _SPLIT_LINE.finditer(stdout)]
    if has_splits:
        assert groups, "the notebook prints its per-split class counts"
    for text in cell_stdouts:
        splits = [ast.literal_eval(m.group(2)) for m in _SPLIT_LINE.finditer(text)]
        classes = set().union(*splits) if splits else set()
        for counts in splits:
            assert set(counts) == classes and len(classes) >= 2, \
                f"a split misses a class: {splits}"

    q3 = re.search(r"test Q3: ([0-9.]+)", stdout)
    baseline = re.search(r"majority-class baseline on test: ([0-9.]+)", stdout)
    if q3 and baseline:  # the per-residue task learns from scratch in smoke mode
        assert float(q3.group(1)) > float(baseline.group(1)) + 0.02, stdout

    if name == "protein_folding.ipynb":
        from protein_lm.folding.results import FoldResult

        if hasattr(FoldResult, "write_scores"):
            assert "keys: " in stdout and "'pae'" in stdout and "'ptm'" in stdout
    if name == "protein_language_modeling.ipynb":  # written by this run (nbval's cwd: notebooks/)
        card_path = NOTEBOOKS / "runs" / "pt_secondary_structure" / "README.md"
        assert card_path.is_file() and card_path.stat().st_mtime >= _STARTED - 1, card_path
        card = card_path.read_text()
        assert card.startswith("---\nlibrary_name: transformers\n")
        assert "FLIP secondary structure" in card and "| test | q3 |" in card
