"""Peak memory of an ESMFold fold at increasing lengths, unchunked vs chunked trunk, as ratios.

    python benchmarks/folding_memory.py                       # CPU: tiny and full-width configs
    python benchmarks/folding_memory.py --configs esmfold_v1 --device cuda --lengths 256 512 1024

Configs (random weights; memory does not depend on the weights):
  tiny        the offline test model (pair dim 16, 2 heads, 1 trunk block)
  full-width  esmfold_v1's trunk and structure-module widths (pair dim 128, 4 heads), but one
              trunk block and a tiny language model: the activation peak of inference is one
              block's, so this is the real trunk's peak without the 3.5B weights
  esmfold_v1  the full architecture (36 x 2560 ESM-2, 48 blocks): GPU only (14 GB of weights)

CPU: every (config, chunk, length) runs in a fresh subprocess; peak = growth of the max RSS over
the RSS after a 16-residue warm-up fold. CUDA: `torch.cuda.max_memory_allocated` over the weights.
Also printed: `estimate_peak_bytes`, the estimate behind `chunk_size="auto"`, for comparison.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

SEQ = (
    "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEKAVQVKVKALPDAQFEVVHSLAKWKRQTLGQHDFSAGEG"
    "LYTHM"
)


def _config(name: str):
    from protein_lm.folding.esmfold import tiny_folding_config
    from protein_lm.models import tiny_config

    if name == "tiny":
        return tiny_folding_config()
    if (
        name == "full-width"
    ):  # trunk/structure-module defaults of transformers = esmfold_v1's widths
        return tiny_folding_config(
            esmfold_config={
                "lddt_head_hid_dim": 128,
                "trunk": {
                    "num_blocks": 1,
                    "sequence_state_dim": 1024,
                    "pairwise_state_dim": 128,
                    "sequence_head_width": 32,
                    "pairwise_head_width": 32,
                    "max_recycles": 1,
                    "structure_module": {
                        "sequence_dim": 384,
                        "pairwise_dim": 128,
                        "ipa_dim": 16,
                        "resnet_dim": 128,
                        "num_heads_ipa": 12,
                        "num_qk_points": 4,
                        "num_v_points": 8,
                        "num_blocks": 8,
                    },
                },
            }
        )
    if name == "esmfold_v1":
        return tiny_config(
            num_layers=36,
            hidden_size=2560,
            num_heads=40,
            is_folding_model=True,
            esmfold_config={"fp16_esm": True, "trunk": {"max_recycles": 1}},
        )
    raise SystemExit(f"unknown config {name!r}")


def _worker(config: str, chunk: int | None, length: int, device: str) -> dict:
    import psutil
    import torch
    from transformers import EsmForProteinFolding

    from protein_lm.folding.esmfold import fold
    from protein_lm.folding.runtime import place

    cfg = _config(config)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = place(EsmForProteinFolding(cfg), device)
    seq = (SEQ * (length // len(SEQ) + 1))[:length]
    fold(SEQ[:16], model, chunk_size=chunk)  # warm-up: allocator and lazy buffers
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        base = psutil.Process().memory_info().rss
    start = time.perf_counter()
    fold(seq, model, chunk_size=chunk, max_length=None)
    seconds = time.perf_counter() - start
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base  # Linux: KiB
    trunk = cfg.esmfold_config.trunk
    return {
        "peak": peak,
        "seconds": seconds,
        "pair": trunk.pairwise_state_dim,
        "heads": trunk.pairwise_state_dim // trunk.pairwise_head_width,
    }


def _measure(config: str, chunk: int | None, length: int, device: str) -> dict:
    if device.startswith("cuda"):  # in-process: CUDA peak counters reset cleanly
        return _worker(config, chunk, length, device)
    cmd = [sys.executable, __file__, "--worker", config, str(chunk or 0), str(length), device]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"worker {config} chunk={chunk} L={length} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tiny", "full-width"])
    parser.add_argument("--lengths", nargs="+", type=int, default=[128, 256, 384])
    parser.add_argument("--chunk", type=int, default=32, help="chunk size compared with unchunked")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        config, chunk, length, device = args.worker
        print(json.dumps(_worker(config, int(chunk) or None, int(length), device)))
        return
    from protein_lm.folding.runtime import estimate_peak_bytes

    mib = 2**20
    print(f"device {args.device}; peak activation memory (MiB), unchunked vs chunk {args.chunk}")
    print(
        f"{'config':<11} {'L':>5} {'unchunked':>10} {'chunked':>9} {'ratio':>6} {'est.unch.':>10} "
        f"{'est.chunk':>10} {'s unch.':>8} {'s chunk':>8}"
    )
    for config in args.configs:
        for length in args.lengths:
            full = _measure(config, None, length, args.device)
            part = _measure(config, args.chunk, length, args.device)
            kw = {"pairwise_dim": full["pair"], "pairwise_heads": full["heads"]}
            est_full = estimate_peak_bytes(length, None, **kw) / mib
            est_part = estimate_peak_bytes(length, args.chunk, **kw) / mib
            print(
                f"{config:<11} {length:>5} {full['peak'] / mib:>10.0f} {part['peak'] / mib:>9.0f} "
                f"{full['peak'] / max(part['peak'], 1):>6.1f} {est_full:>10.0f} {est_part:>10.0f} "
                f"{full['seconds']:>8.2f} {part['seconds']:>8.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
