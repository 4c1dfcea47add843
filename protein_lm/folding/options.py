"""`FoldOptions`: how a loaded ESMFold is run (device, trunk chunk size, batch budget, recycles,
CPU fallback), checked once and passed down as one object.

The entry points (`esmfold.fold`, `esmfold.iter_fold`, `bulk.fold_fasta`) accept either
`options=FoldOptions(...)` or the same settings as keyword arguments (`fold_options` merges them);
the layers below (`esmfold.build_folder`, `runtime.Folder`) take only a `FoldOptions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from numbers import Integral
from typing import Any, Literal

from protein_lm.limits import FOLD_BATCH_RESIDUES

__all__ = ["FoldOptions", "fold_options"]


@dataclass(frozen=True)
class FoldOptions:
    """How ESMFold runs: device, trunk chunk size, batch budget, recycles and CPU fallback.

    Attributes
    ----------
    device : str or None
        Where to fold ("cpu", "cuda", "cuda:1"); None keeps the model on its device.
    chunk_size : int, "auto" or None
        Trunk chunk size; "auto" picks it from length and free memory, None disables chunking.
    max_tokens : int
        Batch budget in residues including padding (sorted by length; longer ones fold alone).
    num_recycles : int or None
        Trunk recycles; None uses the model's (4 for esmfold_v1).
    cpu_fallback : bool
        Retry a record on CPU when it runs out of GPU memory with every chunk size.

    Examples
    --------
    >>> FoldOptions(chunk_size=64).max_tokens
    1024
    """

    device: str | None = None
    chunk_size: int | Literal["auto"] | None = "auto"
    max_tokens: int = FOLD_BATCH_RESIDUES
    num_recycles: int | None = None
    cpu_fallback: bool = True

    def __post_init__(self) -> None:
        if self.device is not None and not isinstance(self.device, str):
            # a torch.device is accepted and kept as its name (results record the device string)
            if type(self.device).__module__ != "torch":
                raise ValueError(
                    "`device` must be a str such as 'cpu' or 'cuda', or None, got "
                    f"{self.device!r}."
                )
            object.__setattr__(self, "device", str(self.device))
        chunk = self.chunk_size
        if chunk not in ("auto", None) and not (isinstance(chunk, int) and chunk > 0):
            raise ValueError(f"`chunk_size` must be a positive int, 'auto' or None, got {chunk!r}")
        if not _is_int(self.max_tokens) or self.max_tokens <= 0:
            raise ValueError(f"`max_tokens` must be > 0, got {self.max_tokens!r}.")
        recycles = self.num_recycles
        if recycles is not None and (not _is_int(recycles) or recycles < 0):
            raise ValueError(
                f"`num_recycles` must be >= 0, or None for the model's default, got {recycles!r}."
            )
        if not isinstance(self.cpu_fallback, bool):
            raise ValueError(f"`cpu_fallback` must be True or False, got {self.cpu_fallback!r}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (round-trips through `from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FoldOptions:
        """Inverse of `to_dict`; unknown keys are an error naming the allowed ones."""
        unknown = sorted(set(d) - _NAMES)
        if unknown:
            raise ValueError(f"Unknown FoldOptions keys {unknown}; allowed: {sorted(_NAMES)}")
        return cls(**dict(d))


_NAMES = {f.name for f in fields(FoldOptions)}
_DEFAULTS = {f.name: f.default for f in fields(FoldOptions)}


def fold_options(options: FoldOptions | None = None, **kwargs: Any) -> FoldOptions:
    """`options`, or a `FoldOptions` built from the keyword arguments of an entry point.

    Keyword arguments left at their defaults are ignored; giving another value together with
    `options` is a `TypeError` (two sources for one setting).

    Examples
    --------
    >>> fold_options(None, chunk_size=32).chunk_size
    32
    """
    unknown = sorted(set(kwargs) - _NAMES)
    if unknown:
        raise TypeError(f"Unknown folding options {unknown}; allowed: {sorted(_NAMES)}")
    if options is None:
        return FoldOptions(**kwargs)
    if not isinstance(options, FoldOptions):
        raise TypeError(f"`options` must be a FoldOptions or None, got {type(options).__name__}")
    changed = sorted(k for k, v in kwargs.items() if v != _DEFAULTS[k])
    if changed:
        raise TypeError(
            f"Folding options given twice: `options` and {changed}; set them in FoldOptions "
            "(e.g. dataclasses.replace(options, ...)) or drop `options`"
        )
    return options


def _is_int(value: object) -> bool:
    """An integer (numpy's too) that is not a bool (True is not a batch budget)."""
    return isinstance(value, Integral) and not isinstance(value, bool)
