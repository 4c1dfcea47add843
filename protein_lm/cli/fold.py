"""`protein-lm fold`: bulk, resumable ESMFold structure prediction."""

from __future__ import annotations

import argparse
from pathlib import Path

from protein_lm.cli.common import add_common_options

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fold", help="predict structures with ESMFold (bulk, resumable)")
    p.add_argument("input", type=Path, help="FASTA; 'A:B' in a sequence line folds a multimer")
    p.add_argument("-o", "--output-dir", required=True, type=Path)
    p.add_argument("--model", default="facebook/esmfold_v1", help="hub id, local dir, or 'tiny'")
    p.add_argument("--chunk-size", default="auto",
                   help="trunk chunk size: an int, 'auto' (from length and free memory) or 'none'")
    p.add_argument("--format", choices=("pdb", "cif"), default="pdb")
    p.add_argument("--max-tokens", type=int, default=1024,
                   help="residues per batch, padding included (default 1024; longer ones fold alone)")
    p.add_argument("--num-recycles", type=int, default=None, help="default: the model's (4 for esmfold_v1)")
    p.add_argument("--max-length", type=int, default=1024,
                   help="longest record (residues + linkers) to fold; 0 = no limit (default 1024)")
    p.add_argument("--shard", default=None,
                   help="fold only shard i of n ('i/n'); default: RANK/WORLD_SIZE under torchrun, else 0/1")
    p.add_argument("--no-cpu-fallback", action="store_true", help="do not retry out-of-memory records on CPU")
    add_common_options(p)  # --device, --no-progress, --quiet, --verbose


def run(args: argparse.Namespace) -> int:
    """Fold; exit 1 if a record failed (each logged at WARNING, then a line with the count)."""
    from protein_lm.folding.bulk import fold_fasta, parse_shard, shard_from_env

    chunk = args.chunk_size
    if chunk not in ("auto", "none"):
        try:
            chunk = int(chunk)
        except ValueError:
            raise ValueError(f"--chunk-size must be an int, 'auto' or 'none', got {chunk!r}") from None
        if chunk <= 0:
            raise ValueError(f"--chunk-size must be > 0, got {chunk}")
    report = fold_fasta(
        args.input, args.output_dir, args.model, fmt=args.format,
        shard=parse_shard(args.shard) if args.shard else shard_from_env(), device=args.device,
        chunk_size=None if chunk == "none" else chunk, max_tokens=args.max_tokens,
        num_recycles=args.num_recycles, max_length=args.max_length or None,
        cpu_fallback=not args.no_cpu_fallback, progress=not args.no_progress,
    )  # fmt: skip
    print(f"folded {report.folded}, skipped {report.skipped} (already done), failed {report.failed}; "
          f"summary: {report.summary}")
    return 1 if report.failed else 0
