"""`protein-lm finetune`: fine-tune an ESM model (PyTorch or Keras) on a table of sequences and
labels."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from protein_lm.cli.common import add_common_options, positive_float, positive_int
from protein_lm.errors import InvalidInputError
from protein_lm.finetuning.config import FINETUNE_TASKS, SELECTION_METRIC

if TYPE_CHECKING:
    from protein_lm.pt.training import FinetuneResult
    from protein_lm.tf.training import TFFinetuneResult

__all__ = ["add_parser", "run"]

TASKS = FINETUNE_TASKS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune", help="fine-tune an ESM model on a CSV/TSV of sequences and labels"
    )
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--model", required=True, help="hub id, local model directory, or 'tiny'")
    p.add_argument(
        "--train", required=True, type=Path, help="CSV/TSV with sequence,label[,id,mask]"
    )
    p.add_argument("--validation", required=True, type=Path)
    p.add_argument(
        "--test", type=Path, default=None, help="evaluated once, with the best checkpoint"
    )
    p.add_argument("--output-dir", required=True, type=Path)
    p.add_argument("--framework", choices=("pt", "tf"), default="pt")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--epochs", type=positive_float, default=None, help="default 3 when --max-steps is unset"
    )
    g.add_argument("--max-steps", type=positive_int, default=None)
    p.add_argument(
        "--learning-rate",
        type=positive_float,
        default=None,
        help="default 1e-3 for 'tiny' (from scratch), 5e-5 for pretrained models, "
        "3e-4 with --lora",
    )
    p.add_argument(
        "--batch-tokens",
        type=positive_int,
        default=8000,
        help="token budget per batch, padding included (default 8000)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--lora", action="store_true", help="train LoRA adapters (peft) instead of all weights"
    )
    # PyTorch options (the TF path reads the ones it supports)
    p.add_argument(
        "--max-time",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help="stop training after this many seconds (the last step is evaluated)",
    )
    p.add_argument(
        "--eval-steps",
        type=positive_int,
        default=None,
        help="evaluate/checkpoint every N steps (default: 10 times per run)",
    )
    p.add_argument(
        "--class-weights",
        choices=("none", "balanced"),
        default="none",
        help="'balanced': weight the loss by inverse class frequency",
    )
    p.add_argument("--lora-rank", type=positive_int, default=8)
    p.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute activations in the backward pass (less memory, ~30%% slower)",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="auto: bf16 (or fp16) mixed precision on GPU, fp32 on CPU",
    )
    p.add_argument("--attn-implementation", choices=("sdpa", "eager"), default="sdpa")
    p.add_argument(
        "--length-policy",
        choices=("truncate", "error"),
        default="truncate",
        help="sequences over 1,022 residues: truncate with a warning, or stop with an error",
    )
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output-dir")
    add_common_options(p, finetune=True)  # --device cpu/cuda, --no-progress, --quiet, -v


# Options only the PyTorch path has: refused with --framework tf (value that means "not used").
_PT_ONLY = (
    ("--lora", "lora", False),
    ("--class-weights", "class_weights", "none"),
    ("--gradient-checkpointing", "gradient_checkpointing", False),
    ("--device", "device", None),
)


def run(args: argparse.Namespace) -> int:
    """Read and check every table, train with the chosen framework, print where results went."""
    from protein_lm.data import read_table

    if args.framework == "tf":
        used = [flag for flag, name, unused in _PT_ONLY if getattr(args, name, unused) != unused]
        if used:
            raise InvalidInputError(
                f"{', '.join(used)}: PyTorch-only option(s); drop them or use --framework pt"
            )
    files = [args.train, args.validation, args.test]
    out = Path(os.path.realpath(args.output_dir))
    for f in files:
        if f is not None and out in Path(os.path.realpath(f)).parents:
            raise InvalidInputError(
                f"{f} is inside --output-dir {args.output_dir}, which a run replaces as a whole; "
                "choose another --output-dir"
            )
    # Every file is read and validated before any model is loaded or training starts.
    tables = [None if f is None else read_table(f, args.task) for f in files]
    common = dict(
        task=args.task,
        model=args.model,
        epochs=args.epochs,
        max_steps=args.max_steps,
        max_time_s=args.max_time,
        learning_rate=args.learning_rate,
        batch_tokens=args.batch_tokens,
        eval_steps=args.eval_steps,
        seed=args.seed,
        precision=args.precision,
        length_policy=args.length_policy,
        progress=not getattr(args, "no_progress", False),
    )
    names = [str(f) if f is not None else "test" for f in files]
    result: TFFinetuneResult | FinetuneResult
    if args.framework == "tf":
        from protein_lm.tf.training import TFFinetuneConfig
        from protein_lm.tf.training import finetune as tf_finetune

        result = tf_finetune(
            *tables,
            config=TFFinetuneConfig(**common),
            output_dir=args.output_dir,
            overwrite=args.overwrite,
            source_names=names,
        )
    else:
        from protein_lm.pt.training import FinetuneConfig
        from protein_lm.pt.training import finetune as pt_finetune

        common.update(
            lora=args.lora,
            lora_rank=args.lora_rank,
            class_weights=None if args.class_weights == "none" else args.class_weights,
            gradient_checkpointing=args.gradient_checkpointing,
            attn_implementation=args.attn_implementation,
            device=getattr(args, "device", None),
        )
        result = pt_finetune(
            *tables,
            config=FinetuneConfig(**common),
            output_dir=args.output_dir,
            overwrite=args.overwrite,
            source_names=names,
        )
    key = SELECTION_METRIC[args.task]
    line = (
        f"validation {key} {result.validation.get(key, float('nan')):.4f} "
        f"(best step {result.best_step} of {result.steps})"
    )
    if result.test is not None:
        line += f", test {key} {result.test.get(key, float('nan')):.4f}"
    print(f"{line}; model, metrics.json, training_log.csv in {result.output_dir}")
    return 0
