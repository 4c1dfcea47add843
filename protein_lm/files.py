"""File input and output: the one home of atomic writes, the umask and the CSV/TSV delimiter rule.

Every result file is written to a temporary sibling (same folder, so same file system) and renamed
onto its name only when complete (`os.replace`), so a reader never sees half a file and a failed
or killed write leaves the old file (or nothing) in place:

- `atomic_write_text` for text, `atomic_file` for anything a library writes to a path (numpy,
  parquet, `torch.save`, safetensors, downloads); temporary files are
  `.<name>.<pid>@<host>.<random>.tmp`, and those of killed runs are removed by the next write;
- `atomic_output_dir` for a whole folder (a training run), `.<name>.<pid>.<random>.tmp`, whose
  leftovers from killed runs are removed by the next run into the same output;
- `staged_files` for files written by a library into a folder that already holds others
  (a TF checkpoint beside a model card): written to a hidden subfolder, then moved in.

Results get the permissions of a plain `open()`/`mkdir` (0666/0777 minus the umask), not the
0600/0700 of `tempfile`. Tables: `sniff_delimiter` is the one rule (tab for `.tsv`/`.tab` or a
header line holding a tab, else comma) for training tables, predict input and mutation files.
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import itertools
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from protein_lm.errors import InvalidInputError

__all__ = [
    "TAB_SUFFIXES",
    "current_umask",
    "read_text",
    "atomic_write_text",
    "atomic_file",
    "atomic_output_dir",
    "staged_files",
    "sniff_delimiter",
    "read_rows",
    "read_cells",
    "output_lock",
]

log = logging.getLogger(__name__)

TAB_SUFFIXES = (".tsv", ".tab")


def current_umask() -> int:
    """The process umask (read by setting it and restoring it at once)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def read_text(path: str | os.PathLike[str]) -> str:
    """The text of a UTF-8 file (a leading byte-order mark is dropped).

    Raises `InvalidInputError` naming the file, the line and the byte offset of the first byte
    that is not UTF-8 (e.g. a Latin-1 export), instead of a bare `UnicodeDecodeError`.
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InvalidInputError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save the file as UTF-8"
        ) from None


def _owner() -> str:
    """`<pid>@<host>` of this process, for temporary names (no dots, so the name parses)."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname().split(".")[0]) or "host"
    return f"{os.getpid()}@{host}"


def _remove_dead_temp_files(path: Path) -> None:
    """Delete `.<name>.<pid>@<host>.<random>.tmp` files of `path` whose writer is dead.

    One glob on the exact name (no folder scan). Only this host's pids can be checked: a temp
    file of another host (a shared file system) may be a live write, and is kept.
    """
    pid_now, _, host = _owner().partition("@")
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*@{glob.escape(host)}.*.tmp"):
        middle = tmp.name[len(path.name) + 2 : -len(".tmp")]
        owner, _, rand = middle.partition(".")
        pid, _, their_host = owner.partition("@")
        if (
            "." in rand
            or their_host != host
            or not pid.isdigit()
            or pid == pid_now
            or _pid_alive(int(pid))
            or not tmp.is_file()
        ):
            continue  # another output's temp (a longer name), or a live write
        log.info("Removing %s, left behind by an interrupted run", tmp)
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path` that replaces `path` only if the block succeeds.

    Write the whole file to the yielded path (by name or by opening it; it exists, empty). On
    success it gets 0666 minus the umask and is renamed onto `path`; on any exception (Ctrl-C
    included) it is deleted and `path` is left as it was. The folder of `path` must exist. A
    symlink `path` is written through (its target is replaced, the link stays). The temporary
    file is `.<name>.<pid>@<host>.<random>.tmp`; ones of the same `path` left by killed
    processes of this host are removed first (a process killed mid-write cannot clean up).
    """
    path = Path(os.path.realpath(path))  # os.replace onto a link would replace the link
    _remove_dead_temp_files(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_owner()}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        # mkstemp makes 0600, and a library may have replaced the file: set the mode last.
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write `text` to `path` via a temporary file in the same folder and an atomic rename.

    The file gets the permissions a plain `open()` would give it (0666 minus the umask).
    """
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)


def _follow_umask(root: Path) -> None:
    """Give `root` and everything under it the permissions a plain `open`/`mkdir` would.

    `tempfile.mkdtemp`/`mkstemp` (used here and by libraries writing checkpoints) create 0700
    folders and 0600 files; results must instead follow the user's umask (0755/0644 at 022).
    """
    mask = current_umask()
    os.chmod(root, 0o777 & ~mask)
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            os.chmod(os.path.join(folder, d), 0o777 & ~mask)
        for f in files:
            os.chmod(os.path.join(folder, f), 0o666 & ~mask)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _remove_stale(final: Path) -> None:
    """Delete temporary siblings of `final` left by killed runs (`.<name>.<pid>.<random>.tmp`).

    A folder whose writer process is still alive (another run into the same output) is kept;
    folders without a pid in the name (older versions) are always stale.
    """
    for stale in final.parent.glob(f".{glob.escape(final.name)}.*"):
        middle = stale.name[len(final.name) + 2 :]
        if not stale.is_dir() or not (middle.endswith(".tmp") or middle.startswith("old-")):
            continue
        pid = middle.removeprefix("old-").split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
            continue
        log.info("Removing %s, left behind by an interrupted run", stale)
        shutil.rmtree(stale, ignore_errors=True)


# Lock files this process holds (path -> nesting depth): a library call inside a CLI run that
# already locked the same output passes (two flocks of one file in one process would conflict).
_HELD: dict[str, int] = {}


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def _not_writable(path: str | os.PathLike[str], exc: OSError) -> InvalidInputError:
    return InvalidInputError(
        f"Output {str(Path(path))!r} is not writable ({exc.strerror}); choose another output"
    )


def _shard_pids(lock: Path) -> str:
    """The live pids named by the shard lock files of the output locked by `lock`."""
    stem = glob.escape(lock.name.removesuffix(".lock"))
    pids = set()
    for part in lock.parent.glob(f"{stem}.shard-*.lock"):
        with contextlib.suppress(OSError):  # removed meanwhile by its finishing shard
            pids.add(part.read_text().strip())
    return ", ".join(sorted(p for p in pids if p.isdigit() and _pid_alive(int(p)))) or "unknown"


@contextlib.contextmanager
def _flock(lock: Path, output: Path, *, exclusive: bool) -> Iterator[None]:
    """Hold `fcntl.flock` on the file `lock` (created; our pid in it if exclusive) for a block."""
    import fcntl  # POSIX only (Linux, macOS); imported here so the package imports anywhere

    key = str(lock)
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~current_umask())
        except OSError as exc:
            raise _not_writable(output, exc) from None
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or _shard_pids(lock)
            os.close(fd)
            raise InvalidInputError(
                f"{output} is being written by another run (pid {holder}); wait for it or "
                "choose another output"
            ) from None
        # The previous holder may have removed the file between our open and flock: only a
        # lock on the file still at `lock` counts, else take the new one.
        with contextlib.suppress(FileNotFoundError):
            on_disk, ours = os.stat(lock), os.fstat(fd)
            if (on_disk.st_dev, on_disk.st_ino) == (ours.st_dev, ours.st_ino):
                break
        os.close(fd)
    # An exclusive holder names itself; shared holders (shards) clear it and are named by
    # their own shard lock files, so a finished shard's pid is never shown.
    os.ftruncate(fd, 0)
    if exclusive:
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        # Remove the file only if no shared holder is left (they keep it and their lock).
        with contextlib.suppress(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            lock.unlink(missing_ok=True)
        os.close(fd)


@contextlib.contextmanager
def output_lock(path: str | os.PathLike[str], shard: tuple[int, int] = (0, 1)) -> Iterator[None]:
    """Hold the advisory lock of output `path` (file or folder) for a block: one writer at a time.

    The lock is `fcntl.flock` on the sibling `.<name>.lock` holding the holder's pid (the name
    is that of the real path, so a symlink and its target are one output). A second writer gets
    `InvalidInputError` "... is being written by another run (pid N) ..." at once. Shards
    `(i, n)` with n > 1 (torchrun ranks, `--shard i/n` jobs) legitimately share one output:
    each holds the lock shared plus `.<name>.shard-<i>.lock` exclusively, so shards run
    together but not beside a whole-output run or a second copy of the same shard. Re-entrant
    within a process; the folder of `path` is created if missing (and removed at the end if
    still empty, so a refused run leaves nothing). A folder that cannot be made or written
    raises `InvalidInputError` "... is not writable ...".
    """
    final = Path(os.path.realpath(path))
    # Folders made only to hold the lock are removed again if the run wrote nothing into them:
    # a run refused with exit 2 creates nothing.
    made = list(itertools.takewhile(lambda d: not d.exists(), final.parents))
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where a folder should be, no permission
        raise _not_writable(path, exc) from None
    index, count = shard
    main = final.with_name(f".{final.name}.lock")
    with contextlib.ExitStack() as stack:
        for folder in reversed(made):  # callbacks run last-in first-out: deepest first
            stack.callback(_remove_if_empty, folder)
        stack.enter_context(_flock(main, Path(path), exclusive=count == 1))
        if count > 1:
            part = final.with_name(f".{final.name}.shard-{index}.lock")
            stack.enter_context(_flock(part, Path(path), exclusive=True))
        yield


@contextlib.contextmanager
def atomic_output_dir(
    path: str | os.PathLike[str], *, overwrite: bool = False, marker: str | None = None
) -> Iterator[Path]:
    """Yield a fresh temporary folder that replaces `path` only if the block succeeds.

    Raises `InvalidInputError` up front when `path` exists and is not empty (unless `overwrite`),
    so a run never mixes old and new files, and when `path` is a file (never replaced, even with
    `overwrite`: it is not a run's output). `overwrite` never replaces the current directory or
    one above it, and with `marker` (a file name every output of the run holds) only a folder
    holding that file: `--output-dir . --overwrite` must not delete the user's data. The
    temporary folder `.<name>.<pid>.<random>.tmp` sits beside `path` (same file system, so the
    final `os.replace` is a rename) and is deleted on any exception; ones left by killed runs
    (whose process is gone) are deleted on the next run.
    A symlink `path` is written through: its target is replaced and the link stays a link. The
    output is locked for the block (`output_lock`). The result follows the user's umask (not the
    0700/0600 of temporary files).
    """
    # The real path: a rename onto a symlink would replace the link, not the folder it names.
    final, shown = Path(os.path.realpath(path)), str(Path(path))
    with output_lock(path):
        if final.exists() and not final.is_dir():
            raise InvalidInputError(
                f"Output directory {shown!r} is a file, not a folder; remove it or choose "
                "another directory"
            )
        if final.exists() and any(final.iterdir()):
            if not overwrite:
                raise InvalidInputError(
                    f"Output directory {shown!r} already exists and is not empty; choose a new "
                    "directory or pass overwrite=True (CLI: --overwrite)"
                )
            _check_replaceable(final, shown, marker)
        _remove_stale(final)
        tmp = Path(
            tempfile.mkdtemp(
                dir=final.parent, prefix=f".{final.name}.{os.getpid()}.", suffix=".tmp"
            )
        )
        try:
            yield tmp
            _follow_umask(tmp)
            if final.exists():
                old = final.with_name(f".{final.name}.old-{os.getpid()}")
                os.replace(final, old)
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _check_replaceable(final: Path, shown: str, marker: str | None) -> None:
    """Refuse to replace a non-empty folder that is not an earlier output (see
    `atomic_output_dir`)."""
    here = Path(os.path.realpath(os.getcwd()))
    if here == final or final in here.parents:
        raise InvalidInputError(
            f"Output directory {shown!r} holds the current directory; --overwrite would delete "
            "it; choose a new directory"
        )
    if marker is not None and not (final / marker).is_file():
        raise InvalidInputError(
            f"Output directory {shown!r} is not an earlier run's output (no {marker}); "
            "--overwrite replaces only those; choose a new directory"
        )


@contextlib.contextmanager
def staged_files(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a hidden temporary folder inside `directory`; its files are moved in on success.

    For libraries that write several files into a folder (`save_pretrained`): each file is
    complete before it is renamed into `directory` (other files there are kept, same names are
    replaced). The temporary folder `.tmp-save-<random>` is removed whether or not the block
    succeeds. `directory` is created if missing.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".tmp-save-") as tmp:
        yield Path(tmp)
        for file in Path(tmp).iterdir():
            os.replace(file, out / file.name)


def sniff_delimiter(path: str | os.PathLike[str], header: str = "") -> str:
    """The delimiter of a table: tab for `.tsv`/`.tab` or a `header` line holding a tab, else ",".

    The one rule for every CSV/TSV reader (training tables, predict input, mutation files), so a
    tab-separated file named `.csv` is read the same way everywhere; writers pass no header.
    """
    if Path(path).suffix.lower() in TAB_SUFFIXES or "\t" in header:
        return "\t"
    return ","


def read_rows(path: str | os.PathLike[str], text: str | None = None) -> csv.DictReader[str]:
    """A `csv.DictReader` over a CSV/TSV file (or its already read `text`), by `sniff_delimiter`.

    Non-UTF-8 bytes raise `InvalidInputError` naming the file (see `read_text`).
    """
    if text is None:
        text = read_text(path)
    first = text.splitlines()[0] if text else ""
    return csv.DictReader(io.StringIO(text), delimiter=sniff_delimiter(path, first))


def read_cells(
    path: str | os.PathLike[str], text: str | None = None
) -> tuple[list[str], list[list[str]]]:
    """The header and data rows of a CSV/TSV as strings, exactly as written.

    No value is converted (`007` stays `007`, `NA` stays `NA`, an empty cell stays empty) and
    header names are kept as given (blank or repeated), unlike pandas. Blank lines are skipped;
    short rows are padded with empty cells; a row with more cells than the header raises
    `InvalidInputError` naming the file and line (pandas would silently make an index of them).
    """
    if text is None:
        text = read_text(path)
    first = text.splitlines()[0] if text else ""
    delimiter = sniff_delimiter(path, first)
    kind = "TSV" if delimiter == "\t" else "CSV"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header: list[str] = []
    rows: list[list[str]] = []
    try:
        for cells in reader:
            if not cells:
                continue
            if not header:
                header = cells
            elif len(cells) > len(header):
                raise InvalidInputError(
                    f"{path}: not a readable {kind} table (expected {len(header)} fields in line "
                    f"{reader.line_num}, saw {len(cells)})"
                )
            else:
                rows.append(cells + [""] * (len(header) - len(cells)))
    except csv.Error as exc:
        raise InvalidInputError(
            f"{path}: not a readable {kind} table (line {reader.line_num}: {exc})"
        ) from None
    return header, rows
