"""README.md's Python code runs as written (issue #19), as fair-esm's test_readme.py does: a README
example that no longer runs is a bug. Each ```python block runs in a fresh namespace, in a temporary
working directory (the blocks write `runs/`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)


def test_readme_has_python_blocks() -> None:
    assert BLOCKS, "README.md has no ```python block to run"


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code: str, tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
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
