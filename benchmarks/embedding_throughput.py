"""Residues/s of `protein_lm.embeddings.embed` vs a plain per-sequence loop, same model.

The loop is the fair-esm `esm-extract` pattern without its batching: one sequence at a time,
`torch.no_grad()`, the full masked-LM forward with all hidden states, then the mean over
residues. The bulk path is `embed(..., strategy=S)` for each strategy, plus "auto" (what users
get: "exact" on CPU, "padded" on CUDA). Sequences are real DeepLoc proteins (<= 1,022 residues).
Both sides embed the same sequences with the same model, in the same process, and the embeddings
are checked to agree (<= 1e-4) before any time is reported.

    python benchmarks/embedding_throughput.py            # tiny and 35M-sized configs, CPU/GPU
    python benchmarks/embedding_throughput.py --n 64 --sizes tiny --device cuda --dtype float16
"""

from __future__ import annotations

import argparse
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

    from protein_lm.embeddings import embed
    from protein_lm.models import load_model, resolve_device

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=48, help="number of sequences (default 48)")
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
    sizes = {"tiny": {}, "35M": {"num_layers": 12, "hidden_size": 480, "num_heads": 20}}
    print(f"device={device} dtype={args.dtype} threads={torch.get_num_threads()} "
          f"sequences={len(seqs)} residues={n_res} max_tokens={max_tokens}")
    print(f"{'config':<6} {'path':<14} {'seconds':>8} {'res/s':>9} {'vs loop':>8}")
    for size in args.sizes:
        over = sizes[size]
        model = load_model("tiny", device=device, dtype=dtype, config_overrides={
            k2: v for k, v in over.items() for k2 in [
                {"num_layers": "num_hidden_layers", "hidden_size": "hidden_size",
                 "num_heads": "num_attention_heads"}[k]]} | (
            {"intermediate_size": 4 * over["hidden_size"]} if over else {})).eval()
        _loop(model, seqs[:2])  # warm-up (kernels, allocator)
        ref, t_loop = _timed(_loop, model, seqs)
        print(f"{size:<6} {'loop':<14} {t_loop:8.2f} {n_res / t_loop:9.0f} {1.0:7.2f}x")
        for strategy in ("auto", "exact", "padded"):
            emb, t = _timed(lambda s=strategy: embed(model, seqs, max_tokens=max_tokens,
                                                     strategy=s, progress=False))
            got = emb.mean[model.config.num_hidden_layers]
            tol = 1e-4 if args.dtype == "float32" else 5e-2
            if not np.allclose(got, ref, atol=tol, rtol=tol):
                raise SystemExit(f"{strategy}: embeddings differ from the loop by "
                                 f"{np.abs(got - ref).max():.2e}")
            print(f"{size:<6} {'embed:' + strategy:<14} {t:8.2f} {n_res / t:9.0f} "
                  f"{t_loop / t:7.2f}x")


if __name__ == "__main__":
    main()
