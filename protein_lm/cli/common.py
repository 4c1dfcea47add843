"""Options every `protein-lm` subcommand takes, and how `main` applies them.

`--device`, `--no-progress` and `-q/--quiet` (plus `-v/--verbose`, also accepted before the
subcommand) are defined once here, so the five subcommands spell and document them the same way.
`--quiet` logs only warnings and errors and implies `--no-progress`. `--no-progress` hides this
package's bars and those of transformers, huggingface_hub and datasets ("Loading weights",
"Writing model shards", "Map"); `main` switches those off for the run only and restores them,
so nothing changes at import time.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import re
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = [
    "add_common_options",
    "common_options_applied",
    "positive_int",
    "non_negative_int",
    "positive_float",
]

_DEVICE = re.compile(r"^(cpu|mps|(cuda|xpu)(:\d+)?)$")
# `finetune` places the model through accelerate's PartialState, which takes only these two
# (FinetuneConfig.device): the parser refuses what the library would refuse later.
FINETUNE_DEVICES = ("cpu", "cuda")


def _device(value: str) -> str:
    if not _DEVICE.match(value):
        raise argparse.ArgumentTypeError(
            f"must be cpu, cuda, cuda:N, mps or xpu[:N], got {value!r}"
        )
    return value


def positive_int(value: str) -> int:
    """argparse type: an int > 0 (argparse names the flag in its one-line error)."""
    number = int(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {number}")
    return number


def non_negative_int(value: str) -> int:
    """argparse type: an int >= 0."""
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {number}")
    return number


def positive_float(value: str) -> float:
    """argparse type: a finite float > 0."""
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {value}")
    return number


def _finetune_device(value: str) -> str:
    if value not in FINETUNE_DEVICES:
        raise argparse.ArgumentTypeError(f"must be cpu or cuda for finetune, got {value!r}")
    return value


class _Quiet(argparse.Action):
    """`--quiet`: only warnings and errors, which also means no progress bars."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, True)
        namespace.no_progress = True


def add_common_options(parser: argparse.ArgumentParser, *, finetune: bool = False) -> None:
    """Add `--device`, `--no-progress`, `-q/--quiet` and `-v/--verbose` to a subcommand parser.

    `finetune=True` limits `--device` to what fine-tuning accepts (`FINETUNE_DEVICES`).
    """
    g = parser.add_argument_group("common options")
    if finetune:
        g.add_argument(
            "--device",
            type=_finetune_device,
            default=None,
            metavar="DEVICE",
            help="cpu or cuda (default: cuda if available)",
        )
    else:
        g.add_argument(
            "--device",
            type=_device,
            default=None,
            metavar="DEVICE",
            help="cpu, cuda, cuda:N, mps (default: cuda if available; "
            "cuda:LOCAL_RANK under torchrun)",
        )
    g.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (ours, transformers', the hub's, datasets')",
    )
    loud = g.add_mutually_exclusive_group()
    loud.add_argument(
        "-q",
        "--quiet",
        action=_Quiet,
        nargs=0,
        default=False,
        help="log only warnings and errors; implies --no-progress",
    )
    # SUPPRESS: `protein-lm -v embed ...` (the top-level flag) is not reset by the subparser.
    loud.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )


@contextlib.contextmanager
def common_options_applied(args: argparse.Namespace) -> Iterator[None]:
    """Apply the common options for one run (logging level, progress bars), then restore them."""
    level = (
        logging.DEBUG
        if getattr(args, "verbose", False)
        else logging.WARNING
        if getattr(args, "quiet", False)
        else logging.INFO
    )
    # Our messages at INFO (DEBUG with -v, WARNING with -q); third-party libraries from WARNING.
    logging.basicConfig(
        level=logging.DEBUG if level == logging.DEBUG else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    ours = logging.getLogger("protein_lm")
    before = ours.level
    ours.setLevel(level)
    try:
        with _third_party_bars(enabled=not getattr(args, "no_progress", False)):
            yield
    finally:
        ours.setLevel(before)


@contextlib.contextmanager
def _third_party_bars(*, enabled: bool) -> Iterator[None]:
    """Switch off transformers', huggingface_hub's and datasets' bars for a block (if `enabled`
    is False), restoring each library's own setting afterwards."""
    if enabled:
        yield
        return
    hub = _optional("huggingface_hub.utils")
    hf_logging = _optional("transformers.utils.logging")
    datasets = _optional("datasets")
    hub_on = hub is not None and not hub.are_progress_bars_disabled()
    hf_on = hf_logging is not None and hf_logging.is_progress_bar_enabled()
    ds_on = datasets is not None and datasets.is_progress_bar_enabled()
    if hf_on:
        hf_logging.disable_progress_bar()  # the hub's too
    if hub_on:
        hub.disable_progress_bars()
    if ds_on:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if hf_on:
            hf_logging.enable_progress_bar()  # re-enables the hub's as well: set them next
        if hub is not None:
            (hub.enable_progress_bars if hub_on else hub.disable_progress_bars)()
        if ds_on:
            datasets.enable_progress_bars()


def _optional(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        return None
