"""`protein-lm embed`: mean or per-residue embeddings (and contacts) for a FASTA."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from protein_lm.cli.common import add_common_options, positive_int
from protein_lm.precision import PRECISIONS

__all__ = ["add_parser", "run"]

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed",
        help="mean or per-residue embeddings (and contacts) for a FASTA",
        description="Embed every record of a FASTA. Output by suffix: .npz (all "
        "arrays), .npy (mean embeddings; ids in <stem>.ids.txt), .parquet, or a "
        "folder of shards. Resumable: rerun the same command after an "
        "interruption. Parallel: under `torchrun --nproc-per-node N -m "
        "protein_lm.cli embed ...` each process embeds its share of the shard "
        "files (balanced by residues; on cuda:LOCAL_RANK, or the CPU) and rank 0 "
        "writes the output once all are done. Independent jobs (a Slurm array): "
        "`--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT` in each job fills "
        "OUT.parts/, then the same command without --shard merges.",
    )
    p.add_argument("--model", required=True, help="hub id, local dir, or 'tiny'")
    p.add_argument("input", type=Path)
    p.add_argument("-o", "--output", required=True, type=Path)
    p.add_argument("--per-residue", action="store_true")
    p.add_argument("--contacts", action="store_true", help="contact maps from the contact head")
    p.add_argument(
        "--layers",
        type=int,
        nargs="+",
        default=[-1],
        help="layers to return, negative from the end (default -1: last, layer-normed)",
    )
    p.add_argument(
        "--batch-tokens",
        type=positive_int,
        default=4096,
        help="token budget per batch, padding included (default 4096)",
    )
    p.add_argument(
        "--strategy",
        choices=("auto", "padded", "exact"),
        default="auto",
        help="auto: padded batches on CUDA, exact-length batches on CPU",
    )
    p.add_argument(
        "--long",
        choices=("error", "window"),
        default="error",
        help="sequences > 1,022 residues: error (default) or average windows",
    )
    p.add_argument(
        "--shard-size",
        type=positive_int,
        default=1000,
        help="records per resumable shard file (default 1000); the unit of work "
        "shared out among processes, so keep it <= records / processes",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="embed only shard I's share of the shard files (of N, balanced by "
        "residues) into OUT.parts/ (independent jobs, e.g. a Slurm array); rerun "
        "without --shard to merge. Not with torchrun",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        default="float32",
        help="model dtype (default float32; float16/bfloat16 halve GPU memory)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="CPU numerics of a float32 model: auto (bfloat16 autocast on CPUs with "
        "AVX512-BF16/AMX for models of width >= 320, else float32), float32, bfloat16, or "
        "int8 (dynamic quantisation of the Linear layers); ignored on CUDA",
    )
    add_common_options(p)


def run(args: argparse.Namespace) -> int:
    """Embed; exit 1 if a record ran out of memory alone (NaN row, id logged)."""
    import torch

    from protein_lm.distributed import bulk_run
    from protein_lm.embedding_store import check_output, embed_to_file
    from protein_lm.embeddings import check_records
    from protein_lm.files import output_lock
    from protein_lm.models import load_model
    from protein_lm.provenance import weights_fingerprint
    from protein_lm.sequences import read_fasta

    records = read_fasta(args.input)  # every record checked before the model is loaded
    check_records(records, long_policy=args.long)
    check_output(args.output, per_residue=args.per_residue, contacts=args.contacts)
    with (
        bulk_run(args.shard, args.device, progress=not args.no_progress) as bulk,
        output_lock(args.output, bulk.shard),
    ):  # one writer per output (per shard)
        model = load_model(
            args.model, "masked-lm", device=bulk.device, dtype=getattr(torch, args.dtype)
        ).eval()
        options = dict(
            # the weights' own hash, never the name: other weights at one path are refused
            weights=weights_fingerprint(model if args.model == "tiny" else args.model),
            shard_size=args.shard_size,
            model_name=args.model,
            layers=args.layers,
            per_residue=args.per_residue,
            contacts=args.contacts,
            max_tokens=args.batch_tokens,
            strategy=args.strategy,
            long_policy=args.long,
            precision=args.precision,
            progress=bulk.progress,
        )
        out = embed_to_file(model, records, args.output, shard=bulk.shard, **options)

        def merge(_: list[None]) -> int:
            path = out
            if bulk.group.world > 1:  # every rank's shard files are written: rank 0 merges them
                path = embed_to_file(model, records, args.output, **options)  # embeds nothing
            if bulk.partial:
                log.info(
                    "shard %d/%d written to %s; when all %d are done, rerun without --shard "
                    "to merge",
                    *bulk.shard,
                    path,
                    bulk.shard[1],
                )
                return 0
            failed = _failed_ids(path)
            if failed:
                log.error("out of memory, skipped (NaN rows): %s", ", ".join(failed))
                return 1
            log.info("wrote %s", path)
            return 0

        return bulk.finish(None, merge)


def _failed_ids(out: Path) -> list[str]:
    if out.suffix.lower() not in ("", ".npz"):
        return []
    from protein_lm.embedding_store import load_embeddings

    return list(load_embeddings(out).failed)
