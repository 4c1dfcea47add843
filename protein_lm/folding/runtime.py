"""Running ESMFold within memory: precision, trunk chunk size, and out-of-memory fallbacks.

Works on an already loaded `EsmForProteinFolding` (loading is `esmfold.load_folding_model`) with
the settings of a `FoldOptions`. The memory model behind `chunk_size="auto"` is in
`protein_lm.folding.memory`; turning the model's output into `FoldResult`s is
`results.decode_output`.

Policy (`Folder.fold_batch`): fold a length-sorted batch with the chunk size from `auto_chunk_size`
(or the user's); on `torch.cuda.OutOfMemoryError` split the batch in halves, then retry one record
with halved chunk sizes down to 4, then on CPU (language model in fp32), then return a
`FoldFailure` for it. Any other exception fails only its batch (logged with the traceback).
OOM is detected by type, never by matching the message.

Precision guard (issue #12): NaN or infinity never reaches a `FoldResult`. During the forward
pass, hooks check the language model's hidden states (the float16 part on GPU) and the trunk's
states row by row on real residues; a poisoned record stops the batch at once, becomes a
`FoldFailure` with reason "non-finite" (naming the language model's dtype and the fix: float32 on
CPU), and the batch's other records are folded again without it. Every prediction is checked once
more (positions, pLDDT, PAE, pTM, ipTM) before it becomes a `FoldResult`. Without the hooks, NaN
in the trunk crashes transformers' batch pTM (`IndexError` in `compute_tm`), failing the whole
batch with an unhelpful message.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from protein_lm.errors import require
from protein_lm.folding.memory import (  # re-exported: importers of runtime keep working
    CHUNK_SIZES,
    auto_chunk_size,
    estimate_peak_bytes,
    free_memory,
)
from protein_lm.folding.options import FoldOptions
from protein_lm.folding.results import (  # interface_ptm is re-exported (it lived here)
    FoldFailure,
    FoldInput,
    FoldResult,
    decode_output,
    interface_ptm,
)
from protein_lm.models import canonical_device

if TYPE_CHECKING:
    import torch
    from transformers import EsmForProteinFolding

__all__ = [
    "CHUNK_SIZES",
    "Folder",
    "estimate_peak_bytes",
    "auto_chunk_size",
    "free_memory",
    "place",
    "interface_ptm",
    "non_finite_fields",
]

log = logging.getLogger(__name__)


class Folder:
    """Holds a loaded ESMFold and applies the memory policy (chunk size, OOM fallbacks, devices).

    `model` is a loaded `EsmForProteinFolding` (see `esmfold.load_folding_model`); it is cast per
    the precision policy (`place`) and kept on its device unless `options.device` is given.
    """

    def __init__(self, model: EsmForProteinFolding, options: FoldOptions | None = None) -> None:
        options = FoldOptions() if options is None else options
        if not isinstance(options, FoldOptions):
            raise TypeError(
                f"Folder takes a FoldOptions, got {options!r}; e.g. "
                "Folder(model, FoldOptions(device='cpu', chunk_size=64))"
            )
        self.torch = require("torch", "torch")
        if isinstance(model, (str, os.PathLike)):
            raise TypeError(
                f"Folder needs a loaded model, got the name {str(model)!r}; load it with "
                "protein_lm.folding.esmfold.load_folding_model (or use esmfold.build_folder)"
            )
        self.model = place(model, options.device or str(next(model.parameters()).device))
        self.options = options
        self.home = canonical_device(next(self.model.parameters()).device)

    def iter(self, items: list[FoldInput]) -> Iterator[FoldResult | FoldFailure]:
        """Fold `items` in length-sorted batches of at most `options.max_tokens` residues."""
        from protein_lm.batching import token_budget_batches

        lengths = [it.length for it in items]
        for batch in token_budget_batches(lengths, self.options.max_tokens, extra_tokens=0):
            yield from self.fold_batch([items[i] for i in batch])

    def plan(self, length: int, batch_size: int, device: str) -> list[tuple[str, int | None]]:
        """(device, chunk) attempts: the chosen chunk, halved chunks down to 4, then CPU."""
        cfg = self.model.config.esmfold_config.trunk
        heads = cfg.pairwise_state_dim // cfg.pairwise_head_width

        def choose(dev: str) -> int | None:
            if self.options.chunk_size != "auto":
                return self.options.chunk_size
            return auto_chunk_size(
                length,
                free_memory(dev),
                batch_size=batch_size,
                pairwise_dim=cfg.pairwise_state_dim,
                pairwise_heads=heads,
            )

        first = choose(device)
        attempts = [(device, first)] + [
            (device, c) for c in CHUNK_SIZES if c < min(first or length, length)
        ]
        if self.options.cpu_fallback and device != "cpu":
            attempts.append(("cpu", choose("cpu")))
        return attempts

    def fold_batch(self, items: list[FoldInput]) -> list[FoldResult | FoldFailure]:
        """Fold one batch per the policy (module docstring); one result or failure per item."""
        length = max(it.length for it in items)
        last = ""
        for k, (device, chunk) in enumerate(self.plan(length, len(items), self.home)):
            if k:
                log.warning(
                    "%s: out of memory; retrying on %s with chunk size %s",
                    _ids(items),
                    device,
                    chunk,
                )
            oom = False
            try:
                return self.run(items, device, chunk)
            except self.torch.cuda.OutOfMemoryError as exc:
                oom, last = True, str(exc).splitlines()[0]
            except _NonFinite as exc:  # fail the poisoned records, refold the others
                bad = {i: self._non_finite(items[i], exc.where, device) for i in exc.rows}
                rest = [it for i, it in enumerate(items) if i not in bad]
                done = {r.id: r for r in (self.fold_batch(rest) if rest else [])}
                done.update({f.id: f for f in bad.values()})
                return [done[it.id] for it in items]
            except Exception as exc:
                log.exception("%s: folding failed", _ids(items))
                return [
                    FoldFailure(
                        it.id, ":".join(it.chains), "error", f"{type(exc).__name__}: {exc}"
                    )
                    for it in items
                ]
            if oom:  # outside the except block, so the failed attempt's tensors can be freed
                _free(device)
                if len(items) > 1:  # smaller batches before smaller chunks
                    half = len(items) // 2
                    return self.fold_batch(items[:half]) + self.fold_batch(items[half:])
        where = " and on CPU" if self.options.cpu_fallback else ""
        return [
            FoldFailure(
                it.id,
                ":".join(it.chains),
                "out-of-memory",
                f"out of memory with every chunk size{where} ({last}); fold it on a larger GPU "
                "or split the sequence",
            )
            for it in items
        ]

    def run(
        self, items: list[FoldInput], device: str, chunk: int | None
    ) -> list[FoldResult | FoldFailure]:
        """One attempt, no fallbacks: `items` as one batch on `device` with trunk chunk `chunk`."""
        torch = self.torch
        # Compared in one spelling: "cuda" vs "cuda:0" would re-place (and re-halve the LM) on
        # every call, and a caller's float32 LM would silently run in fp16.
        if canonical_device(next(self.model.parameters()).device) != canonical_device(device):
            self.model = place(self.model, device)
        self.model.trunk.set_chunk_size(chunk)
        n, length = len(items), max(it.length for it in items)
        aatype = torch.zeros(n, length, dtype=torch.long)
        mask = torch.zeros(n, length, dtype=torch.long)
        residx = torch.zeros(n, length, dtype=torch.long)
        for i, it in enumerate(items):
            aatype[i, : it.length] = torch.from_numpy(it.aatype)
            mask[i, : it.length] = 1
            residx[i, : it.length] = torch.from_numpy(it.residx)
        start = time.perf_counter()
        hooks = [
            self.model.esm.register_forward_hook(_check_language_model, with_kwargs=True),
            self.model.trunk.register_forward_hook(_check_trunk),
        ]
        try:
            with torch.inference_mode():
                out = self.model(
                    aatype.to(device),
                    attention_mask=mask.to(device),
                    position_ids=residx.to(device),
                    num_recycles=self.options.num_recycles,
                )
                decoded = decode_output(items, out, device=device, chunk_size=chunk)
                results = [self._check_finite(r) for r in decoded]
        finally:
            for hook in hooks:
                hook.remove()
        seconds = (time.perf_counter() - start) / n
        return [
            dataclasses.replace(r, seconds=seconds) if isinstance(r, FoldResult) else r
            for r in results
        ]

    def _check_finite(self, result: FoldResult) -> FoldResult | FoldFailure:
        """`result`, or a "non-finite" `FoldFailure` if any output holds NaN or infinity."""
        bad = non_finite_fields(result)
        if not bad:
            return result
        return self._non_finite(result, ", ".join(bad), result.device)

    def _non_finite(self, item: FoldInput | FoldResult, where: str, device: str) -> FoldFailure:
        lm = str(next(self.model.esm.parameters()).dtype).removeprefix("torch.")
        if lm in ("float16", "bfloat16"):
            fix = (
                f"{lm} can overflow: fold it with the language model in float32 on CPU "
                "(device='cpu'; CLI: --device cpu)"
            )
        else:
            fix = "the model weights or the input are likely broken"
        message = (
            f"non-finite {where} (NaN or infinity) on {device} with the ESM-2 language model in "
            f"{lm}; {fix}"
        )
        seq = item.sequence if isinstance(item, FoldResult) else ":".join(item.chains)
        return FoldFailure(item.id, seq, "non-finite", message)


class _NonFinite(Exception):
    """Raised by the forward hooks: batch rows `rows` hold NaN or infinity in `where`."""

    def __init__(self, where: str, rows: list[int]) -> None:
        super().__init__(f"non-finite {where} in batch rows {rows}")
        self.where, self.rows = where, rows


def _bad_rows(tensors: Sequence[torch.Tensor], mask: torch.Tensor) -> list[int]:
    """Batch rows with a non-finite value at a real position; tensors (B, T, ...), mask (B, T)."""
    bad = None
    for t in tensors:
        row_bad = ~t.isfinite().reshape(*t.shape[:2], -1).all(-1) & mask  # (B, T)
        bad = row_bad if bad is None else bad | row_bad
    return [] if bad is None else bad.any(-1).nonzero().flatten().tolist()


# Forward hooks (`register_forward_hook`): the modules' inputs and outputs (a ModelOutput / dict).
def _check_language_model(
    module: torch.nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    output: Mapping[str, Any],
) -> None:
    mask = kwargs.get("attention_mask")  # (B, T) real tokens incl. cls/eos
    hidden = output["hidden_states"]  # per layer (B, T, D)
    mask = hidden[0].new_ones(hidden[0].shape[:2], dtype=bool) if mask is None else mask.bool()
    rows = _bad_rows(hidden, mask)
    if rows:
        raise _NonFinite("language model output", rows)


def _check_trunk(
    module: torch.nn.Module, args: tuple[Any, ...], output: Mapping[str, Any]
) -> None:
    mask = args[4].bool()  # trunk(s_s_0, s_z_0, aa, position_ids, mask): (B, L)
    rows = _bad_rows([output["s_s"], output["s_z"]], mask)  # (B, L, C), (B, L, L, C)
    if rows:
        raise _NonFinite("trunk states", rows)


def non_finite_fields(result: FoldResult) -> list[str]:
    """Names of the outputs of `result` holding NaN or infinity (positions, plddt, pae, ptm, iptm).

    Examples
    --------
    >>> import numpy as np
    >>> r = FoldResult("x", "G", np.zeros((1, 37, 3), np.float32), np.ones((1, 37), bool),
    ...                np.array([np.nan], np.float32), np.zeros((1, 1), np.float32), 0.5,
    ...                np.zeros(1, np.int64))
    >>> non_finite_fields(r)
    ['plddt']
    """
    values: dict[str, np.ndarray | float] = {
        "positions": result.positions, "plddt": result.plddt, "pae": result.pae,
        "ptm": result.ptm, "iptm": 0.0 if result.iptm is None else result.iptm}  # fmt: skip
    return [name for name, v in values.items() if not np.isfinite(v).all()]


def place(model: EsmForProteinFolding, device: str) -> EsmForProteinFolding:
    """Move to `device`, language model in fp16 on CUDA and fp32 elsewhere; eval mode, no grad.

    fp16 halves the 3B language model's memory on GPU; on CPU half precision is slow or unsupported
    for several kernels (a known ESMFold crash), so it runs in fp32 there.
    """
    torch = require("torch", "torch")
    dtype = torch.float16 if torch.device(device).type == "cuda" else torch.float32
    model.esm.to(dtype)
    return model.to(device).eval().requires_grad_(False)


def _free(device: str) -> None:
    torch = require("torch", "torch")
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def _ids(items: list[FoldInput]) -> str:
    return ", ".join(repr(it.id) for it in items[:3]) + (" ..." if len(items) > 3 else "")
