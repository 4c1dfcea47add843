"""`protein-lm` command line: finetune, predict, fold, embed, score.

Each subcommand has a parser block in `build_parser` and a `_run_<cmd>(args) -> int`. Bad input
(`ProteinLMError`, `ValueError`) exits with status 2 and a one-line message; only `main`
configures logging.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from protein_lm.errors import MissingExtraError, ProteinLMError

__all__ = ["build_parser", "main"]

log = logging.getLogger(__name__)

TRAIN_TASKS = ("sequence-classification", "token-classification", "regression")


# ---------------------------------------------------------------- finetune / predict (PT + TF)
def _add_finetune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune an ESM model on a CSV/TSV of sequences and labels")
    p.add_argument("--task", required=True, choices=TRAIN_TASKS)
    p.add_argument("--model", required=True, help="hub id, local model directory, or 'tiny'")
    p.add_argument("--train", required=True, type=Path, help="CSV/TSV with sequence,label[,id,mask]")
    p.add_argument("--validation", required=True, type=Path)
    p.add_argument("--test", type=Path, default=None, help="evaluated once, with the best checkpoint")
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--framework", choices=("pt", "tf"), default="pt")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=float, default=None, help="default 3 when --max-steps is unset")
    g.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=None,
                   help="default 1e-3 for 'tiny' (from scratch), 5e-5 for pretrained models, "
                        "3e-4 with --lora")
    p.add_argument("--batch-tokens", type=int, default=8000,
                   help="token budget per batch, padding included (default 8000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lora", action="store_true", help="train LoRA adapters (peft) instead of all weights")
    # PyTorch options (the TF path reads the ones it supports)
    p.add_argument("--max-time", type=float, default=None, metavar="SECONDS",
                   help="stop training after this many seconds (the last step is evaluated)")
    p.add_argument("--eval-steps", type=int, default=None,
                   help="evaluate/checkpoint every N steps (default: 10 times per run)")
    p.add_argument("--class-weights", choices=("none", "balanced"), default="none",
                   help="'balanced': weight the loss by inverse class frequency")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--gradient-checkpointing", action="store_true",
                   help="recompute activations in the backward pass (less memory, ~30%% slower)")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="auto: bf16 (or fp16) mixed precision on GPU, fp32 on CPU")
    p.add_argument("--attn-implementation", choices=("sdpa", "eager"), default="sdpa")
    p.add_argument("--length-policy", choices=("truncate", "error"), default="truncate",
                   help="sequences over 1,022 residues: truncate with a warning, or stop with an error")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="default: cuda if available (under torchrun, one GPU per process)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output-dir")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_finetune(args: argparse.Namespace) -> int:
    if args.framework == "tf":
        from protein_lm.tf_training import finetune_cli

        return finetune_cli(args)
    from protein_lm.torch_training import finetune_cli

    return finetune_cli(args)


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict with a fine-tuned model directory")
    p.add_argument("--model", required=True, help="a model directory written by finetune")
    p.add_argument("input", type=Path, help="FASTA (or CSV/TSV with a sequence column)")
    p.add_argument("-o", "--output", required=True, type=Path, help="output CSV")
    p.add_argument("--framework", choices=("pt", "tf"), default="pt")
    p.add_argument("--batch-tokens", type=int, default=8000)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")


def _run_predict(args: argparse.Namespace) -> int:
    if args.framework == "tf":
        from protein_lm.tf_training import predict_cli

        return predict_cli(args)
    from protein_lm.torch_inference import predict_cli

    return predict_cli(args)


# ---------------------------------------------------------------- fold
def _add_fold(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fold", help="predict structures with ESMFold (bulk, resumable)")
    p.add_argument("input", type=Path, help="FASTA; 'A:B' in a sequence line folds a multimer")
    p.add_argument("-o", "--output-dir", required=True, type=Path)
    p.add_argument("--model", default="facebook/esmfold_v1", help="hub id, local dir, or 'tiny'")
    p.add_argument("--chunk-size", default="auto",
                   help="trunk chunk size: an int, 'auto' (from length and free memory) or 'none'")
    p.add_argument("--format", choices=("pdb", "cif"), default="pdb")
    p.add_argument("--device", default=None, help="default: cuda (cuda:LOCAL_RANK under torchrun) if available")
    p.add_argument("--max-tokens", type=int, default=1024,
                   help="residues per batch, padding included (default 1024; longer ones fold alone)")
    p.add_argument("--num-recycles", type=int, default=None, help="default: the model's (4 for esmfold_v1)")
    p.add_argument("--max-length", type=int, default=1024,
                   help="longest record (residues + linkers) to fold; 0 = no limit (default 1024)")
    p.add_argument("--shard", default=None,
                   help="fold only shard i of n ('i/n'); default: RANK/WORLD_SIZE under torchrun, else 0/1")
    p.add_argument("--no-cpu-fallback", action="store_true", help="do not retry out-of-memory records on CPU")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _run_fold(args: argparse.Namespace) -> int:
    from protein_lm.bulk_folding import fold_fasta, parse_shard, shard_from_env

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


# ---------------------------------------------------------------- embed
def _add_embed(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("embed", help="mean or per-residue embeddings (and contacts) for a FASTA",
                       description="Embed every record of a FASTA. Output by suffix: .npz (all "
                       "arrays), .npy (mean embeddings; ids in <stem>.ids.txt), .parquet, or a "
                       "folder of shards. Resumable: rerun the same command after an interruption.")
    p.add_argument("--model", required=True, help="hub id, local dir, or 'tiny'")
    p.add_argument("input", type=Path)
    p.add_argument("-o", "--output", required=True, type=Path)
    p.add_argument("--per-residue", action="store_true")
    p.add_argument("--contacts", action="store_true", help="contact maps from the contact head")
    p.add_argument("--layers", type=int, nargs="+", default=[-1],
                   help="layers to return, negative from the end (default -1: last, layer-normed)")
    p.add_argument("--batch-tokens", type=int, default=4096,
                   help="token budget per batch, padding included (default 4096)")
    p.add_argument("--strategy", choices=("auto", "padded", "exact"), default="auto",
                   help="auto: padded batches on CUDA, exact-length batches on CPU")
    p.add_argument("--long", choices=("error", "window"), default="error",
                   help="sequences > 1,022 residues: error (default) or average windows")
    p.add_argument("--shard-size", type=int, default=1000, help="records per resumable shard")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda if available)")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default="float32",
                   help="model dtype (default float32; float16/bfloat16 halve GPU memory)")


def _run_embed(args: argparse.Namespace) -> int:
    import torch

    from protein_lm.embedding_store import embed_to_file
    from protein_lm.models import load_model

    model = load_model(args.model, "masked-lm", device=args.device,
                       dtype=getattr(torch, args.dtype))
    out = embed_to_file(
        model.eval(), args.input, args.output, shard_size=args.shard_size, model_name=args.model,
        layers=args.layers, per_residue=args.per_residue, contacts=args.contacts,
        max_tokens=args.batch_tokens, strategy=args.strategy, long_policy=args.long,
    )
    failed = _failed_ids(out)
    if failed:
        log.error("out of memory, skipped (NaN rows): %s", ", ".join(failed))
        return 1
    log.info("wrote %s", out)
    return 0


def _failed_ids(out: Path) -> list[str]:
    if out.suffix.lower() not in ("", ".npz"):
        return []
    from protein_lm.embedding_store import load_embeddings

    return list(load_embeddings(out).failed)


# ---------------------------------------------------------------- score
def _add_score(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="zero-shot variant effect scores")
    p.add_argument("--model", required=True, help="hub id, local dir, or 'tiny'")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--sequence", help="wild-type sequence")
    src.add_argument("--fasta", type=Path, help="FASTA holding the wild-type sequence")
    p.add_argument("--mutations", required=True, type=Path, help="CSV with a 'mutant' column")
    p.add_argument("-o", "--output", required=True, type=Path)
    p.add_argument("--offset", type=int, default=1, help="number of the first residue (default 1)")
    p.add_argument("--strategy", nargs="+", default=["masked-marginals"],
                   choices=("wt-marginals", "masked-marginals", "pseudo-ppl"),
                   help="one or more; pseudo-ppl costs L forward passes per mutant")
    p.add_argument("--column", default="mutant", help="mutation column (default 'mutant')")
    p.add_argument("--skip-invalid", action="store_true",
                   help="report bad rows (wrong wild-type letter, out of range, malformed, "
                   "duplicate) and leave their scores empty instead of stopping")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda if available)")


def _run_score(args: argparse.Namespace) -> int:
    import pandas as pd

    from protein_lm.models import load_model
    from protein_lm.sequences import atomic_write_text, read_fasta
    from protein_lm.variants import score_dataframe

    if args.fasta is not None:
        records = read_fasta(args.fasta)
        if len(records) != 1:
            raise ValueError(f"{args.fasta} holds {len(records)} records; give one wild type")
        wild_type = records[0].sequence
    else:
        wild_type = args.sequence
    if not args.mutations.is_file():
        raise FileNotFoundError(f"mutation file not found: {args.mutations}")
    sep = "\t" if args.mutations.suffix.lower() in (".tsv", ".tab") else ","
    table = pd.read_csv(args.mutations, sep=sep, encoding="utf-8-sig")
    model = load_model(args.model, "masked-lm", device=args.device).eval()
    scored, skipped = score_dataframe(
        model, wild_type, table, strategies=args.strategy, offset=args.offset,
        on_error="skip" if args.skip_invalid else "raise",
        source=str(args.mutations), column=args.column,
    )
    for _, msg in skipped:
        log.warning("skipped %s", msg)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.output, scored.to_csv(index=False))
    log.info("wrote %d rows (%d skipped) to %s", len(scored), len(skipped), args.output)
    return 0


# ---------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The `protein-lm` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(prog="protein-lm", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_finetune, _add_predict, _add_fold, _add_embed, _add_score):
        add(sub)
    return parser


_RUNNERS = {
    "finetune": lambda a: _run_finetune(a),
    "predict": lambda a: _run_predict(a),
    "fold": lambda a: _run_fold(a),
    "embed": lambda a: _run_embed(a),
    "score": lambda a: _run_score(a),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `protein-lm`; returns the exit status."""
    args = build_parser().parse_args(argv)
    # Our messages at INFO (DEBUG with -v); third-party libraries only from WARNING up.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("protein_lm").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return _RUNNERS[args.command](args)
    except MissingExtraError as exc:
        print(f"protein-lm {args.command}: {exc}", file=sys.stderr)
        return 2
    except (ProteinLMError, ValueError, FileNotFoundError) as exc:
        print(f"protein-lm {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
