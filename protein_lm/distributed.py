"""Ranks and shards for the bulk commands (`fold`, `embed`, `score`): torchrun and Slurm arrays.

A bulk run is split into `n` shards; shard `i` is one process's share of the records. Two ways
to run the shards:

- **torchrun** (one node or several): `torchrun --nproc-per-node N -m protein_lm.cli embed ...`.
  Each process takes shard `RANK/WORLD_SIZE`, runs on `cuda:LOCAL_RANK` (or the CPU), and
  `process_group()` joins them with the gloo backend (CPU tensors only, used for a barrier and
  to exchange small Python objects), so rank 0 can merge once every rank is done and is the
  only one to print the result.
- **Independent jobs** (e.g. a Slurm array): `--shard i/n` in job `i`; each writes its shard's
  files into the shared output, and a final run without `--shard` (after all of them) merges
  (it finds every shard finished and only writes the final file / summary).

Nothing here imports torch at module level; `torch.distributed` is imported only when a process
group is really needed (WORLD_SIZE > 1 under a launcher that sets MASTER_ADDR/MASTER_PORT).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from protein_lm.errors import InvalidInputError, require

__all__ = [
    "Group",
    "parse_shard",
    "shard_from_env",
    "rank_device",
    "process_group",
    "block",
]

log = logging.getLogger(__name__)

# Ranks wait for the slowest one at the end; shards are balanced, but a long gap is no error.
_TIMEOUT = timedelta(days=7)


def parse_shard(text: str) -> tuple[int, int]:
    """Parse `i/n` (0 <= i < n) into `(i, n)`.

    >>> parse_shard("1/4")
    (1, 4)
    """
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise InvalidInputError(f"--shard must look like 'i/n' (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise InvalidInputError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def shard_from_env() -> tuple[int, int]:
    """`(RANK, WORLD_SIZE)` as set by torchrun (or a wrapper that exports them), else `(0, 1)`."""
    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise InvalidInputError(
            f"RANK={os.environ.get('RANK')!r} and WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} "
            "must be integers"
        ) from None
    if not 0 <= rank < world:
        raise InvalidInputError(f"RANK={rank}, WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    return rank, world


def rank_device(device: str | None = None) -> str | None:
    """`device` if given; else `cuda:LOCAL_RANK` under torchrun when CUDA is available (one GPU
    per process); else None (the loader's default: cuda if available, else cpu)."""
    if device or "LOCAL_RANK" not in os.environ:
        return device
    torch = require("torch", "torch")
    return f"cuda:{int(os.environ['LOCAL_RANK'])}" if torch.cuda.is_available() else None


def block(n_items: int, shard: tuple[int, int]) -> range:
    """Contiguous block of `range(n_items)` for `shard=(i, n)`; sizes differ by at most one.

    >>> [list(block(5, (i, 2))) for i in range(2)]
    [[0, 1, 2], [3, 4]]
    """
    i, n = shard
    if not 0 <= i < n:
        raise ValueError(f"`shard` must be (i, n) with 0 <= i < n, got {shard}")
    return range(-(-n_items * i // n), -(-n_items * (i + 1) // n))  # ceil(N i / n) ..


@dataclass(frozen=True)
class Group:
    """This process's place among the processes of one run: `rank` of `world` (`world == 1`:
    alone). The collective methods are no-ops for a single process."""

    rank: int = 0
    world: int = 1
    _dist: Any = None  # torch.distributed when a process group was joined

    @property
    def is_main(self) -> bool:
        """Rank 0: merges and prints."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world

    def job_shard(self, text: str | None) -> tuple[int, int] | None:
        """The `--shard i/n` of an independent job (None when not given), parsed.

        Refused under torchrun, where each process already takes shard RANK/WORLD_SIZE.
        """
        if not text:
            return None
        if self.world > 1:
            raise InvalidInputError("--shard is for independent jobs; under torchrun each process "
                                    "takes shard RANK/WORLD_SIZE (drop --shard)")
        return parse_shard(text)

    def barrier(self) -> None:
        """Wait until every process got here."""
        if self._dist is not None:
            self._dist.barrier()

    def all_gather(self, obj: Any) -> list[Any]:
        """Every process's `obj` (picklable, small), in rank order, on every process."""
        if self._dist is None:
            return [obj]
        out: list[Any] = [None] * self.world
        self._dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` (picklable, small), on every process."""
        if self._dist is None:
            return obj
        box = [obj]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]


@contextlib.contextmanager
def process_group() -> Iterator[Group]:
    """The processes of this run: joined with gloo under torchrun (WORLD_SIZE > 1), else alone.

    A process group that is already initialised (e.g. by the caller) is used and left open;
    one created here is destroyed on exit.
    """
    rank, world = shard_from_env()
    if world == 1:
        yield Group()
        return
    if not {"MASTER_ADDR", "MASTER_PORT"} <= os.environ.keys():
        raise InvalidInputError(
            f"WORLD_SIZE={world} but MASTER_ADDR/MASTER_PORT are not set: launch with torchrun "
            "(e.g. torchrun --nproc-per-node 2 -m protein_lm.cli ...), or use --shard i/n for "
            "independent jobs"
        )
    require("torch", "torch")
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=_TIMEOUT)
    log.debug("rank %d of %d joined the process group", rank, world)
    try:
        yield Group(dist.get_rank(), dist.get_world_size(), dist)
    finally:
        if created:
            dist.destroy_process_group()
