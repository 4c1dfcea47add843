"""CPU inference precision for `embed` and `score`: float32, bfloat16 autocast, or int8.

On a CPU the numerics of a forward pass are a choice, not a given:

- `"float32"`: the reference.
- `"bfloat16"`: `torch.autocast("cpu", torch.bfloat16)`. Matmuls run in bfloat16 with float32
  accumulation where the CPU has native bfloat16 instructions (AVX512-BF16, or AMX tiles on Intel
  Sapphire Rapids and later); LayerNorm, softmax and the outputs stay float32. Without those
  instructions bfloat16 is emulated and slower than float32, so it is never chosen there.
- `"int8"`: `torch.ao` dynamic quantisation of every `nn.Linear` (int8 weights, activations
  quantised per batch); applied to a copy, the caller's model is untouched.
- `"auto"` (the default of `embed` and `score`): bfloat16 on a CPU with native bfloat16 when the
  model is large enough for its matmuls to dominate (`AUTO_BF16_MIN_HIDDEN`), float32 otherwise.
  On CUDA nothing changes: the model runs in its own dtype.

`benchmarks/cpu_inference.py` measures speed and drift of each mode side by side (README table).
Outputs are float32 in every mode.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import platform
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from protein_lm.errors import require

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["PRECISIONS", "Precision", "cpu_has_bf16", "resolve_precision", "cpu_precision"]

Precision = Literal["auto", "float32", "bfloat16", "int8"]
PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16", "int8")
# Below this width autocast's casts cost more than the bf16 matmuls save (the 4-layer width-128
# `tiny` model); ESM-2 35M (480) and larger gained 1.7-3x on the AMX machine of the README table.
AUTO_BF16_MIN_HIDDEN = 320

log = logging.getLogger(__name__)


@functools.cache
def cpu_has_bf16() -> bool:
    """True when the CPU has native bfloat16 matmul instructions (AVX512-BF16 or AMX-BF16), read
    from /proc/cpuinfo (Linux x86); False elsewhere, where bfloat16 would be emulated."""
    if platform.system() != "Linux":
        return False
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "").split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(model: PreTrainedModel, precision: str = "auto") -> str:
    """The precision a CPU forward of `model` runs in: one of float32, bfloat16, int8, or
    "model" (not on the CPU, or a model already in half precision: its own dtype is kept)."""
    if precision not in PRECISIONS:
        raise ValueError(f"`precision` must be one of {PRECISIONS}, got {precision!r}")
    torch = require("torch", "torch")
    param = next(model.parameters())
    if param.device.type != "cpu" or param.dtype != torch.float32:
        return "model"
    if precision != "auto":
        return precision
    hidden = getattr(getattr(model, "config", None), "hidden_size", 0)
    return "bfloat16" if cpu_has_bf16() and hidden >= AUTO_BF16_MIN_HIDDEN else "float32"


@contextlib.contextmanager
def cpu_precision(model: PreTrainedModel, precision: str = "auto") -> Iterator[PreTrainedModel]:
    """Run the block's forwards of the yielded model in `precision` (see the module doc).

    Yields `model` itself (float32, bfloat16 autocast, or its own dtype off the CPU) or, for
    int8, a dynamically quantised copy. The choice is logged at INFO.
    """
    torch = require("torch", "torch")
    mode = resolve_precision(model, precision)
    if mode != "model":
        log.info("CPU precision: %s (asked: %s)", mode, precision)
    if mode == "bfloat16":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            yield model
    elif mode == "int8":
        from torch.ao.quantization import quantize_dynamic

        with _quiet_quantize_warnings():
            yield quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    else:
        yield model


@contextlib.contextmanager
def _quiet_quantize_warnings() -> Iterator[None]:
    """torch 2.13 warns on every quantised tensor created (a deprecation of the API, not of the
    numerics): once per layer per call would bury the user's own messages."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*quantize_per_tensor.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.ao\..*")
        yield
