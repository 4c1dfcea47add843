"""`protein-lm` command line: finetune, predict, fold, embed, score.

Each subcommand is one module of this package with `add_parser(sub)` and `run(args) -> int`;
this package is the only place that parses arguments or prints. Bad input
(`ProteinLMError`, `ValueError`) exits with status 2 and a one-line message; only `main`
configures logging.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from protein_lm.cli import embed, finetune, fold, predict, score
from protein_lm.errors import MissingExtraError, ProteinLMError

__all__ = ["build_parser", "main"]


# ---------------------------------------------------------------- main
_COMMANDS = {"finetune": finetune, "predict": predict, "fold": fold, "embed": embed, "score": score}


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
    args = build_parser().parse_args(argv)
    # Our messages at INFO (DEBUG with -v); third-party libraries only from WARNING up.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("protein_lm").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return _COMMANDS[args.command].run(args)
    except MissingExtraError as exc:
        print(f"protein-lm {args.command}: {exc}", file=sys.stderr)
        return 2
    except (ProteinLMError, ValueError, FileNotFoundError) as exc:
        print(f"protein-lm {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
