"""Running ESMFold within memory: precision, trunk chunk size, and out-of-memory fallbacks.

Works on an already loaded `EsmForProteinFolding` (loading is `esmfold.load_folding_model`).

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
from collections.abc import Iterator
from typing import Any

import numpy as np

from protein_lm.errors import require
from protein_lm.folding.results import MAX_PAE, FoldFailure, FoldInput, FoldResult

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

CHUNK_SIZES = (512, 256, 128, 64, 32, 16, 8, 4)  # candidates, largest first
_UNK = 20  # openfold residue type of X (`residue_constants.restype_num`)


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


class Folder:
    """Holds a loaded ESMFold and applies the memory policy (chunk size, OOM fallbacks, devices).

    `model` is a loaded `EsmForProteinFolding` (see `esmfold.load_folding_model`); it is cast per
    the precision policy (`place`) and kept on its device unless `device` is given.
    """

    def __init__(
        self,
        model: Any,
        device: str | None,
        chunk_size: Any,
        num_recycles: int | None,
        cpu_fallback: bool,
    ) -> None:
        if chunk_size not in ("auto", None) and not (
            isinstance(chunk_size, int) and chunk_size > 0
        ):
            raise ValueError(
                f"`chunk_size` must be a positive int, 'auto' or None, got {chunk_size!r}"
            )
        self.torch = require("torch", "torch")
        if isinstance(model, (str, os.PathLike)):
            raise TypeError(
                f"Folder needs a loaded model, got the name {str(model)!r}; load it with "
                "protein_lm.folding.esmfold.load_folding_model (or use esmfold.build_folder)"
            )
        model = place(model, device or str(next(model.parameters()).device))
        self.model, self.chunk_size, self.num_recycles = model, chunk_size, num_recycles
        self.home = str(next(model.parameters()).device)
        self.cpu_fallback = cpu_fallback

    def iter(self, items: list[FoldInput], max_tokens: int) -> Iterator[FoldResult | FoldFailure]:
        from protein_lm.batching import token_budget_batches

        for batch in token_budget_batches([it.length for it in items], max_tokens, extra_tokens=0):
            yield from self.fold_batch([items[i] for i in batch])

    def plan(self, length: int, batch_size: int, device: str) -> list[tuple[str, int | None]]:
        """(device, chunk) attempts: the chosen chunk, halved chunks down to 4, then CPU."""
        cfg = self.model.config.esmfold_config.trunk
        heads = cfg.pairwise_state_dim // cfg.pairwise_head_width

        def choose(dev: str) -> int | None:
            if self.chunk_size != "auto":
                return self.chunk_size
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
        if self.cpu_fallback and device != "cpu":
            attempts.append(("cpu", choose("cpu")))
        return attempts

    def fold_batch(self, items: list[FoldInput]) -> list[FoldResult | FoldFailure]:
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
            except Exception as exc:  # noqa: BLE001 - a bad batch must not end a bulk run
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
        return [
            FoldFailure(
                it.id,
                ":".join(it.chains),
                "out-of-memory",
                f"out of memory with every chunk size{' and on CPU' if self.cpu_fallback else ''} "
                f"({last}); fold it on a larger GPU or split the sequence",
            )
            for it in items
        ]

    def run(
        self, items: list[FoldInput], device: str, chunk: int | None
    ) -> list[FoldResult | FoldFailure]:
        torch = self.torch
        if str(next(self.model.parameters()).device) != str(torch.device(device)):
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
                    num_recycles=self.num_recycles,
                )
                results = self._results(items, out, device, chunk)
        finally:
            for hook in hooks:
                hook.remove()
        seconds = (time.perf_counter() - start) / n
        return [
            dataclasses.replace(r, seconds=seconds) if isinstance(r, FoldResult) else r
            for r in results
        ]

    def _results(
        self, items: list[FoldInput], out: Any, device: str, chunk: int | None
    ) -> list[FoldResult | FoldFailure]:
        of = require("transformers.models.esm.openfold_utils", "fold")
        pos14 = out["positions"][-1]  # (B, L, 14, 3)
        pos37 = of.atom14_to_atom37(pos14, out).float().cpu().numpy()  # (B, L, 37, 3)
        pos14 = pos14.float().cpu().numpy()
        mask37 = out["atom37_atom_exists"].cpu().numpy() > 0.5  # (B, L, 37)
        plddt = out["plddt"][..., 1].float().cpu().numpy() * 100.0  # CA atom, 0-1 -> 0-100
        pae = out["predicted_aligned_error"].float().cpu().numpy()  # (B, L, L) Angstrom
        top = out.get("max_predicted_aligned_error")  # the last bin centre: one value for all
        max_pae = MAX_PAE if top is None else float(top.reshape(-1)[0])
        results: list[FoldResult | FoldFailure] = []
        for b, it in enumerate(items):
            idx = np.flatnonzero(it.real)
            pos, msk = pos37[b, idx], mask37[b, idx].copy()
            # X (openfold type 20) gets no atoms from openfold; keep its frame origin as the CA.
            unk = it.aatype[idx] == _UNK
            pos[unk, 1], msk[unk, 1] = pos14[b, idx[unk], 1], True
            sel = self.torch.as_tensor(idx, device=out["ptm_logits"].device)
            logits = out["ptm_logits"][b].index_select(0, sel).index_select(1, sel).float()
            ptm = float("nan")  # compute_tm raises IndexError on NaN logits
            if bool(self.torch.isfinite(logits).all()):
                ptm = float(of.compute_tm(logits, max_bin=31, no_bins=logits.shape[-1]))
            multimer = len(it.chains) > 1
            result = FoldResult(
                it.id,
                ":".join(it.chains),
                pos.astype(np.float32),
                msk,
                plddt[b, idx].astype(np.float32),
                pae[b][np.ix_(idx, idx)].astype(np.float32),
                ptm,
                it.chain_index,
                device=device,
                chunk_size=chunk,
                iptm=interface_ptm(logits, it.chain_index) if multimer else None,
                max_pae=max_pae,
            )
            results.append(self._check_finite(result))
        return results

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


def _bad_rows(tensors: Any, mask: Any) -> list[int]:
    """Batch rows with a non-finite value at a real position; tensors (B, T, ...), mask (B, T)."""
    bad = None
    for t in tensors:
        row_bad = ~t.isfinite().reshape(*t.shape[:2], -1).all(-1) & mask  # (B, T)
        bad = row_bad if bad is None else bad | row_bad
    return [] if bad is None else bad.any(-1).nonzero().flatten().tolist()


def _check_language_model(module: Any, args: Any, kwargs: Any, output: Any) -> None:
    mask = kwargs.get("attention_mask")  # (B, T) real tokens incl. cls/eos
    hidden = output["hidden_states"]  # per layer (B, T, D)
    mask = hidden[0].new_ones(hidden[0].shape[:2], dtype=bool) if mask is None else mask.bool()
    rows = _bad_rows(hidden, mask)
    if rows:
        raise _NonFinite("language model output", rows)


def _check_trunk(module: Any, args: Any, output: Any) -> None:
    mask = args[4].bool()  # trunk(s_s_0, s_z_0, aa, position_ids, mask): (B, L)
    rows = _bad_rows([output["s_s"], output["s_z"]], mask)  # (B, L, C), (B, L, L, C)
    if rows:
        raise _NonFinite("trunk states", rows)


def non_finite_fields(result: FoldResult) -> list[str]:
    """Names of the outputs of `result` holding NaN or infinity (positions, plddt, pae, ptm, iptm).

    >>> import numpy as np
    >>> r = FoldResult("x", "G", np.zeros((1, 37, 3), np.float32), np.ones((1, 37), bool),
    ...                np.array([np.nan], np.float32), np.zeros((1, 1), np.float32), 0.5,
    ...                np.zeros(1, np.int64))
    >>> non_finite_fields(r)
    ['plddt']
    """
    values = {"positions": result.positions, "plddt": result.plddt, "pae": result.pae,
              "ptm": result.ptm, "iptm": 0.0 if result.iptm is None else result.iptm}  # fmt: skip
    return [name for name, v in values.items() if not np.isfinite(v).all()]


def interface_ptm(logits: Any, chain_index: np.ndarray, max_bin: float = 31.0) -> float:
    """ipTM as in AlphaFold-Multimer: pTM restricted to residue pairs in different chains.

    `logits` is ESMFold's `ptm_logits` of one structure on real residues, shape (L, L, bins);
    d0 uses all L residues, each aligned residue's TM term is averaged over the residues of the
    other chains, and the best aligned residue is taken (as `compute_tm` does for pTM).
    """
    torch = require("torch", "torch")
    n, bins = logits.shape[0], logits.shape[-1]
    step = max_bin / (bins - 2)  # boundaries: linspace(0, max_bin, bins - 1)
    centers = torch.arange(bins, dtype=torch.float32, device=logits.device) * step + step / 2
    d0 = 1.24 * (max(n, 19) - 15) ** (1.0 / 3) - 1.8
    term = (logits.float().softmax(-1) * (1.0 / (1 + centers**2 / d0**2))).sum(-1)  # (L, L)
    chains = torch.as_tensor(chain_index, device=logits.device)
    other = (chains[:, None] != chains[None, :]).float()  # (L, L)
    per_aligned = (term * other).sum(-1) / (other.sum(-1) + 1e-8)  # (L,)
    return float(per_aligned.max())


def place(model: Any, device: str) -> Any:
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
