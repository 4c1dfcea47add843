"""`protein-lm predict`: predict with a model directory written by `protein-lm finetune`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from protein_lm.cli.common import add_common_options, positive_int
from protein_lm.precision import PRECISIONS

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict with a fine-tuned model directory")
    p.add_argument("--model", required=True, help="a model directory written by finetune")
    p.add_argument("input", type=Path, help="FASTA (or CSV/TSV with a sequence column)")
    p.add_argument("-o", "--output", required=True, type=Path, help="output CSV")
    p.add_argument("--framework", choices=("pt", "tf"), default="pt")
    p.add_argument("--batch-tokens", type=positive_int, default=8000)
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="CPU numerics of the PyTorch path (as for embed); ignored on CUDA and with tf",
    )
    add_common_options(p)  # --device, --no-progress, --quiet, --verbose


def run(args: argparse.Namespace) -> int:
    """FASTA/CSV in, predictions CSV out, with the chosen framework; 1 if a batch failed."""
    from protein_lm.files import output_lock
    from protein_lm.finetuning.predictions import finetuned_model_dir
    from protein_lm.finetuning.reporting import read_predict_input

    model_dir = finetuned_model_dir(args.model)  # missing folder, weights: one line, exit 2
    records = read_predict_input(args.input)  # all input checked before the model is loaded
    with output_lock(args.output):  # one writer per output file
        if args.framework == "tf":
            from protein_lm.tf.predict import predict as tf_predict

            # TF places the model itself (no --device)
            result = tf_predict(model_dir, records, batch_tokens=args.batch_tokens)
        else:
            from protein_lm.pt.predict import predict as pt_predict

            result = pt_predict(
                model_dir,
                records,
                batch_tokens=args.batch_tokens,
                device=args.device,
                progress=not getattr(args, "no_progress", False),
                precision=args.precision,
            )
        result.to_csv(args.output)
    print(f"{len(result.ids)} predictions ({result.task}) written to {args.output}")
    if result.failed:
        print(
            f"{len(result.failed)} record(s) failed (GPU out of memory, or a NaN/inf output: "
            f"see the log above), first: {result.failed[0]}; their prediction is empty",
            file=sys.stderr,
        )
        return 1
    return 0
