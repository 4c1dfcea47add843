"""`import protein_lm` must work without torch or tensorflow; missing extras name the pip extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from protein_lm.errors import MissingExtraError, require

_BLOCK = textwrap.dedent(
    """
    import sys, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "tensorflow", "keras"):
                raise ImportError(f"blocked {name}")
    sys.meta_path.insert(0, Block())
    """
)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCK + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)


def test_import_without_torch_and_tensorflow() -> None:
    res = _run(
        """
        import protein_lm, protein_lm.data, protein_lm.batching, protein_lm.metrics, protein_lm.cli
        ids = protein_lm.encode(["MKT"])["input_ids"]
        assert ids.tolist() == [[0, 20, 15, 11, 2]]
        assert not {"torch", "tensorflow", "keras"} & set(sys.modules)
        print("ok")
        """
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_missing_extra_names_pip_extra() -> None:
    res = _run(
        """
        from protein_lm.models import load_model
        from protein_lm.errors import MissingExtraError
        try:
            load_model("tiny")
        except MissingExtraError as e:
            print(e)
        """
    )
    assert "pip install 'protein_lm[torch]'" in res.stdout, res.stderr


def test_import_is_light() -> None:
    res = subprocess.run([sys.executable, "-c", "import sys, protein_lm; print(sorted(m for m in "
                          "('torch','tensorflow','transformers','datasets') if m in sys.modules))"],
                         capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "[]", res.stderr


def test_require() -> None:
    assert require("json", "dev").dumps([1]) == "[1]"
    with pytest.raises(MissingExtraError, match=r"pip install 'protein_lm\[fold\]'"):
        require("no_such_module_xyz", "fold")


def test_lazy_entry_points_resolve_to_their_modules() -> None:
    import importlib

    import protein_lm

    for name, module in protein_lm._LAZY.items():
        pytest.importorskip(module)
        assert getattr(protein_lm, name) is getattr(importlib.import_module(module), name)
        assert name in protein_lm.__all__
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        protein_lm.nope  # noqa: B018
