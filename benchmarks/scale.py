"""Scale suite (issue #12, parts 1-4): fine-tuning, embedding, ESMFold, precision at real shapes.

    python benchmarks/scale.py --smoke                 # tiny shapes on CPU, < 2 min (run by tests)
    python benchmarks/scale.py --device cuda           # full shapes, one large GPU, ~8 min budget
    python benchmarks/scale.py --device cpu --lm-shape esm2_t33_650M   # full trunk, smaller LM

One JSON report (default benchmarks/results/scale-<device>-<date>.json) plus a short table.
Weights are random (seeded), built from configs: throughput, memory and numerical agreement do
not depend on trained weights, but pLDDT/pTM values are meaningless. Full and smoke modes run the
same code; only shapes, counts and caps differ (`_SIZES`), so the smoke run keeps every path alive.

Sections (each timed; when `--budget-s` runs out the remaining cases are marked skipped):

1. finetune   ESM-2 650M shape, sequence and token heads; baseline (bf16 autocast, sdpa,
              token-budget batches, no checkpointing, full fine-tune) and one change at a time;
              then the longest sequence that trains at batch 1 under each `--memory-gb` cap.
2. embed      `plm.embed` vs a per-sequence loop vs plain transformers padded batches of 8, fp32
              and bf16.
3. fold       esmfold_v1 shape (3B LM + 48-block trunk): time and peak memory per length for no
              chunking, each chunk size and "auto"; chunked vs unchunked agreement; longest L
              folding under each cap.
4. precision  embed and fold in half precision: which outputs hold NaN/inf.

Memory: on CUDA `torch.cuda.max_memory_allocated` (weights included). CPU has no allocator peak, so
the report gives a labelled *estimate*: fine-tuning = weights + grads + AdamW states + bytes saved
for backward (counted with `saved_tensors_hooks`; misses transient buffers), folding = weights +
`estimate_peak_bytes` (the model behind `chunk_size="auto"`). Invariants (exit 1 on failure):
chunked = unchunked within tolerance, no NaN/inf in fp32/bf16 outputs, bulk embed >= loop (full
mode only; the smoke run reports the ratio).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import importlib
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))

import protein_lm as plm  # noqa: E402

GB = 1e9
AA = "ACDEFGHIKLMNPQRSTVWY"
# Published ESM-2 650M full fine-tune memory (residues at batch 1), printed beside ours.
REFERENCE_MAXLEN = {8: 1300, 16: 2000}

# Shapes per mode. Everything else (code paths, variants, checks) is shared.
_SIZES: dict[str, dict[str, Any]] = {
    "smoke": {
        "lm": {"num_layers": 2, "hidden_size": 64, "num_heads": 4},
        "max_residues": 160, "n_train": 64, "steps": 2, "batch_tokens": 1024,
        "caps_gb": [0.003, 0.005], "maxlen_hi": 1024, "maxlen_step": 16,
        "n_embed": 24, "embed_tokens": 2048,
        "fold_lm": "tiny", "fold_lengths": [24, 48, 72], "chunks": [None, 4, 16, "auto"],
        "fold_caps_gb": [0.002], "fold_hi": 512, "fold_step": 8, "precision_len": 72,
        "dtypes_fold": ["float16", "bfloat16"], "dtypes_embed": ["float16", "bfloat16"],
        "budget_s": 150,  # ~40 s measured on 2 shared cores; the rest is headroom for load
    },
    "full": {
        "lm": "esm2_t33_650M",
        "max_residues": 1022, "n_train": 2048, "steps": 4, "batch_tokens": 16384,
        "caps_gb": [8, 16], "maxlen_hi": 16384, "maxlen_step": 64,
        "n_embed": 256, "embed_tokens": 16384,
        "fold_lm": "esm2_t36_3B", "fold_lengths": [256, 512, 1000, 1500],
        "chunks": [None, 256, 128, 64, 32, "auto"],
        "fold_caps_gb": [16, 40], "fold_hi": 3072, "fold_step": 64, "precision_len": 512,
        "dtypes_fold": ["float16", "bfloat16"], "dtypes_embed": ["float16", "bfloat16"],
        "budget_s": 420,  # + at most one case past the deadline: fits 8 minutes
    },
}


# ----------------------------------------------------------------------------- infrastructure
class Budget:
    """Wall-clock budget of the whole run; sections ask before each case."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.start = seconds, time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def ok(self) -> bool:
        return self.left() > 0

    def share(self, weight: float, rest: float) -> Budget:
        """A section's budget: `weight / rest` of the time left (time saved carries over)."""
        return Budget(min(self.left(), self.left() * weight / rest))


SKIPPED = {"status": "skipped", "reason": "time budget (--budget-s) spent"}
# Share of the run's budget per section (of what is left when it starts).
SHARES = {"finetune": 0.3, "embed": 0.15, "fold": 0.4, "precision": 0.15}


def _torch() -> Any:
    import torch

    return torch


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        _torch().cuda.synchronize()


def _reset_peak(device: str) -> None:
    torch = _torch()
    gc.collect()  # dropped models/optimizers of the previous case
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _cuda_peak(device: str) -> int:
    torch = _torch()
    torch.cuda.synchronize(device)
    return int(torch.cuda.max_memory_allocated(device))


def _is_oom(exc: BaseException) -> bool:
    torch = _torch()
    return isinstance(exc, torch.cuda.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "DefaultCPUAllocator" in str(exc)
    )


class SavedBytes:
    """Bytes held for backward (CPU peak estimate): counts each saved storage once."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.total = 0

    def __enter__(self) -> SavedBytes:
        torch = _torch()

        def pack(t: Any) -> Any:
            try:
                key = t.untyped_storage().data_ptr()
                if key not in self.seen:
                    self.seen.add(key)
                    self.total += t.untyped_storage().nbytes()
            except (RuntimeError, NotImplementedError):  # e.g. tensor subclasses
                pass
            return t

        self._ctx = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def _sequences(n: int, max_residues: int, seed: int) -> tuple[list[str], str]:
    """`n` real DeepLoc sequences (cropped to `max_residues`), or random ones if no data."""
    rng = np.random.default_rng(seed)
    try:
        from protein_lm.data import read_deeploc

        rows = [r["sequence"] for r in read_deeploc("test")]
        pick = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
        seqs = [rows[i][:max_residues] for i in pick]
        return seqs, f"DeepLoc test split, {len(seqs)} sequences cropped to {max_residues}"
    except plm.ProteinLMError:
        # UniProt-like lengths: log-normal around 350 residues.
        lengths = np.clip(rng.lognormal(math.log(350), 0.6, n), 30, max_residues).astype(int)
        seqs = ["".join(rng.choice(list(AA), size=int(k))) for k in lengths]
        return seqs, f"random residues, log-normal lengths (median 350, cropped {max_residues})"


def _random_seq(length: int, seed: int) -> str:
    return "".join(np.random.default_rng(seed).choice(list(AA), size=length))


def _lm_config(shape: Any, **overrides: Any) -> Any:
    """EsmConfig of a preset name (`ESM2_PRESETS`) or a dict of tiny_config arguments."""
    from protein_lm.models import ESM2_PRESETS, tiny_config

    if isinstance(shape, str):
        p = ESM2_PRESETS[shape]
        shape = {"num_layers": p["layers"], "hidden_size": p["hidden"], "num_heads": p["heads"]}
    return tiny_config(**shape, **overrides)


def _shape_of(config: Any) -> dict[str, int]:
    return {
        "layers": config.num_hidden_layers, "hidden": config.hidden_size,
        "heads": config.num_attention_heads, "intermediate": config.intermediate_size,
    }  # fmt: skip


def _build(cls: Any, config: Any, device: str, seed: int) -> Any:
    """A seeded random model built directly on `device` (no fp32 copy on the host for CUDA)."""
    torch = _torch()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with torch.device(device):
            return cls(config)


def _find_longest(fits: Callable[[int], bool], lo: int, hi: int, step: int) -> int | None:
    """Largest L in [lo, hi] (multiple of `step`) with `fits(L)`, assuming monotone; None if none.

    Doubling from `lo`, then bisection: about log2(hi/lo) + log2(hi/step) probes.
    """
    if not fits(lo):
        return None
    good, bad = lo, None
    while bad is None and good < hi:
        probe = min(good * 2, hi)
        if fits(probe):
            good = probe
        else:
            bad = probe
    if bad is None:
        return good
    while bad - good > step:
        mid = (good + bad) // 2 // step * step
        if mid <= good:
            break
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good


# ---------------------------------------------------------------------- 1. fine-tuning
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "fp32": {"dtype": "float32"},
    "eager": {"attn": "eager"},
    "seed-batches": {"batches": "seed"},
    "checkpointing": {"checkpointing": True},
    "lora": {"lora": True},
}
BASE = {"dtype": "bfloat16", "attn": "sdpa", "batches": "budget", "checkpointing": False,
        "lora": False}  # fmt: skip


def _train_model(head: str, shape: Any, v: dict[str, Any], device: str, seed: int) -> Any:
    import transformers

    task_cls = {"sequence": "EsmForSequenceClassification", "token": "EsmForTokenClassification"}
    config = _lm_config(shape, num_labels=10 if head == "sequence" else 3)
    config._attn_implementation = v["attn"]
    model = _build(getattr(transformers, task_cls[head]), config, device, seed).train()
    if v["checkpointing"]:
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # the transformers 5.x name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if v["lora"]:  # same adapters as protein_lm's `--lora` (attention + feed-forward, rank 8)
        import peft

        task_type = peft.TaskType.SEQ_CLS if head == "sequence" else peft.TaskType.TOKEN_CLS
        lora = peft.LoraConfig(task_type=task_type, r=8, lora_alpha=16, lora_dropout=0.0,
                               target_modules=["query", "key", "value", "dense"])
        model = peft.get_peft_model(model, lora)
    return model


def _batch(seqs: list[str], head: str, device: str, seed: int) -> dict[str, Any]:
    torch = _torch()
    enc = plm.encode(seqs, return_tensors="pt")
    g = torch.Generator().manual_seed(seed)
    mask = enc["attention_mask"]
    if head == "sequence":
        labels = torch.randint(0, 10, (len(seqs),), generator=g)
    else:
        labels = torch.randint(0, 3, mask.shape, generator=g)
        labels[mask == 0] = -100
        labels[:, 0] = -100  # <cls>
        labels[torch.arange(len(seqs)), mask.sum(1) - 1] = -100  # <eos>
    return {"labels": labels.to(device), **{k: v.to(device) for k, v in enc.items()}}


class Trainer:
    """One model + AdamW; `step` runs forward, backward and an optimizer step, measuring memory."""

    def __init__(self, head: str, shape: Any, v: dict[str, Any], device: str, seed: int) -> None:
        torch = _torch()
        self.head, self.v, self.device = head, v, device
        self.model = _train_model(head, shape, v, device, seed)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=1e-5)
        n_all = sum(p.numel() for p in self.model.parameters())
        n_train = sum(p.numel() for p in params)
        # fp32 weights + grads of trainable + 2 AdamW moments of trainable (CPU estimate only)
        self.static_bytes = 4 * n_all + 4 * n_train + 8 * n_train
        self.n_params, self.n_trainable = n_all, n_train

    def step(self, seqs: list[str], seed: int) -> tuple[int, int]:
        """Returns (real residues, peak bytes: measured on CUDA, estimated on CPU)."""
        torch = _torch()
        batch = _batch(seqs, self.head, self.device, seed)
        _reset_peak(self.device)
        dtype = getattr(torch, self.v["dtype"])
        dev_type = "cuda" if self.device.startswith("cuda") else "cpu"
        with SavedBytes() as saved:
            with torch.autocast(dev_type, dtype=dtype, enabled=dtype != torch.float32):
                loss = self.model(**batch).loss
            loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if not math.isfinite(float(loss.detach())):
            raise FloatingPointError(f"non-finite training loss {float(loss.detach())}")
        peak = _cuda_peak(self.device) if dev_type == "cuda" else self.static_bytes + saved.total
        return sum(map(len, seqs)), peak


def _plan(kind: str, lengths: np.ndarray, batch_tokens: int, seed: int) -> list[list[int]]:
    from protein_lm.batching import token_budget_batches

    if kind == "seed":  # the seed tutorial: random batches of 8, padded to their longest
        order = np.random.default_rng(seed).permutation(len(lengths))
        return [order[i : i + 8].tolist() for i in range(0, len(order), 8)]
    return token_budget_batches(lengths, batch_tokens, shuffle=True, seed=seed)


def section_finetune(sz: dict, device: str, budget: Budget, seed: int) -> dict:
    seqs, source = _sequences(sz["n_train"], sz["max_residues"], seed)
    lengths = np.array([len(s) for s in seqs])
    out: dict[str, Any] = {
        "shape": _shape_of(_lm_config(sz["lm"])), "data": source,
        "steps": sz["steps"], "batch_tokens": sz["batch_tokens"],
        "baseline": BASE, "variants": {},
        "memory": "measured (torch.cuda.max_memory_allocated)" if device.startswith("cuda")
        else "estimate: weights + grads + AdamW states + bytes saved for backward",
    }  # fmt: skip
    sweep = budget.share(0.65, 1.0)  # the rest is for the longest-length search
    for head in ("sequence", "token"):
        for name, change in VARIANTS.items():
            key = f"{head}/{name}"
            if not sweep.ok():
                out["variants"][key] = SKIPPED
                continue
            v = {**BASE, **change}
            try:
                tr = Trainer(head, sz["lm"], v, device, seed)
                batches = _plan(v["batches"], lengths, sz["batch_tokens"], seed)
                tr.step([seqs[i] for i in batches[0]], seed)  # warm-up (kernels, AdamW states)
                residues, peak, start = 0, 0, time.perf_counter()
                for k, b in enumerate(batches[1 : sz["steps"] + 1]):
                    r, p = tr.step([seqs[i] for i in b], seed + k)
                    residues, peak = residues + r, max(peak, p)
                _sync(device)
                sec = time.perf_counter() - start
                out["variants"][key] = {
                    "status": "ok", **v, "residues_per_s": residues / sec, "seconds": sec,
                    "peak_gb": peak / GB, "params": tr.n_params, "trainable": tr.n_trainable,
                }  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - one failed variant must not end the run
                out["variants"][key] = _failure(exc)
            finally:
                tr = None  # noqa: F841 - free the model before the next variant
                _reset_peak(device)
    out["max_length"] = _finetune_max_length(sz, device, budget, seed)
    return out


def _finetune_max_length(sz: dict, device: str, budget: Budget, seed: int) -> dict:
    """Longest residues at batch 1 under each cap: baseline full fine-tune and LoRA (sequence)."""
    ref = {f"{k}GB": v for k, v in REFERENCE_MAXLEN.items()}
    res: dict[str, Any] = {"reference_650M_full": ref, "step_residues": sz["maxlen_step"]}
    for name in ("baseline", "lora"):
        if not budget.ok():
            res[name] = SKIPPED
            continue
        v = {**BASE, **VARIANTS[name]}
        tr = Trainer("sequence", sz["lm"], v, device, seed)
        tr.step([_random_seq(32, seed)], seed)  # AdamW states exist before any probe
        peaks: dict[int, float] = {}

        def peak_at(length: int) -> float:
            if length not in peaks:
                if not budget.ok():
                    raise TimeoutError("time budget spent during the search")
                try:
                    peaks[length] = tr.step([_random_seq(length, seed + length)], seed)[1] / GB
                except Exception as exc:  # noqa: BLE001
                    if not _is_oom(exc):
                        raise
                    peaks[length] = math.inf
                    _reset_peak(device)
            return peaks[length]

        row: dict[str, Any] = {"static_gb": tr.static_bytes / GB}
        try:
            for cap in sz["caps_gb"]:
                row[f"{cap}GB"] = _find_longest(
                    lambda n, c=cap: peak_at(n) <= c, sz["maxlen_step"], sz["maxlen_hi"],
                    sz["maxlen_step"])
            row["status"] = "ok"
            row["search_limit"] = sz["maxlen_hi"]  # a longest equal to it means ">= limit"
        except TimeoutError as exc:
            row.update(status="partial", reason=str(exc))
        row["probes"] = {str(k): round(p, 4) if p < math.inf else "out-of-memory"
                         for k, p in sorted(peaks.items())}
        res[name] = row
        tr = None
        _reset_peak(device)
    return res


# ---------------------------------------------------------------------------- 2. embedding
def _loop(model: Any, seqs: list[str]) -> np.ndarray:
    """Per-sequence forward (fair-esm `esm-extract` without batching): mean of the last layer."""
    torch = _torch()
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for s in seqs:
            enc = {k: v.to(device) for k, v in plm.encode([s], return_tensors="pt").items()}
            h = model(**enc, output_hidden_states=True).hidden_states[-1]  # (1, L + 2, D)
            out.append(h[0, 1 : len(s) + 1].float().mean(0).cpu().numpy())
    return np.stack(out)


def _padded(model: Any, seqs: list[str], size: int = 8) -> np.ndarray:
    """Plain transformers: batches of `size` in input order, padded to the longest, masked mean."""
    torch = _torch()
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for i in range(0, len(seqs), size):
            chunk = seqs[i : i + size]
            enc = {k: v.to(device) for k, v in plm.encode(chunk, return_tensors="pt").items()}
            h = model(**enc, output_hidden_states=True).hidden_states[-1].float()  # (B, T, D)
            for j, s in enumerate(chunk):
                out.append(h[j, 1 : len(s) + 1].mean(0).cpu().numpy())
    return np.stack(out)


def section_embed(sz: dict, device: str, budget: Budget, seed: int) -> dict:
    import transformers

    torch = _torch()
    seqs, source = _sequences(sz["n_embed"], min(sz["max_residues"], 1022), seed + 1)
    n_res = sum(map(len, seqs))
    config = _lm_config(sz["lm"])
    config._attn_implementation = "sdpa"
    out: dict[str, Any] = {"shape": _shape_of(config), "data": source, "residues": n_res,
                           "max_tokens": sz["embed_tokens"], "results": {}}
    base = _build(transformers.EsmForMaskedLM, config, device, seed).eval()
    for dtype in ("float32", "bfloat16"):
        model = base.to(getattr(torch, dtype))
        paths = {
            "loop": lambda: _loop(model, seqs),
            "padded8": lambda: _padded(model, seqs),
            "bulk": lambda: plm.embed(model, seqs, max_tokens=sz["embed_tokens"], num_threads=None,
                                      progress=False).mean[config.num_hidden_layers],
        }
        _loop(model, seqs[:2])  # warm-up
        best: dict[str, float] = {}
        got: dict[str, np.ndarray] = {}
        for _ in range(2):  # interleaved repeats, best kept: load bursts hit every path alike
            for name, fn in paths.items():
                if not budget.ok():
                    break
                _sync(device)
                t = time.perf_counter()
                got[name] = fn()
                _sync(device)
                best[name] = min(best.get(name, math.inf), time.perf_counter() - t)
        if len(best) < len(paths):
            out["results"][dtype] = SKIPPED
            continue
        ref = got["loop"]
        row = {name: {"seconds": t, "residues_per_s": n_res / t} for name, t in best.items()}
        row["bulk_vs_loop"] = best["loop"] / best["bulk"]
        row["bulk_vs_padded8"] = best["padded8"] / best["bulk"]
        row["max_abs_diff_vs_loop"] = float(
            max(np.abs(got[k] - ref).max() for k in ("bulk", "padded8")))
        row["finite"] = bool(all(np.isfinite(a).all() for a in got.values()))
        out["results"][dtype] = row
    return out


# ------------------------------------------------------------------------------ 3. folding
def _esmfold_module() -> Any:
    """The module holding `plm.fold` (found through the lazy API, so moves don't break this)."""
    return importlib.import_module(plm.fold.__module__)


def _fold_config(lm: Any) -> Any:
    """esmfold_v1's config (transformers' EsmFoldConfig/TrunkConfig defaults = the published
    config: 48 blocks, seq 1024, pair 128, ...) around an ESM-2 `lm` shape; `tiny`: the test model.
    """
    if lm == "tiny":
        return _esmfold_module().tiny_folding_config()
    return _lm_config(lm, is_folding_model=True,
                      esmfold_config={"fp16_esm": False, "trunk": {"chunk_size": None}})


def _fold_model(lm: Any, device: str, seed: int) -> Any:
    import transformers

    config = _fold_config(lm)
    config._attn_implementation = "eager"  # ESMFold declares no sdpa support
    model = _build(transformers.EsmForProteinFolding, config, device, seed).eval()
    # transformers zero-initialises the confidence heads' last layers, so a random model reports
    # pLDDT 50.00 everywhere and a constant PAE: a chunking bug could not move them. Seeded
    # random weights make pLDDT, PAE and pTM vary with the input, so agreement checks mean
    # something.
    torch = _torch()
    gen = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for head in (model.lddt_head, model.ptm_head, model.distogram_head):
            for layer in head.modules():
                if isinstance(layer, torch.nn.Linear):  # LayerNorms keep their defaults
                    w = torch.randn(layer.weight.shape, generator=gen) * 3 / layer.in_features**0.5
                    layer.weight.copy_(w.to(layer.weight.device, layer.weight.dtype))
    return model


class NonFiniteFold(FloatingPointError):
    """A fold the library turned into a `FoldFailure` (non-finite output): reported per case."""


class FoldRunner:
    """`Folder.run` (one attempt, no OOM fallbacks) on prepared inputs, with peak memory."""

    def __init__(self, model: Any, device: str, num_recycles: int) -> None:
        mod = _esmfold_module()
        self.mod, self.device = mod, device
        options = mod.FoldOptions(device=device, chunk_size=None, num_recycles=num_recycles,
                                  cpu_fallback=False)
        self.folder = mod.build_folder(model, options)
        trunk = self.folder.model.config.esmfold_config.trunk
        self.pair = trunk.pairwise_state_dim
        self.heads = trunk.pairwise_state_dim // trunk.pairwise_head_width
        params = self.folder.model.parameters()
        self.weight_bytes = sum(p.numel() * p.element_size() for p in params)

    def chunk_for(self, chunk: Any, length: int, free_bytes: float | None = None) -> Any:
        if chunk != "auto":
            return chunk
        if free_bytes is None:
            return self.folder.plan(length, 1, self.device)[0][1]
        from protein_lm.folding.runtime import auto_chunk_size

        return auto_chunk_size(length, int(free_bytes), pairwise_dim=self.pair,
                               pairwise_heads=self.heads)

    def fold(self, seq: str, chunk: int | None) -> tuple[Any, float, float]:
        """(FoldResult, seconds, peak GB: measured on CUDA, weights + estimate on CPU)."""
        items, bad = self.mod.prepare([plm.FastaRecord("s", seq)], max_length=None)
        assert not bad, bad  # our own random sequence: cannot be invalid
        _reset_peak(self.device)
        start = time.perf_counter()
        (res,) = self.folder.run(items, self.device, chunk)
        sec = time.perf_counter() - start
        if isinstance(res, self.mod.FoldFailure):  # the library's guard: NaN/inf never a result
            raise NonFiniteFold(res.message)
        cuda = self.device.startswith("cuda")
        return res, sec, _cuda_peak(self.device) / GB if cuda else self.estimate_gb(len(seq), chunk)

    def estimate_gb(self, length: int, chunk: int | None) -> float:
        """Weights + `runtime.estimate_peak_bytes` (the model behind `chunk_size="auto"`)."""
        from protein_lm.folding.runtime import estimate_peak_bytes

        act = estimate_peak_bytes(length, chunk, pairwise_dim=self.pair, pairwise_heads=self.heads)
        return (self.weight_bytes + act) / GB


def _finite_fold(res: Any) -> dict[str, bool]:
    return {k: bool(np.isfinite(np.asarray(getattr(res, k))).all())
            for k in ("positions", "plddt", "pae", "ptm")}


def _agreement(a: Any, b: Any) -> dict[str, float]:
    m = a.atom_mask & b.atom_mask
    return {"max_abs_dplddt": float(np.abs(a.plddt - b.plddt).max()),
            "max_coord_diff_A": float(np.linalg.norm(a.positions - b.positions, axis=-1)[m].max()),
            "max_abs_dpae": float(np.abs(a.pae - b.pae).max()),
            "abs_dptm": abs(a.ptm - b.ptm)}


def section_fold(sz: dict, device: str, budget: Budget, seed: int, lm: Any,
                 num_recycles: int) -> dict:
    model = _fold_model(lm, device, seed)
    runner = FoldRunner(model, device, num_recycles)
    cfg = runner.folder.model.config
    trunk = cfg.esmfold_config.trunk
    out: dict[str, Any] = {
        "lm_shape": lm if isinstance(lm, str) else _shape_of(cfg), "lm": _shape_of(cfg),
        "trunk": {"blocks": trunk.num_blocks, "seq_dim": trunk.sequence_state_dim,
                  "pair_dim": trunk.pairwise_state_dim,
                  "structure_module_blocks": trunk.structure_module.num_blocks},
        "lm_dtype": str(next(runner.folder.model.esm.parameters()).dtype),
        "trunk_dtype": str(next(runner.folder.model.trunk.parameters()).dtype),
        "num_recycles": num_recycles, "weights_gb": runner.weight_bytes / GB,
        "memory": "measured (torch.cuda.max_memory_allocated, weights included)"
        if device.startswith("cuda") else
        "estimate: weights + runtime.estimate_peak_bytes (CPU has no allocator peak)",
        "runs": {}, "agreement": {},
    }  # fmt: skip
    if lm != "esm2_t36_3B" and lm != "tiny":
        out["note"] = f"--lm-shape {lm} stands in for esmfold_v1's 3B language model"
    try:
        runner.fold(_random_seq(16, seed), None)  # warm-up
    except Exception as exc:  # noqa: BLE001 - a non-finite warm-up is a finding, not a crash
        out["warmup"] = _failure(exc)
    sweep = budget.share(0.6, 1.0)  # the rest is for the longest-length search
    for length in sz["fold_lengths"]:
        seq = _random_seq(length, seed + length)
        ref = None
        for chunk in sz["chunks"]:
            key = f"L{length}/chunk-{chunk}"
            if not sweep.ok():
                out["runs"][key] = SKIPPED
                continue
            used = runner.chunk_for(chunk, length)
            if isinstance(chunk, int) and chunk >= length:
                out["runs"][key] = {"status": "same as unchunked (chunk >= L)"}
                continue
            try:
                res, sec, peak = runner.fold(seq, used)
            except Exception as exc:  # noqa: BLE001 - OOM (and anything else) is a finding
                out["runs"][key] = _failure(exc)
                _reset_peak(device)
                continue
            out["runs"][key] = {"status": "ok", "chunk_used": used, "seconds": sec,
                                "peak_gb": peak, "estimate_gb": runner.estimate_gb(length, used),
                                "finite": _finite_fold(res),
                                "plddt_std": float(np.std(res.plddt)),
                                "pae_std": float(np.std(res.pae))}
            if chunk is None:
                ref = res
            elif ref is not None:
                out["agreement"][key] = _agreement(ref, res)
    out["max_length"] = _fold_max_length(sz, runner, budget, seed)
    return out


def _fold_max_length(sz: dict, runner: FoldRunner, budget: Budget, seed: int) -> dict:
    """Longest L folding under each cap, with the chunk "auto" would pick on a device that size."""
    res: dict[str, Any] = {"chunk": "auto, sized for the cap minus the weights",
                           "step_residues": sz["fold_step"]}
    for cap in sz["fold_caps_gb"]:
        if not budget.ok():
            res[f"{cap}GB"] = SKIPPED
            continue
        probes: dict[int, Any] = {}
        timed: list[tuple[int, float]] = []  # (L, seconds) of folds run in this search

        def fits(length: int, cap: float = cap) -> bool:
            if not budget.ok():
                raise TimeoutError("time budget spent during the search")
            if timed:  # the trunk is ~cubic in L: a probe predicted past the budget is not begun
                last_len, last_s = max(timed)
                guess = last_s * (length / last_len) ** 3
                if length > last_len and guess > budget.left():
                    raise TimeoutError(f"L={length} would take ~{guess:.0f} s, past the budget")
            chunk = runner.chunk_for("auto", length, cap * GB - runner.weight_bytes)
            est = runner.estimate_gb(length, chunk)
            if est > 1.5 * cap:  # hopeless (the pair tensors alone overflow): a long, slow fold
                probes[length] = {"chunk": chunk, "peak_gb": "not run", "estimate_gb": est}
                return False
            try:
                _, sec, peak = runner.fold(_random_seq(length, seed + length), chunk)
                timed.append((length, sec))
            except NonFiniteFold as exc:
                probes[length] = {"chunk": chunk, "status": "non-finite", "error": str(exc)[:300]}
                return False
            except Exception as exc:  # noqa: BLE001
                if not _is_oom(exc):
                    raise
                peak = math.inf
                _reset_peak(runner.device)
            probes[length] = {"chunk": chunk, "peak_gb": round(peak, 4) if peak < math.inf
                              else "out-of-memory", "estimate_gb": round(est, 4)}
            return peak <= cap

        try:
            longest = _find_longest(fits, sz["fold_step"], sz["fold_hi"], sz["fold_step"])
            res[f"{cap}GB"] = {"status": "ok", "longest": longest, "search_limit": sz["fold_hi"],
                               "probes": probes}
        except TimeoutError as exc:
            res[f"{cap}GB"] = {"status": "partial", "reason": str(exc), "probes": probes}
    return res


# ----------------------------------------------------------------------------- 4. precision
def section_precision(sz: dict, device: str, budget: Budget, seed: int, lm: Any,
                      num_recycles: int) -> dict:
    import transformers

    torch = _torch()
    out: dict[str, Any] = {"embed": {}, "fold": {}}
    config = _lm_config(sz["lm"])
    config._attn_implementation = "sdpa"
    seqs, _ = _sequences(8, min(sz["max_residues"], 1022), seed + 2)
    model = _build(transformers.EsmForMaskedLM, config, device, seed).eval()
    n = config.num_hidden_layers
    for dtype in ["float32", *sz["dtypes_embed"]]:
        if not budget.ok():
            out["embed"][dtype] = SKIPPED
            continue
        model = model.to(getattr(torch, dtype))
        try:
            emb = plm.embed(model, seqs, layers=list(range(n + 1)), progress=False)
            bad = [k for k in sorted(emb.mean) if not np.isfinite(emb.mean[k]).all()]
            out["embed"][dtype] = {"status": "ok", "finite": not bad,
                                   "first_nonfinite_layer": bad[0] if bad else None}
        except Exception as exc:  # noqa: BLE001
            out["embed"][dtype] = _failure(exc)
    model = None
    fold_model = _fold_model(lm, device, seed)
    runner = FoldRunner(fold_model, device, num_recycles)
    default_lm = str(next(runner.folder.model.esm.parameters()).dtype).removeprefix("torch.")
    seq = _random_seq(sz["precision_len"], seed)
    # "lm": only the language model in that dtype (the library's policy: fp16 LM on CUDA);
    # "all": the trunk and structure module too (not a supported mode: where does it overflow?).
    cases = [("float32", "lm"), *[(d, w) for d in sz["dtypes_fold"] for w in ("lm", "all")]]
    for dtype, where in cases:
        key = f"{dtype}/{where}"
        if not budget.ok():
            out["fold"][key] = SKIPPED
            continue
        m = runner.folder.model
        m.to(torch.float32)
        (m.esm if where == "lm" else m).to(getattr(torch, dtype))
        try:
            res = runner.fold(seq, runner.chunk_for("auto", len(seq)))[0]
            fin = _finite_fold(res)
            out["fold"][key] = {"status": "ok", "finite": fin,
                                "nonfinite": [k for k, ok in fin.items() if not ok]}
        except Exception as exc:  # noqa: BLE001
            out["fold"][key] = _failure(exc)
    m = runner.folder.model
    m.to(torch.float32)
    m.esm.to(getattr(torch, default_lm))
    return out


# ------------------------------------------------------------------------------ reporting
def _failure(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, NonFiniteFold):  # a result of the case, not a crash of the suite
        return {"status": "non-finite", "error": str(exc).splitlines()[0][:300],
                "nonfinite": ["fold output"]}
    kind = "out-of-memory" if _is_oom(exc) else "error"
    return {"status": kind, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}",
            **({} if kind == "out-of-memory" else {"traceback": traceback.format_exc()[-1500:]})}


# Tolerance of chunked vs unchunked folds (same weights, same input). The trunk's chunk size
# only splits triangular attention over rows (transformers' `chunk_layer`); each row is computed
# by the same ops either way, so on CPU the results are bit-identical (measured: 0.0 for all
# three metrics at every L and chunk in the smoke run). On GPU, a different number of rows per
# call may pick a different GEMM/softmax kernel, i.e. float32 rounding (~1e-6 relative) that the
# 48 blocks and 8 structure-module blocks can amplify. The bounds stay far below anything
# visible (0.1 pLDDT point, 0.05 A, 0.001 pTM), while a real chunking bug (wrong mask, dropped
# or duplicated rows) moves these by whole units.
TOL = {"max_abs_dplddt": 0.1, "max_coord_diff_A": 0.05, "max_abs_dpae": 0.05, "abs_dptm": 1e-3}


def check_invariants(report: dict, device: str) -> list[str]:
    fails: list[str] = []
    fold = report["sections"].get("fold", {})
    for key, agr in fold.get("agreement", {}).items():
        for metric, tol in TOL.items():
            if agr[metric] > tol:
                fails.append(f"fold {key}: {metric} {agr[metric]:.3g} > {tol}")
    for key, run in fold.get("runs", {}).items():
        if run.get("status") == "ok" and not all(run["finite"].values()):
            fails.append(f"fold {key}: non-finite output {run['finite']}")
        if run.get("status") in ("error", "non-finite"):  # float32 folds: never non-finite
            fails.append(f"fold {key}: {run['status']}: {run['error']}")
    ft = report["sections"].get("finetune", {})
    for key, v in ft.get("variants", {}).items():
        if v.get("status") == "error":
            fails.append(f"finetune {key}: {v['error']}")
    # Bulk embed vs loop. On GPU the bulk path batches many sequences per forward: >= 3x is the
    # goal of the issue and asserted. On CPU ("exact" batching, only identical lengths share a
    # forward) with a tiny model there is almost nothing to batch, so the honest claim is "no
    # slower than the loop"; 0.8x allows for timing noise on a loaded shared machine.
    # In fp32 on GPU both paths are compute-bound (no TF32: ~60 TFLOP/s on H200), so batching
    # can save little there; the 3x is asserted for bf16 (the dtype to embed with on GPU), where
    # the per-sequence loop is bound by kernel launches (33 layers x ~15 kernels per sequence).
    # The smoke run (tiny shapes, run by the tests on a shared machine) only reports the ratio:
    # a timing ratio is a benchmark's result, never a test's pass/fail.
    cuda = device.startswith("cuda")
    emb = report["sections"].get("embed", {})
    for dtype, row in emb.get("results", {}).items():
        if row.get("status") == "skipped":
            continue
        need = 3.0 if cuda and dtype == "bfloat16" else 0.8
        if report.get("mode") != "smoke" and row["bulk_vs_loop"] < need:
            fails.append(f"embed {dtype}: bulk/loop {row['bulk_vs_loop']:.2f}x < {need}x")
        if not row["finite"]:
            fails.append(f"embed {dtype}: non-finite embeddings")
        # fp32: rounding only (padding/masking bugs show as >= 1e-2); half: a sanity bound, as
        # bf16 rounding through 33 layers differs between batch shapes by a few 1e-2.
        tol = (1e-3 if cuda else 1e-4) if dtype == "float32" else 0.25
        if row["max_abs_diff_vs_loop"] > tol:
            fails.append(f"embed {dtype}: differs from the loop by {row['max_abs_diff_vs_loop']}")
    prec = report["sections"].get("precision", {})
    # Asserted finite: fp32; bf16 embeddings (fp32's exponent range); and folds with only the
    # LM in half precision (fp16 LM is the library's CUDA policy). Reported only: fp16 embeddings
    # and whole-model half folds (not a supported mode; the question is where they overflow).
    embed_keys = {f"embed/{k}": v for k, v in prec.get("embed", {}).items()}
    fold_keys = {f"fold/{k}": v for k, v in prec.get("fold", {}).items()}
    for key, row in {**embed_keys, **fold_keys}.items():
        asserted = ("float32" in key or key.startswith("embed/bfloat16")
                    or key.startswith("fold/") and key.endswith("/lm"))
        if asserted and row.get("status") == "ok" and (
                row.get("nonfinite") or row.get("finite") is False):
            fails.append(f"precision {key}: non-finite outputs")
        if asserted and row.get("status") in ("error", "non-finite"):
            fails.append(f"precision {key}: {row['status']}: {row['error']}")
    for name, sec in report["sections"].items():
        if sec.get("status") == "error":
            fails.append(f"section {name}: {sec['error']}")
    return fails


def _null_nonfinite(node: Any, path: str = "") -> list[str]:
    """Replace NaN/inf floats in the report by None, in place; the paths where that happened
    (so one NaN measurement is flagged instead of making json.dumps lose the whole report)."""
    found: list[str] = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(
        node, list) else ()
    for key, value in list(items):
        where = f"{path}/{key}"
        if isinstance(value, float) and not math.isfinite(value):
            node[key] = None
            found.append(where)
        elif isinstance(value, (dict, list)):
            found += _null_nonfinite(value, where)
    return found


def _count_skipped(node: Any) -> int:
    if isinstance(node, dict):
        own = int(node.get("status") == "skipped")
        return own + sum(_count_skipped(v) for v in node.values())
    return 0


def _fmt(x: Any, spec: str = ".3g") -> str:
    return "-" if x is None else format(x, spec) if isinstance(x, (int, float)) else str(x)


def print_table(report: dict) -> None:
    s = report["sections"]
    print(f"\nscale suite: device {report['device']}, mode {report['mode']}, weights random "
          f"(seed {report['seed']}), {report['seconds']:.0f} s")
    ft = s.get("finetune", {})
    if "variants" in ft:
        print(f"\n[finetune] shape {ft['shape']}; peak memory {ft['memory']}")
        print(f"{'head/variant':<26}{'residues/s':>11}{'peak GB':>10}")
        for k, v in ft["variants"].items():
            print(f"{k:<26}{_fmt(v.get('residues_per_s'), '.0f'):>11}"
                  f"{_fmt(v.get('peak_gb'), '.4g'):>10}  {v['status']}")
        ml = ft["max_length"]
        for name in ("baseline", "lora"):
            row = ml.get(name, {})
            caps = ", ".join(f"{k}: {_fmt(row.get(k))}" for k in row if k.endswith("GB"))
            print(f"longest L at batch 1 ({name}): {caps}  [{row.get('status')}; weights, grads "
                  f"and AdamW states alone {_fmt(row.get('static_gb'), '.3g')} GB]")
        print(f"published reference (650M full fine-tune): {ml['reference_650M_full']}")
    em = s.get("embed", {})
    if "results" in em:
        print(f"\n[embed] shape {em['shape']}, {em['residues']} residues")
        for dt_, row in em["results"].items():
            if row.get("status") == "skipped":
                print(f"{dt_}: skipped")
                continue
            rate = {k: f"{row[k]['residues_per_s']:.0f}" for k in ("loop", "padded8", "bulk")}
            print(f"{dt_:<9} res/s loop {rate['loop']}, padded8 {rate['padded8']}, bulk "
                  f"{rate['bulk']}  bulk/loop {row['bulk_vs_loop']:.2f}x  bulk/padded8 "
                  f"{row['bulk_vs_padded8']:.2f}x  max|diff| {row['max_abs_diff_vs_loop']:.1e}")
    fo = s.get("fold", {})
    if "runs" in fo:
        print(f"\n[fold] LM {fo['lm']} ({fo['lm_dtype']}), trunk {fo['trunk']}; "
              f"peak {fo['memory']}")
        print(f"{'L/chunk':<22}{'used':>6}{'seconds':>9}{'peak GB':>10}")
        for k, r in fo["runs"].items():
            print(f"{k:<22}{_fmt(r.get('chunk_used')):>6}{_fmt(r.get('seconds'), '.3g'):>9}"
                  f"{_fmt(r.get('peak_gb'), '.4g'):>10}  {r['status']}")
        if fo["agreement"]:
            worst = {m: max(a[m] for a in fo["agreement"].values()) for m in TOL}
            print(f"chunked vs unchunked, worst: " +
                  ", ".join(f"{m} {v:.2e} (tol {TOL[m]})" for m, v in worst.items()))
        for k, v in fo["max_length"].items():
            if k.endswith("GB"):
                print(f"longest L folding under {k}: {_fmt(v.get('longest'))} [{v['status']}]")
    pr = s.get("precision", {})
    if "embed" in pr:

        def state(v: dict) -> str:
            if v.get("status") != "ok":
                return v.get("status", "?")
            if "nonfinite" in v:
                return "NON-FINITE " + ",".join(v["nonfinite"]) if v["nonfinite"] else "finite"
            layer = v["first_nonfinite_layer"]
            return "finite" if v["finite"] else f"NON-FINITE from layer {layer}"

        for part in ("embed", "fold"):
            states = "; ".join(f"{k} {state(v)}" for k, v in pr[part].items())
            print(f"[precision] {part}: {states}")
    for sec, v in s.items():
        print(f"section {sec}: {v.get('status', 'ok')} in {_fmt(v.get('seconds'), '.1f')} s")
    print(f"cases skipped for the time budget: {report['skipped_cases']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on CPU (< 2 minutes)")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--budget-s", type=float, default=None,
                    help="whole-run time budget; later cases are skipped (default 150 smoke, 420)")
    ap.add_argument("--memory-gb", type=float, nargs="+", default=None,
                    help="caps for the longest fine-tuning length (default 8 16)")
    ap.add_argument("--fold-memory-gb", type=float, nargs="+", default=None,
                    help="caps for the longest folding length (default 16 40)")
    ap.add_argument("--lm-shape", default=None,
                    help="ESM2_PRESETS key standing in for ESMFold's 3B LM (default esm2_t36_3B)")
    ap.add_argument("--num-recycles", type=int, default=0,
                    help="ESMFold recycles (default 0: one trunk pass; time scales ~ with 1 + n)")
    ap.add_argument("--sections", nargs="+", default=["finetune", "embed", "fold", "precision"])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (smoke default 1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    torch = _torch()
    mode = "smoke" if args.smoke else "full"
    sz = dict(_SIZES[mode])
    device = args.device or ("cpu" if args.smoke else
                             "cuda" if torch.cuda.is_available() else "cpu")
    sz["caps_gb"] = args.memory_gb or sz["caps_gb"]
    sz["fold_caps_gb"] = args.fold_memory_gb or sz["fold_caps_gb"]
    lm = args.lm_shape or sz["fold_lm"]
    threads = args.threads or (1 if args.smoke else 0)
    if threads:  # 1 on the shared CPU: oversubscribed intra-op threads stall each other
        torch.set_num_threads(threads)
    budget = Budget(args.budget_s or sz["budget_s"])
    date = dt.date.today().isoformat()
    name = f"scale-{device.split(':')[0]}-{date}.json"
    out_path = args.out or ROOT / "benchmarks" / "results" / name
    report: dict[str, Any] = {
        "mode": mode, "device": device, "seed": args.seed, "date": date,
        "weights": f"random, seeded ({args.seed}); built from configs, no checkpoints",
        "host": {"python": platform.python_version(), "torch": torch.__version__,
                 "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                 "gpu": torch.cuda.get_device_name(device) if device.startswith("cuda") else None},
        "budget_s": budget.seconds, "sizes": sz, "sections": {},
    }  # fmt: skip
    runners = {
        "finetune": lambda b: section_finetune(sz, device, b, args.seed),
        "embed": lambda b: section_embed(sz, device, b, args.seed),
        "fold": lambda b: section_fold(sz, device, b, args.seed, lm, args.num_recycles),
        "precision": lambda b: section_precision(sz, device, b, args.seed, lm, args.num_recycles),
    }
    for k, name in enumerate(args.sections):
        if not budget.ok():
            report["sections"][name] = dict(SKIPPED)
            continue
        rest = sum(SHARES[n] for n in args.sections[k:])
        section_budget = budget.share(SHARES[name], rest)
        start = time.perf_counter()
        try:
            sec = runners[name](section_budget)
        except Exception as exc:  # noqa: BLE001 - report it, keep the other sections
            sec = _failure(exc)
        sec["seconds"] = time.perf_counter() - start
        report["sections"][name] = sec
        _reset_peak(device)
    report["seconds"] = time.perf_counter() - budget.start
    report["skipped_cases"] = _count_skipped(report["sections"])
    report["failures"] = check_invariants(report, device)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    report["nonfinite_values"] = _null_nonfinite(report)  # JSON has no NaN: null + where
    out_path.write_text(json.dumps(report, indent=1, default=str, allow_nan=False))
    print_table(report)
    print(f"\nreport: {out_path}")
    for f in report["failures"]:
        print(f"INVARIANT FAILED: {f}", file=sys.stderr)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
