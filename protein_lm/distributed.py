"""Ranks and shards for the bulk commands (`fold`, `embed`, `score`): torchrun and Slurm arrays.

A bulk run is split into `n` shards; shard `i` is one process's share of the records, dealt by
`deal` (balanced by length, the same share for the same input and `n`). Two ways to run the
shards:

- **torchrun** (one node or several): `torchrun --nproc-per-node N -m protein_lm.cli embed ...`.
  Each process takes shard `RANK/WORLD_SIZE`, runs on `cuda:LOCAL_RANK` (or the CPU), and
  `process_group()` joins them with the gloo backend (CPU tensors only, used for a barrier and
  to exchange small Python objects), so rank 0 can merge once every rank is done and is the
  only one to print the result.
- **Independent jobs** (e.g. a Slurm array): `--shard i/n` in job `i`; each writes its shard's
  files into the shared output, and a final run without `--shard` (after all of them) merges
  (it finds every shard finished and only writes the final file / summary).

`bulk_run` is the run skeleton the bulk commands share: process group, this process's shard and
device, then (`BulkRun.finish`) wait for every process and merge on rank 0.

Nothing here imports torch at module level; `torch.distributed` is imported only when a process
group is really needed (WORLD_SIZE > 1 under a launcher that sets MASTER_ADDR/MASTER_PORT).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import ModuleType
from typing import Any, TypeVar

from protein_lm.errors import InvalidInputError, require

__all__ = [
    "Group",
    "BulkRun",
    "check_shard",
    "deal",
    "parse_shard",
    "shard_from_env",
    "rank_device",
    "dist_timeout",
    "process_group",
    "bulk_run",
    "block",
]

log = logging.getLogger(__name__)

# Ranks wait for the slowest one at the end (shards are balanced by length, but a gap of an hour
# on a long fold is no error); a rank that died or hangs must not hold the others for gloo's
# 7-day default. PROTEIN_LM_DIST_TIMEOUT_S changes it.
DEFAULT_TIMEOUT_S = 4 * 3600


def dist_timeout() -> timedelta:
    """How long a rank waits for the others in one collective (PROTEIN_LM_DIST_TIMEOUT_S).

    Examples
    --------
    >>> dist_timeout().total_seconds() >= 1
    True
    """
    text = os.environ.get("PROTEIN_LM_DIST_TIMEOUT_S", "")
    try:
        seconds = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        seconds = -1
    if not seconds > 0:
        raise InvalidInputError(
            f"PROTEIN_LM_DIST_TIMEOUT_S must be a number of seconds > 0, got {text!r}"
        )
    return timedelta(seconds=seconds)


_T = TypeVar("_T")


def check_shard(index: int, count: int, message: str | None = None) -> tuple[int, int]:
    """`(index, count)` if 0 <= index < count, else `InvalidInputError` (a `ValueError`) with
    `message` (default: one naming the `shard` argument). The one check of a shard."""
    if not 0 <= index < count:
        raise InvalidInputError(
            message or f"`shard` must be (i, n) with 0 <= i < n, got {(index, count)}"
        )
    return index, count


def deal(costs: Sequence[float], shard: tuple[int, int]) -> list[int]:
    """Indices (in input order) of the items that shard `(i, n)` takes, of items costing `costs`.

    Greedy, longest first: items by cost descending (ties: lower index first), each to the shard
    with the least cost so far (ties: fewer items, then lower shard). Every index lands in
    exactly one shard, the same one for the same costs and `n`, and shard totals differ by at
    most the largest cost.

    Examples
    --------
    >>> [deal([5, 1, 4, 2, 3], (i, 2)) for i in range(2)]
    [[0, 1, 3], [2, 4]]
    """
    index, count = check_shard(*shard)
    if not all(0 <= c < math.inf for c in costs):
        raise ValueError("`costs` must be finite and >= 0")
    order = sorted(range(len(costs)), key=lambda k: (-costs[k], k))
    # A heap of (cost, items, shard): least loaded first; fewer items next spreads free items.
    loads = [(0.0, 0, s) for s in range(count)]
    mine = []
    for k in order:
        load, items, s = heapq.heappop(loads)
        if s == index:
            mine.append(k)
        heapq.heappush(loads, (load + costs[k], items + 1, s))
    return sorted(mine)


def parse_shard(text: str) -> tuple[int, int]:
    """Parse `i/n` (0 <= i < n) into `(i, n)`.

    Examples
    --------
    >>> parse_shard("1/4")
    (1, 4)
    """
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise InvalidInputError(f"--shard must look like 'i/n' (e.g. 0/4), got {text!r}") from None
    return check_shard(i, n, f"--shard {text!r}: need 0 <= i < n")


def shard_from_env() -> tuple[int, int]:
    """`(RANK, WORLD_SIZE)` as set by torchrun (or a wrapper that exports them), else `(0, 1)`."""
    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise InvalidInputError(
            f"RANK={os.environ.get('RANK')!r} and WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} "
            "must be integers"
        ) from None
    return check_shard(
        rank, world, f"RANK={rank}, WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE"
    )


def rank_device(device: str | None = None) -> str | None:
    """This process's device. Outside torchrun: `device`. Under torchrun (one GPU per process):
    a bare "cuda", or no device when CUDA is available, means `cuda:LOCAL_RANK` (a bare "cuda"
    would put every rank on cuda:0); an indexed or other device is kept; else None (the loader's
    default)."""
    if "LOCAL_RANK" not in os.environ:
        return device
    local = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    if device == "cuda":
        return local
    if device:
        return device
    torch = require("torch", "torch")
    return local if torch.cuda.is_available() else None


def block(n_items: int, shard: tuple[int, int]) -> range:
    """Contiguous block of `range(n_items)` for `shard=(i, n)`; sizes differ by at most one.
    (The bulk commands deal records with `deal` instead, balanced by length.)

    Examples
    --------
    >>> [list(block(5, (i, 2))) for i in range(2)]
    [[0, 1, 2], [3, 4]]
    """
    i, n = check_shard(*shard)
    return range(-(-n_items * i // n), -(-n_items * (i + 1) // n))  # ceil(N i / n) ..


@dataclass(frozen=True)
class Group:
    """This process's place among the processes of one run: `rank` of `world` (`world == 1`:
    alone). The collective methods are no-ops for a single process."""

    rank: int = 0
    world: int = 1
    _dist: ModuleType | None = None  # torch.distributed when a process group was joined

    @property
    def is_main(self) -> bool:
        """Rank 0: merges and prints."""
        return self.rank == 0

    @property
    def shard(self) -> tuple[int, int]:
        """`(rank, world)`: this process's shard under torchrun."""
        return self.rank, self.world

    def job_shard(self, text: str | None) -> tuple[int, int] | None:
        """The `--shard i/n` of an independent job (None when not given), parsed.

        Refused under torchrun, where each process already takes shard RANK/WORLD_SIZE.
        """
        if not text:
            return None
        if self.world > 1:
            raise InvalidInputError(
                "--shard is for independent jobs; under torchrun each process "
                "takes shard RANK/WORLD_SIZE (drop --shard)"
            )
        return parse_shard(text)

    def barrier(self) -> None:
        """Wait until every process got here; a timeout (`dist_timeout`) raises one clear line."""
        if self._dist is not None:
            try:
                self._dist.barrier()
            except RuntimeError as exc:
                if "timeout" not in str(exc).lower() and "timed out" not in str(exc).lower():
                    raise
                raise TimeoutError(
                    f"rank {self.rank} of {self.world} waited {dist_timeout()} for the other "
                    "processes: one of them died or hangs (see its log); for runs whose ranks "
                    "finish further apart, set PROTEIN_LM_DIST_TIMEOUT_S"
                ) from exc

    def all_gather(self, obj: _T) -> list[_T]:
        """Every process's `obj` (picklable, small), in rank order, on every process."""
        if self._dist is None:
            return [obj]
        out: list[Any] = [None] * self.world  # each None is replaced by a rank's `obj`
        self._dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: _T) -> _T:
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
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=dist_timeout())
    log.debug("rank %d of %d joined the process group", rank, world)
    try:
        yield Group(dist.get_rank(), dist.get_world_size(), dist)
    finally:
        if created:
            dist.destroy_process_group()


@dataclass(frozen=True)
class BulkRun:
    """This process's part of a bulk run (`bulk_run`): its `group`, its `shard` (a `--shard i/n`
    job's, else `group.shard`), its `device` (`rank_device`) and whether it shows `progress`
    (rank 0 only)."""

    group: Group
    shard: tuple[int, int]
    device: str | None
    progress: bool

    @property
    def partial(self) -> bool:
        """An independent `--shard i/n` job with n > 1: it writes only its shard, and a later run
        without `--shard` merges."""
        return self.group.world == 1 and self.shard[1] > 1

    def finish(self, part: _T, merge: Callable[[list[_T]], int]) -> int:
        """Once this process's shard is done: wait for every process, call `merge` on rank 0 with
        every process's `part` (small, picklable; rank order), and return its exit status on
        every process."""
        parts = self.group.all_gather(part)  # also a barrier: every shard is done
        code = merge(parts) if self.group.is_main else 0
        # The others wait here until rank 0 has merged (torchrun stops every process as soon as
        # one exits with an error), then all exit with rank 0's status.
        return int(self.group.broadcast(code))


@contextlib.contextmanager
def bulk_run(
    job_shard: str | None = None, device: str | None = None, *, progress: bool = True
) -> Iterator[BulkRun]:
    """The run skeleton of `fold`, `embed` and `score`: the process group (`process_group`), this
    process's shard (`--shard` text `job_shard`, refused under torchrun, else RANK/WORLD_SIZE)
    and device; the body does its shard, then returns `BulkRun.finish(part, merge)`."""
    with process_group() as group:
        shard = group.job_shard(job_shard) or group.shard
        yield BulkRun(group, shard, rank_device(device), progress and group.is_main)
