"""Fold a FASTA into a directory: one structure per record, `summary.csv`; resumable, shardable.

Layout of `output_dir`:

- `<id>.pdb` (or `.cif`) per folded record, written atomically (temp file + rename), so a file
  that exists is complete. pTM, mean pLDDT and timing are in its header (`read_metadata`).
- `<id>_scores.json` beside it: per-residue pLDDT, the PAE matrix, max_pae, pTM (and ipTM for
  multimers); schema in `protein_lm.folding.results`. Written atomically just before the
  structure file, so a structure file that exists has its scores.
- `errors/<id>.txt` for a record that could not be folded (reason and message); it is retried on
  the next run and removed once the record folds.
- `summary.csv`, rebuilt atomically from those files at the end of every run (also after Ctrl-C):
  one row per input record with `status` ok / failed / pending.
- `manifest.json` (`protein_lm.provenance`): the weights' fingerprint and the options that change
  structures (`num_recycles`); a run with other weights (same name or not) or options is refused.
- `provenance/<id>.sha256`: the hash of the sequence a structure was folded from, written just
  before its scores and structure files (per record, so shards and killed runs never lose it).

Resume: a rerun skips every record whose structure file, scores JSON and sequence hash exist and
whose sequence hash matches the input; any other record (edited sequence, a killed write, a
version without scores or hashes) has its old files removed first and is folded again. Sharding:
`shard=(i, n)` folds shard i's records (`protein_lm.distributed.deal`, weighted by length, so
shards get similar work); n processes or machines can share one output directory
(`protein_lm.distributed`: torchrun ranks or `--shard i/n` jobs; with `summary=False` a shard
leaves `summary.csv` to the process that merges, after every shard is done).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from protein_lm.distributed import deal, rank_device
from protein_lm.errors import InvalidInputError
from protein_lm.folding.esmfold import build_folder, folding_config, load_folding_model, prepare
from protein_lm.folding.options import FoldOptions, fold_options
from protein_lm.folding.results import (
    DEFAULT_MODEL,
    MAX_LENGTH,
    FoldFailure,
    FoldResult,
    scores_path,
)
from protein_lm.folding.structure import read_metadata
from protein_lm.limits import FOLD_BATCH_RESIDUES
from protein_lm.provenance import Manifest, claim, sequence_hash, weights_fingerprint
from protein_lm.sequences import FastaRecord, atomic_write_text, read_fasta

if TYPE_CHECKING:
    from transformers import EsmForProteinFolding

__all__ = [
    "BulkReport",
    "SUMMARY_COLUMNS",
    "fold_fasta",
    "write_summary",
    "safe_filename",
]

log = logging.getLogger(__name__)

SUMMARY_COLUMNS = ("id", "file", "length", "mean_plddt", "ptm", "seconds", "status", "message")
PROVENANCE_DIR = "provenance"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class BulkReport:
    """This process's shard: folded now, skipped (already done), failed; and the summary path."""

    output_dir: Path
    folded: int
    skipped: int
    failed: int
    summary: Path


def safe_filename(record_id: str) -> str:
    """`record_id` with characters unsafe in file names replaced by `_` (no leading dot, <= 200).

    Examples
    --------
    >>> safe_filename("sp|P69905|HBA_HUMAN")
    'sp_P69905_HBA_HUMAN'
    """
    name = _UNSAFE.sub("_", record_id)[:200]
    return "_" + name[1:] if name.startswith(".") else (name or "_")


def fold_fasta(
    input_fasta: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    model: EsmForProteinFolding | str | os.PathLike[str] = DEFAULT_MODEL,
    *,
    fmt: Literal["pdb", "cif"] = "pdb",
    shard: tuple[int, int] = (0, 1),
    options: FoldOptions | None = None,
    device: str | None = None,
    chunk_size: int | Literal["auto"] | None = "auto",
    max_tokens: int = FOLD_BATCH_RESIDUES,
    num_recycles: int | None = None,
    max_length: int | None = MAX_LENGTH,
    cpu_fallback: bool = True,
    progress: bool = True,
    summary: bool = True,
) -> BulkReport:
    """Fold every record of `input_fasta` (this process's shard) into `output_dir`; see module doc.

    Bad records (invalid letters, empty chains, too long, out of memory) are logged at WARNING
    (one line each: id, reason, message), written to `errors/` and `summary.csv`, and the run
    goes on; a final WARNING gives their number and the `errors/` folder. Folding arguments are
    those of `fold` (`options` or the keyword arguments, not both). `summary=False` skips
    rebuilding `summary.csv` (a torchrun rank: rank 0 rebuilds it with `write_summary` once every
    rank is done); the report's `summary` is its path.
    """
    if fmt not in ("pdb", "cif"):
        raise ValueError(f"`fmt` must be 'pdb' or 'cif', got {fmt!r}")
    options = fold_options(
        options,
        device=device,
        chunk_size=chunk_size,
        max_tokens=max_tokens,
        num_recycles=num_recycles,
        cpu_fallback=cpu_fallback,
    )
    options = replace(options, device=rank_device(options.device))
    records = read_fasta(input_fasta, validate_sequences=False)
    names = _file_names(records)
    hashes = {r.id: sequence_hash(r.sequence) for r in records}
    # Fingerprinted (weights validated) before the output is made: damaged weights create nothing.
    model, manifest = _manifest(model, options)
    out = _writable_dir(Path(output_dir))
    claim(out, manifest, replace_old=False)  # other weights or options: refused, one line
    mine = [records[k] for k in deal([len(r.sequence) for r in records], shard)]
    done = {r.id for r in mine if _complete(out, names[r.id], fmt, hashes[r.id])}
    todo = [r for r in mine if r.id not in done]
    _clear_old(out, [names[r.id] for r in todo], fmt)
    log.info(
        "%d records in shard %d/%d: %d already folded, %d to fold",
        len(mine),
        *shard,
        len(done),
        len(todo),
    )
    folded = failed = 0
    try:
        items, bad = prepare(todo, max_length=max_length)
        # Load the model before any record is reported, so a bad --model fails fast and cleanly.
        folder = build_folder(model, options) if items else None
        for failure in bad:
            _record_failure(out, names[failure.id], failure)
        failed += len(bad)
        from tqdm import tqdm  # text bar: works in terminals and notebooks without ipywidgets

        bar = tqdm(
            total=len(todo), initial=len(bad), disable=not progress, desc="fold", unit="seq"
        )
        with bar:
            results = folder.iter(items) if folder else iter(())
            for result in results:
                if isinstance(result, FoldFailure):
                    _record_failure(out, names[result.id], result)
                    failed += 1
                else:
                    # The hash first: a structure file that exists was folded from it (the old
                    # files of this record were removed above).
                    _mark_folded(out, names[result.id], hashes[result.id])
                    ok = _write(out, names[result.id], result, fmt)
                    folded, failed = folded + ok, failed + 1 - ok
                bar.update(1)
    finally:
        summary_path = write_summary(records, out, fmt, names) if summary else out / "summary.csv"
    log.info(
        "folded %d, skipped %d, failed %d; summary: %s", folded, len(done), failed, summary_path
    )
    if failed:
        log.warning(
            "%d record(s) not folded; one file per record in %s (reason and message), "
            "status in %s; a rerun retries them",
            failed,
            out / "errors",
            summary_path,
        )
    return BulkReport(out, folded, len(done), failed, summary_path)


def _clear_old(out: Path, names: list[str], fmt: str) -> None:
    """Remove the old files and temp files of the records about to be folded."""
    for name in names:  # temp files of a killed run of this shard (other shards' are left alone)
        path = out / f"{name}.{fmt}"
        # A structure of another sequence (or of unknown provenance) goes before it is redone.
        for old in (_hash_path(out, name), path, scores_path(path)):
            old.unlink(missing_ok=True)
        for target in (path, scores_path(path)):
            for stale in out.glob(f".{target.name}.*.tmp"):
                stale.unlink(missing_ok=True)


def write_summary(
    records: list[FastaRecord], out: Path, fmt: str, names: dict[str, str] | None = None
) -> Path:
    """Rebuild `summary.csv` from the structure files and error markers in `out` (atomic)."""
    names = names or _file_names(records)
    hashes = {r.id: sequence_hash(r.sequence) for r in records}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for rec in records:
        path, err = out / f"{names[rec.id]}.{fmt}", out / "errors" / f"{names[rec.id]}.txt"
        row = {"id": rec.id, "length": sum(c.isalpha() for c in rec.sequence), "status": "pending"}
        if _complete(out, names[rec.id], fmt, hashes[rec.id]):
            meta = read_metadata(path)
            row.update(
                file=path.name,
                status="ok",
                **{k: meta.get(k, "") for k in ("length", "mean_plddt", "ptm", "seconds")},
            )
        elif err.exists():
            reason, _, message = err.read_text(encoding="utf-8").partition("\t")
            row.update(status=f"failed:{reason}", message=message.strip())
        writer.writerow(row)
    summary = out / "summary.csv"
    atomic_write_text(summary, buf.getvalue())
    return summary


# ---------------------------------------------------------------- private helpers
def _writable_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InvalidInputError(
            f"Output directory {str(path)!r} is not writable ({exc.strerror}); "
            "choose another -o/--output-dir"
        ) from None
    return path


def _file_names(records: list[FastaRecord]) -> dict[str, str]:
    names: dict[str, str] = {}
    owner: dict[str, str] = {}
    for rec in records:
        name = safe_filename(rec.id)
        key = name.lower()  # case-insensitive file systems (macOS, Windows) would merge these too
        if key in owner and owner[key] != rec.id:
            raise InvalidInputError(
                f"Records {owner[key]!r} and {rec.id!r} map to the same file name "
                f"{name!r}; make their ids differ in letters, digits, '.', '_' or '-'"
            )
        owner[key], names[rec.id] = rec.id, name
    return names


def _manifest(
    model: EsmForProteinFolding | str | os.PathLike[str], options: FoldOptions
) -> tuple[EsmForProteinFolding | str, Manifest]:
    """The model (`tiny` built, to fingerprint its tensors) and the manifest of this run."""
    opts = {"num_recycles": options.num_recycles}
    if isinstance(model, (str, os.PathLike)) and str(model) != "tiny":
        name = str(model)  # its safetensors files are hashed (and validated), not loaded yet
        weights = weights_fingerprint(name)
        folding_config(name)  # an ESM-2 or classifier folder: refused before anything is made
        return name, Manifest.of(weights, opts, model=name)
    name = "tiny" if isinstance(model, (str, os.PathLike)) else ""
    if name:  # random weights: built (small) so that its tensors are hashed
        model = load_folding_model("tiny", device=options.device)
    return model, Manifest.of(weights_fingerprint(model), opts, model=name)


def _hash_path(out: Path, name: str) -> Path:
    return out / PROVENANCE_DIR / f"{name}.sha256"


def _complete(out: Path, name: str, fmt: str, seq_hash: str) -> bool:
    """The structure file and its scores JSON exist (each written atomically), folded from the
    sequence hashing to `seq_hash`."""
    path = out / f"{name}.{fmt}"
    try:
        folded_from = _hash_path(out, name).read_text(encoding="utf-8").strip()
    except OSError:
        return False
    return folded_from == seq_hash and path.exists() and scores_path(path).exists()


def _write(out: Path, name: str, result: FoldResult, fmt: str) -> int:
    """Structure file and scores JSON (`FoldResult.write`); a failure is recorded, not raised."""
    try:
        result.write(out / f"{name}.{fmt}", fmt)  # type: ignore[arg-type]
    except Exception as exc:
        _record_failure(out, name, FoldFailure(result.id, result.sequence, "write", str(exc)))
        return 0
    (out / "errors" / f"{name}.txt").unlink(missing_ok=True)
    return 1


def _mark_folded(out: Path, name: str, seq_hash: str) -> None:
    """Record that `name`'s files were folded from the sequence hashing to `seq_hash`."""
    (out / PROVENANCE_DIR).mkdir(exist_ok=True)
    atomic_write_text(_hash_path(out, name), seq_hash + "\n")


def _record_failure(out: Path, name: str, failure: FoldFailure) -> None:
    message = " ".join(failure.message.split())  # one line per record
    log.warning("%s: not folded (%s): %s", failure.id, failure.reason, message)
    (out / "errors").mkdir(exist_ok=True)
    atomic_write_text(out / "errors" / f"{name}.txt", f"{failure.reason}\t{failure.message}\n")
