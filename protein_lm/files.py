"""File input and output: the one home of atomic writes, the umask and the CSV/TSV delimiter rule.

Every result file is written to a temporary sibling (same folder, so same file system) and renamed
onto its name only when complete (`os.replace`), so a reader never sees half a file and a failed
or killed write leaves the old file (or nothing) in place:

- `atomic_write_text` for text, `atomic_file` for anything a library writes to a path (numpy,
  parquet, `torch.save`, safetensors, downloads); temporary files are `.<name>.<random>.tmp`;
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
import logging
import os
import shutil
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


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path` that replaces `path` only if the block succeeds.

    Write the whole file to the yielded path (by name or by opening it; it exists, empty). On
    success it gets 0666 minus the umask and is renamed onto `path`; on any exception (Ctrl-C
    included) it is deleted and `path` is left as it was. The folder of `path` must exist.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


@contextlib.contextmanager
def atomic_output_dir(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder that replaces `path` only if the block succeeds.

    Raises `InvalidInputError` up front when `path` exists and is not empty (unless `overwrite`),
    so a run never mixes old and new files. The temporary folder `.<name>.<pid>.<random>.tmp`
    sits beside `path` (same file system, so the final `os.replace` is a rename) and is deleted on
    any exception; ones left by killed runs (whose process is gone) are deleted on the next run.
    The result follows the user's umask (not the 0700/0600 of temporary files).
    """
    final = Path(path)
    if final.exists() and (not final.is_dir() or any(final.iterdir())) and not overwrite:
        raise InvalidInputError(
            f"Output directory {str(final)!r} already exists and is not empty; choose a new "
            "directory or pass overwrite=True (CLI: --overwrite)"
        )
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(final)
    tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.{os.getpid()}.",
                                suffix=".tmp"))
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
                    f"{reader.line_num}, saw {len(cells)})")
            else:
                rows.append(cells + [""] * (len(header) - len(cells)))
    except csv.Error as exc:
        raise InvalidInputError(f"{path}: not a readable {kind} table (line {reader.line_num}: "
                                f"{exc})") from None
    return header, rows
