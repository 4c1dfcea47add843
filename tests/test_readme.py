"""The documentation's Python code runs as written (issue #19), as fair-esm's test_readme.py does: an
example that no longer runs is a bug. Every ```python block of README.md and of the docs guides runs
offline (they use `tiny` models and the bundled data, and say which hub model to use for real
results) in a fresh namespace, in a temporary working directory (the blocks write `runs/`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs" / "guides").glob("*.md"))]
FENCE = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
BLOCKS = [(p, code) for p in DOCS for code in FENCE.findall(p.read_text(encoding="utf-8"))]


def test_readme_and_guides_have_python_blocks() -> None:
    assert {p.name for p, _ in BLOCKS} >= {"README.md", "finetuning.md", "folding.md", "data.md"}


@pytest.mark.parametrize(("path", "code"), BLOCKS,
                         ids=[f"{p.stem}-{i}" for i, (p, _) in enumerate(BLOCKS)])
def test_documented_python_block_runs(path: Path, code: str, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("torch")
    if "tf.training" in code:
        pytest.importorskip("keras")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "docs"}
    exec(compile(code, str(path), "exec"), namespace)  # noqa: S102 - the documentation's own code
    if "preds" in namespace:  # the API tour: every step produced its result
        assert len(namespace["preds"].ids) == len(namespace["recs"])
        assert namespace["structures"][0].ptm >= 0 and namespace["embeddings"].ids


def _cli_examples(text: str) -> list[list[str]]:
    """Every `protein-lm ...` command of the ```bash blocks, continuation lines joined."""
    import shlex

    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("  #", 1)[0].strip()
            if command.startswith("protein-lm "):
                out.append(shlex.split(command)[1:])
    return out


def test_readme_cli_examples_use_real_flags() -> None:
    """Each documented command parses with today's `protein-lm` parser (a renamed or removed flag
    fails here, not in a user's shell)."""
    from protein_lm.cli import build_parser

    examples = _cli_examples(README.read_text(encoding="utf-8"))
    assert {argv[0] for argv in examples} == {"finetune", "predict", "fold", "embed", "score"}
    for argv in examples:
        build_parser().parse_args(argv)  # argparse exits (a test failure) on an unknown flag
