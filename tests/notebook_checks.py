"""notebooks/conftest.py as an importable module (its EXPECTED pictures table, NOISE lines and
check_outputs), for the tests that check the notebooks from outside nbval."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def load() -> ModuleType:
    """A fresh import of notebooks/conftest.py (not a package, so by path)."""
    spec = importlib.util.spec_from_file_location("notebook_checks", NOTEBOOKS / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
