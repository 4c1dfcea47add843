"""`protein-lm score`: zero-shot variant effect scores."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from protein_lm.cli.common import add_common_options

__all__ = ["add_parser", "run"]

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="zero-shot variant effect scores",
        description="Score every mutation of a CSV against a wild type. Parallel: "
        "under `torchrun --nproc-per-node N -m protein_lm.cli score ...` each "
        "process scores its share of the rows (rows masking the same positions "
        "together, balanced by forward passes; on cuda:LOCAL_RANK, or the CPU) "
        "and rank 0 writes the CSV in the original row order.",
    )
    p.add_argument("--model", required=True, help="hub id, local dir, or 'tiny'")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--sequence", help="wild-type sequence")
    src.add_argument("--fasta", type=Path, help="FASTA holding the wild-type sequence")
    p.add_argument("--mutations", required=True, type=Path, help="CSV with a 'mutant' column")
    p.add_argument("-o", "--output", required=True, type=Path)
    p.add_argument("--offset", type=int, default=1, help="number of the first residue (default 1)")
    p.add_argument(
        "--strategy",
        nargs="+",
        default=["masked-marginals"],
        choices=("wt-marginals", "masked-marginals", "pseudo-ppl"),
        help="one or more; pseudo-ppl costs L forward passes per mutant",
    )
    p.add_argument("--column", default="mutant", help="mutation column (default 'mutant')")
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="report bad rows (wrong wild-type letter, out of range, malformed, "
        "duplicate) and leave their scores empty instead of stopping",
    )
    add_common_options(p)


def run(args: argparse.Namespace) -> int:
    """Score every mutation; the mutation file is read and checked before the model is loaded."""
    import numpy as np

    from protein_lm.distributed import bulk_run
    from protein_lm.files import output_lock
    from protein_lm.models import load_model
    from protein_lm.sequences import atomic_write_text, read_fasta
    from protein_lm.variants import read_mutations, score_dataframe

    if args.fasta is not None:
        records = read_fasta(args.fasta)
        if len(records) != 1:
            raise ValueError(f"{args.fasta} holds {len(records)} records; give one wild type")
        wild_type = records[0].sequence
    else:
        wild_type = args.sequence
    table = read_mutations(args.mutations, column=args.column)
    with (
        bulk_run(None, args.device, progress=not args.no_progress) as bulk,
        output_lock(args.output, bulk.shard),
    ):  # one writer per output (per rank)
        model = load_model(args.model, "masked-lm", device=bulk.device).eval()
        scored, skipped = score_dataframe(
            model,
            wild_type,
            table,
            strategies=args.strategy,
            offset=args.offset,
            on_error="skip" if args.skip_invalid else "raise",
            source=str(args.mutations),
            column=args.column,
            progress=bulk.progress,
            shard=bulk.shard,
        )
        columns = [f"score_{s}" for s in args.strategy]

        def merge(parts: list[np.ndarray]) -> int:  # (rows, strategies) each, NaN elsewhere
            merged = parts[0]
            for other in parts[1:]:
                merged = np.where(np.isnan(merged), other, merged)
            scored[columns] = merged  # in row order
            for _, msg in skipped:
                log.warning("skipped %s", msg)
            args.output.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(args.output, scored.to_csv(index=False))
            log.info("wrote %d rows (%d skipped) to %s", len(scored), len(skipped), args.output)
            return 0

        return bulk.finish(scored[columns].to_numpy(), merge)
