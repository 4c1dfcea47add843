"""`protein-lm fold`: bulk, resumable ESMFold structure prediction."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from protein_lm.cli.common import add_common_options, non_negative_int, positive_int
from protein_lm.limits import FOLD_BATCH_RESIDUES, FOLD_MAX_RESIDUES

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fold", help="predict structures with ESMFold (bulk, resumable)",
        description="Fold every record of a FASTA into OUTDIR (one structure file per record, "
        "summary.csv). Resumable: a rerun skips finished records. Parallel: under `torchrun "
        "--nproc-per-node N -m protein_lm.cli fold ...` each process folds its share of the "
        "records (balanced by length; on cuda:LOCAL_RANK, or the CPU) and rank 0 writes "
        "summary.csv and prints the totals. "
        "Independent jobs (a Slurm array): `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT` "
        "in each job, then one run without --shard (folds only what is missing, rewrites "
        "summary.csv).")  # fmt: skip
    p.add_argument("input", type=Path, help="FASTA; 'A:B' in a sequence line folds a multimer")
    p.add_argument("-o", "--output-dir", required=True, type=Path)
    p.add_argument("--model", default="facebook/esmfold_v1", help="hub id, local dir, or 'tiny'")
    p.add_argument(
        "--chunk-size",
        default="auto",
        help="trunk chunk size: an int, 'auto' (from length and free memory) or 'none'",
    )
    p.add_argument("--format", choices=("pdb", "cif"), default="pdb")
    p.add_argument(
        "--max-tokens",
        type=positive_int,
        default=FOLD_BATCH_RESIDUES,
        help="residues per batch, padding included (default %(default)s; longer ones fold alone)",
    )
    p.add_argument(
        "--num-recycles",
        type=non_negative_int,
        default=None,
        help="default: the model's (4 for esmfold_v1)",
    )
    p.add_argument(
        "--max-length",
        type=non_negative_int,
        default=FOLD_MAX_RESIDUES,
        help="longest record (residues + linkers) to fold; 0 = no limit (default %(default)s)",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="fold only shard I of N (independent jobs, e.g. a Slurm array); not "
        "with torchrun, which shards by RANK/WORLD_SIZE",
    )
    p.add_argument(
        "--no-cpu-fallback", action="store_true", help="do not retry out-of-memory records on CPU"
    )
    add_common_options(p)  # --device, --no-progress, --quiet, --verbose


def run(args: argparse.Namespace) -> int:
    """Fold; exit 1 if a record failed (each logged at WARNING, then a line with the count)."""
    from protein_lm.distributed import bulk_run
    from protein_lm.files import output_lock
    from protein_lm.folding.bulk import fold_fasta, write_summary
    from protein_lm.folding.options import FoldOptions
    from protein_lm.sequences import read_fasta

    chunk = args.chunk_size
    if chunk not in ("auto", "none"):
        try:
            chunk = int(chunk)
        except ValueError:
            raise ValueError(
                f"--chunk-size must be an int, 'auto' or 'none', got {chunk!r}"
            ) from None
        if chunk <= 0:
            raise ValueError(f"--chunk-size must be > 0, got {chunk}")
    options = FoldOptions(  # checked here, before any process group or model is set up
        device=args.device, chunk_size=None if chunk == "none" else chunk,
        max_tokens=args.max_tokens, num_recycles=args.num_recycles,
        cpu_fallback=not args.no_cpu_fallback)  # fmt: skip
    with (
        bulk_run(args.shard, args.device, progress=not args.no_progress) as bulk,
        output_lock(args.output_dir, bulk.shard),
    ):  # one writer per output (per shard)
        report = fold_fasta(
            args.input, args.output_dir, args.model, fmt=args.format,
            shard=bulk.shard, options=dataclasses.replace(options, device=bulk.device),
            max_length=args.max_length or None, progress=bulk.progress,
            summary=bulk.group.world == 1,
        )  # fmt: skip

        def merge(counts: list[tuple[int, int, int]]) -> int:
            folded, skipped, failed = (sum(c[k] for c in counts) for k in range(3))
            summary = report.summary
            if bulk.group.world > 1:  # every rank is done: rank 0 writes summary.csv
                summary = write_summary(
                    read_fasta(args.input, validate_sequences=False), args.output_dir, args.format
                )
            print(
                f"folded {folded}, skipped {skipped} (already done), failed {failed}; "
                f"summary: {summary}"
            )
            return 1 if failed else 0

        return bulk.finish((report.folded, report.skipped, report.failed), merge)
