"""Exception types: every message says what failed, the value, and the fix."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = [
    "ProteinLMError",
    "InvalidSequenceError",
    "InvalidInputError",
    "DataNotFoundError",
    "ModelNotFoundError",
    "MissingExtraError",
    "StructureWriteError",
    "require",
]


class ProteinLMError(Exception):
    """Base class of all protein_lm errors."""


class InvalidSequenceError(ProteinLMError, ValueError):
    """A protein sequence contains a character the policy does not allow."""


class InvalidInputError(ProteinLMError, ValueError):
    """A user file (CSV/TSV/FASTA) or argument is malformed; the message names file, row and
    field."""


class DataNotFoundError(ProteinLMError, FileNotFoundError):
    """A bundled data file is in none of the searched folders and cannot be downloaded."""


class ModelNotFoundError(ProteinLMError, OSError):
    """A model id is neither a local directory, `tiny`, nor reachable/cached on the hub."""


class MissingExtraError(ProteinLMError, ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


class StructureWriteError(ProteinLMError, ValueError):
    """A structure cannot be written in the requested format (NaN, overflow, too many chains)."""


def require(module: str, extra: str) -> ModuleType:
    """Import `module` or raise `MissingExtraError` naming the pip extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"`{module}` is required for this feature but is not installed ({exc}). "
            f"Install it with: pip install 'protein_lm[{extra}]'"
        ) from exc
