"""Residues/s of `protein_lm.embeddings.embed` vs a plain per-sequence loop, same model.

The loop is the fair-esm `esm-extract` pattern without its batching: one sequence at a time,
`torch.no_grad()`, the full masked-LM forward with all hidden states, then the mean over
residues. The bulk path is `embed(..., strategy=S)` for each strategy, plus "auto" (what users
get: "exact" on CPU, "padded" on CUDA). Sequences are real DeepLoc proteins (<= 1,022 residues).
Both sides embed the same sequences with the same model, in the same process, and the embeddings
are checked to agree (<= 1e-4) before any time is reported.

    python benchmarks/embedding_throughput.py            # tiny and 35M-sized configs, CPU/GPU
    python benchmarks/embedding_throughput.py --n 256 --device cuda --dtype float16   # GPU
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _sequences(n: int, seed: int) -> list[str]:
    from protein_lm.data import read_deeploc

    rows = [r["sequence"] for r in read_deeploc("test") if len(r["sequence"]) <= 1022]
    rng = np.random.default_rng(seed)
    return [rows[i] for i in rng.choice(len(rows), size=min(n, len(rows)), replace=False)]


def _loop(model, seqs: list[str]) -> np.ndarray:
    import torch

    from protein_lm.tokenization import encode

    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for s in seqs:
            enc = {k: v.to(device) for k, v in encode([s], return_tensors="pt").items()}
            h = model(**enc, output_hidden_states=True).hidden_states[-1]
            out.append(h[0, 1 : len(s) + 1].float().mean(0).cpu().numpy())
    return np.stack(out)


def _timed(fn, *args):
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    res = fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return res, time.perf_counter() - t


def main() -> None:
    import torch

    from protein_lm.embeddings import _threads, embed
    from protein_lm.models import load_model, resolve_device

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=32, help="number of sequences (default 32)")
    p.add_argument("--repeats", type=int, default=3, help="timings per path; the best is shown")
    p.add_argument("--sizes", nargs="+", default=["tiny", "35M"], choices=["tiny", "35M"])
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    p.add_argument("--max-tokens", type=int, default=None,
                   help="token budget (default 4096 on CPU, 16384 on CUDA)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    device = resolve_device(args.device)
    dtype = getattr(torch, args.dtype)
    max_tokens = args.max_tokens or (16384 if device.startswith("cuda") else 4096)
    seqs = _sequences(args.n, args.seed)
    n_res = sum(map(len, seqs))
    default_threads = torch.get_num_threads()
    sizes = {"tiny": {}, "35M": {"num_hidden_layers": 12, "hidden_size": 480,
                                 "num_attention_heads": 20, "intermediate_size": 1920}}
    print(f"device={device} dtype={args.dtype} torch threads={default_threads} "
          f"load={os.getloadavg()[0]:.1f} cores={os.cpu_count()} sequences={len(seqs)} "
          f"residues={n_res} max_tokens={max_tokens} repeats={args.repeats} (best shown)")
    print("vs loop: against the naive loop at torch's default threads; vs loop@same: against the "
          "loop run with the thread count embed() chose (the batching strategy alone)")
    print(f"{'config':<6} {'path':<34} {'seconds':>8} {'res/s':>9} {'vs loop':>8} "
          f"{'vs loop@same':>8}")
    tol = 1e-4 if args.dtype == "float32" else 5e-2
    for size in args.sizes:
        model = load_model("tiny", device=device, dtype=dtype,
                           config_overrides=sizes[size]).eval()
        auto_threads = _threads(default_threads, "auto") or default_threads
        if device != "cpu":
            auto_threads = default_threads
        naive, same = f"loop ({default_threads} threads)", f"loop ({auto_threads} threads)"
        paths = {naive: lambda: _loop(model, seqs)}
        if same != naive:  # the loop with the thread count embed() picked: isolates batching
            paths[same] = lambda: _with_threads(auto_threads, _loop, model, seqs)
        paths["embed auto (what users get)"] = lambda: embed(
            model, seqs, max_tokens=max_tokens, progress=False)
        other = "padded" if device == "cpu" else "exact"
        paths[f"embed {other} ({auto_threads} threads)"] = lambda: embed(
            model, seqs, max_tokens=max_tokens, strategy=other, num_threads=auto_threads,
            progress=False)
        _loop(model, seqs[:2])  # warm-up (kernels, allocator)
        best: dict[str, float] = {}
        ref = None
        for _ in range(args.repeats):  # interleaved, so load changes hit every path alike
            for name, fn in paths.items():
                res, t = _timed(fn)
                got = res if isinstance(res, np.ndarray) else res.mean[model.config.num_hidden_layers]
                ref = got if ref is None else ref
                if not np.allclose(got, ref, atol=tol, rtol=tol):
                    raise SystemExit(f"{name}: embeddings differ from the loop by "
                                     f"{np.abs(got - ref).max():.2e}")
                best[name] = min(best.get(name, np.inf), t)
        t_naive, t_same = best[naive], best[same]
        for name, t in best.items():
            print(f"{size:<6} {name:<34} {t:8.2f} {n_res / t:9.0f} {t_naive / t:7.2f}x "
                  f"{t_same / t:7.2f}x")


def _with_threads(n: int, fn, *args):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(before)


if __name__ == "__main__":
    main()
