"""`protein-lm` command line: finetune, predict, fold, embed, score.

Each subcommand is one module of this package with `add_parser(sub)` and `run(args) -> int`;
this package is the only place that parses arguments or prints. Every subcommand takes the
common options of `protein_lm.cli.common` (`--device`, `--no-progress`, `-q/--quiet`,
`-v/--verbose`), which only `main` applies (logging level, progress bars).

Exit status: 0 done; 1 the run finished but some records failed (out of memory: `embed`
writes NaN rows, `fold` and `predict` list them); 2 bad input or usage, with one line on
stderr naming the file/option and nothing half-written (`ProteinLMError`, `ValueError`,
`FileNotFoundError`, a missing extra, argparse errors).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from protein_lm.cli import embed, finetune, fold, predict, score
from protein_lm.cli.common import common_options_applied
from protein_lm.errors import MissingExtraError, ProteinLMError
from protein_lm.models import check_device

__all__ = ["build_parser", "main"]


# ---------------------------------------------------------------- main
_COMMANDS = {
    "finetune": finetune,
    "predict": predict,
    "fold": fold,
    "embed": embed,
    "score": score,
}


def build_parser() -> argparse.ArgumentParser:
    """The `protein-lm` argument parser with all subcommands."""
    parser = argparse.ArgumentParser(prog="protein-lm", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in _COMMANDS.values():
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `protein-lm`; returns the exit status."""
    parser = build_parser()
    try:  # argparse exits on usage errors (2) and --help (0): returned here like every status
        args = parser.parse_args(argv)
        if getattr(args, "verbose", False) and getattr(args, "quiet", False):
            # `protein-lm -v fold ... -q`: the top-level -v is outside the subcommand's group
            parser.error("argument -q/--quiet: not allowed with argument -v/--verbose")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        # Before any input is read or file made: a device this machine lacks is a usage error.
        check_device(getattr(args, "device", None), "--device")
        with common_options_applied(args):
            return _COMMANDS[args.command].run(args)
    except MissingExtraError as exc:
        print(f"protein-lm {args.command}: {exc}", file=sys.stderr)
        return 2
    except (ProteinLMError, ValueError, FileNotFoundError) as exc:
        print(f"protein-lm {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
