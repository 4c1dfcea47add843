"""`protein-lm finetune`: fine-tune an ESM model (PyTorch or Keras) on a table of sequences and labels."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "run"]

TASKS = ("sequence-classification", "token-classification", "regression")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune an ESM model on a CSV/TSV of sequences and labels")
    p.add_argument("--task", required=True, choices=TASKS)
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


def run(args: argparse.Namespace) -> int:
    if args.framework == "tf":
        from protein_lm.tf.training import finetune_cli

        return finetune_cli(args)
    from protein_lm.pt.training import finetune_cli

    return finetune_cli(args)
