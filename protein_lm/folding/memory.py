"""How much memory the ESMFold trunk needs and how much there is: the basis of `chunk_size="auto"`.

`estimate_peak_bytes` models the trunk's activation peak (checked against measured peaks in
`benchmarks/folding_memory.py`), `free_memory` reads what a device has left, and
`auto_chunk_size` picks the largest trunk chunk that fits. `runtime.Folder` uses them to plan its
attempts; the out-of-memory fallbacks cover what the estimate misses.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from protein_lm.errors import InvalidInputError, require

if TYPE_CHECKING:
    from transformers import EsmConfig

__all__ = [
    "CHUNK_SIZES",
    "estimate_peak_bytes",
    "auto_chunk_size",
    "free_memory",
    "weight_bytes",
    "check_host_memory",
]

CHUNK_SIZES = (512, 256, 128, 64, 32, 16, 8, 4)  # candidates, largest first


def estimate_peak_bytes(
    length: int,
    chunk: int | None,
    *,
    batch_size: int = 1,
    pairwise_dim: int = 128,
    pairwise_heads: int = 4,
    bytes_per_value: int = 4,
) -> int:
    """Estimated activation peak of the folding trunk in bytes (weights not included).

    About 12 live pair-sized tensors of shape (B, L, L, c_z) (states, recycling, the 4x pair MLP,
    PAE/distogram logits), plus triangular attention, whose logits, bias and probabilities are 3
    tensors of shape (B, chunk, H, L, L); chunking only shrinks the latter. Compared with measured
    peaks in `benchmarks/folding_memory.py`.
    """
    rows = length if chunk is None else min(chunk, length)
    pair = 12 * batch_size * length**2 * pairwise_dim * bytes_per_value
    return pair + 3 * batch_size * rows * pairwise_heads * length**2 * bytes_per_value


def auto_chunk_size(
    length: int,
    free_bytes: int,
    *,
    batch_size: int = 1,
    pairwise_dim: int = 128,
    pairwise_heads: int = 4,
) -> int | None:
    """Largest trunk chunk size (None: unchunked) whose `estimate_peak_bytes` fits 80% of memory.

    If nothing fits, the smallest candidate (4); the out-of-memory fallbacks take it from there.
    """
    kw = {"batch_size": batch_size, "pairwise_dim": pairwise_dim, "pairwise_heads": pairwise_heads}
    budget = 0.8 * free_bytes
    if estimate_peak_bytes(length, None, **kw) <= budget:
        return None
    for chunk in CHUNK_SIZES:
        if chunk < length and estimate_peak_bytes(length, chunk, **kw) <= budget:
            return chunk
    return CHUNK_SIZES[-1]


def free_memory(device: str) -> int:
    """Bytes available on `device` (CUDA: free + cached by torch; CPU: available RAM)."""
    torch = require("torch", "torch")
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free + torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev))
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil is nearly always there (jupyter depends on it)
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def weight_bytes(config: EsmConfig, bytes_per_value: int = 4) -> int:
    """Bytes of an ESMFold's weights at `bytes_per_value` (4: float32, as on the CPU), counted on a
    meta-device build of its architecture (nothing is allocated); esmfold_v1: 14.1e9."""
    torch = require("torch", "torch")
    transformers = require("transformers", "torch")
    with torch.device("meta"):
        model = transformers.EsmForProteinFolding(config)
    return sum(p.numel() for p in model.parameters()) * bytes_per_value


def check_host_memory(config: EsmConfig, device: str) -> None:
    """Refuse (one line, with the fix) to load ESMFold on the CPU when its float32 weights alone
    exceed the available RAM: the loader would otherwise be killed by the kernel's OOM killer, and
    in Jupyter/Colab the kernel just dies with no message (esmfold_v1 needs 14.1 GB; a CPU-only
    Colab has about 12.7 GB)."""
    if require("torch", "torch").device(device).type != "cpu":
        return
    need, have = weight_bytes(config), free_memory("cpu")
    if need > have:
        raise InvalidInputError(
            f"ESMFold needs {need / 1e9:.1f} GB of RAM for its weights on the CPU, but only "
            f"{have / 1e9:.1f} GB are available; fold on a GPU (Colab: Runtime > Change runtime "
            "type > GPU) or on a machine with more memory"
        )
