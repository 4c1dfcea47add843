"""`protein-lm score`: zero-shot variant effect scores."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from protein_lm.cli.common import add_common_options
from protein_lm.precision import PRECISIONS

__all__ = ["add_parser", "run"]

log = logging.getLogger(__name__)

MUTATED, MEASURED = "mutated_sequence", "DMS_score"  # ProteinGym's column names


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
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--sequence",
        help="wild-type sequence (optional for a ProteinGym CSV: derived from mutated_sequence)",
    )
    src.add_argument("--fasta", type=Path, help="FASTA holding the wild-type sequence")
    p.add_argument(
        "--mutations",
        required=True,
        type=Path,
        help="CSV with a 'mutant' column; a ProteinGym substitution file works as is "
        "(mutated_sequence is checked against the wild type; with DMS_score the Spearman "
        "correlation is printed)",
    )
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
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="CPU numerics (as for embed): auto, float32, bfloat16 or int8; ignored on CUDA",
    )
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
    from protein_lm.sequences import atomic_write_text
    from protein_lm.variants import read_mutations, score_dataframe

    table = read_mutations(args.mutations, column=args.column)
    wild_type = _wild_type(args, table)
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
            precision=args.precision,
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
            if MEASURED in scored.columns:
                _print_spearman(scored, columns)
            return 0

        return bulk.finish(scored[columns].to_numpy(), merge)


def _wild_type(args: argparse.Namespace, table: Any) -> str:
    """--sequence, --fasta, or (a ProteinGym file) the first row's mutated_sequence with its
    mutant undone; a mutated_sequence column is checked against it row by row."""
    from protein_lm.sequences import read_fasta
    from protein_lm.variants import check_mutated_sequences, wild_type_from_mutated

    if args.fasta is not None:
        records = read_fasta(args.fasta)
        if len(records) != 1:
            raise ValueError(f"{args.fasta} holds {len(records)} records; give one wild type")
        wild_type = records[0].sequence
    elif args.sequence is not None:
        wild_type = args.sequence
    elif MUTATED in table.columns:
        first = table.iloc[0]
        try:
            wild_type = wild_type_from_mutated(first[args.column], first[MUTATED], args.offset)
        except ValueError as exc:
            raise ValueError(f"{args.mutations}, row 0: {exc}") from None
        log.info("wild type (%d residues) from row 0's %s", len(wild_type), MUTATED)
    else:
        raise ValueError(
            f"give the wild type with --sequence or --fasta ({args.mutations} has no "
            f"{MUTATED} column to derive it from)"
        )
    if MUTATED in table.columns:
        n = check_mutated_sequences(
            table, wild_type, offset=args.offset, column=args.column, source=str(args.mutations)
        )
        log.info("%s matches the wild type in all %d checked rows", MUTATED, n)
    return wild_type


def _print_spearman(scored: Any, columns: list[str]) -> None:
    """Per-assay Spearman of each score column with DMS_score (rows with both values)."""
    import numpy as np

    from protein_lm.metrics import regression_metrics

    measured = np.array([_number(v) for v in scored[MEASURED]])
    for col in columns:
        scores = scored[col].to_numpy(dtype=float)
        ok = np.isfinite(measured) & np.isfinite(scores)
        if ok.sum() < 2:
            print(f"{col}: fewer than 2 rows with a score and a {MEASURED}; no Spearman")
            continue
        rho = regression_metrics(measured[ok], scores[ok])["spearman"]
        print(f"{col}: Spearman {rho:+.3f} with {MEASURED} over {int(ok.sum())} rows")


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")
