"""`protein-lm predict`: predict with a model directory written by `protein-lm finetune`."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="predict with a fine-tuned model directory")
    p.add_argument("--model", required=True, help="a model directory written by finetune")
    p.add_argument("input", type=Path, help="FASTA (or CSV/TSV with a sequence column)")
    p.add_argument("-o", "--output", required=True, type=Path, help="output CSV")
    p.add_argument("--framework", choices=("pt", "tf"), default="pt")
    p.add_argument("--batch-tokens", type=int, default=8000)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")


def run(args: argparse.Namespace) -> int:
    if args.framework == "tf":
        from protein_lm.tf.training import predict_cli

        return predict_cli(args)
    from protein_lm.pt.predict import predict_cli

    return predict_cli(args)
