"""ESM-2 alphabet, sequence validation and FASTA read/write.

Validation policy (`validate`):

- lowercase letters are upper-cased;
- whitespace and digits (line numbers, GenBank-style blocks) are removed;
- alignment gaps `-` and `.` are removed (`gaps="remove"`, default), kept (`"keep"`: both are in
  the ESM vocabulary) or rejected (`"error"`);
- one terminal stop `*` is removed; a `*` anywhere else is an error;
- the rare letters X, B, Z, U, O are kept (they are in the ESM-2 vocabulary);
- anything else raises `InvalidSequenceError` naming the record and the 1-based position.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from protein_lm.errors import InvalidInputError, InvalidSequenceError
from protein_lm.files import atomic_write_text, current_umask, read_text

__all__ = [
    "ESM2_TOKENS",
    "SPECIAL_TOKENS",
    "STANDARD_AA",
    "RARE_AA",
    "CLS_ID",
    "PAD_ID",
    "EOS_ID",
    "UNK_ID",
    "MASK_ID",
    "FastaRecord",
    "validate",
    "read_fasta",
    "write_fasta",
    "as_records",
    # re-exported from `protein_lm.files`, their home; kept here for existing imports
    "read_text",
    "atomic_write_text",
    "current_umask",
]

# The ESM-2 vocabulary in id order (fair-esm `Alphabet.from_architecture("ESM-1b")`, transformers'
# facebook/esm2_* vocab.txt). Single source of truth for every id in this package.
ESM2_TOKENS: tuple[str, ...] = (
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D",
    "P", "K", "Q", "N", "F", "Y", "M", "H", "W", "C",
    "X", "B", "U", "Z", "O", ".", "-",
    "<null_1>", "<mask>",
)  # fmt: skip
SPECIAL_TOKENS: tuple[str, ...] = ("<cls>", "<pad>", "<eos>", "<unk>", "<mask>")
STANDARD_AA = "ACDEFGHIKLMNPQRSTVWY"
RARE_AA = "XBZUO"
CLS_ID, PAD_ID, EOS_ID, UNK_ID, MASK_ID = 0, 1, 2, 3, 32

_ALLOWED = frozenset(STANDARD_AA + RARE_AA)
_GAPS = frozenset("-.")
_DROP = frozenset(" \t\r\n\v\f0123456789")


@dataclass(frozen=True)
class FastaRecord:
    """One FASTA record: `id` is the header up to the first whitespace, `description` the rest."""

    id: str
    sequence: str
    description: str = ""


def validate(
    seq: str,
    record_id: str = "sequence",
    *,
    gaps: Literal["remove", "keep", "error"] = "remove",
    allow_mask: bool = False,
) -> str:
    """Return the cleaned, upper-case sequence or raise `InvalidSequenceError` (see module doc).

    `allow_mask=True` keeps `<mask>` tokens (for masked-LM scoring inputs).

    Examples
    --------
    >>> validate("mkt ayi akq*")
    'MKTAYIAKQ'
    """
    if not isinstance(seq, str):
        raise InvalidSequenceError(
            f"Sequence of {record_id!r} must be a str, got {type(seq).__name__}"
        )
    if gaps not in ("remove", "keep", "error"):
        raise ValueError(f"`gaps` must be 'remove', 'keep' or 'error', got {gaps!r}")
    out: list[str] = []
    i, n = 0, len(seq)
    # Position of the last non-ignorable character, so a trailing "*\n" counts as terminal.
    last = n - 1
    while last >= 0 and seq[last] in _DROP:
        last -= 1
    while i < n:
        ch = seq[i]
        if ch in _DROP:
            i += 1
            continue
        if allow_mask and seq.startswith("<mask>", i):
            out.append("<mask>")
            i += 6
            continue
        up = ch.upper()
        if up in _ALLOWED:
            out.append(up)
        elif ch in _GAPS:
            if gaps == "keep":
                out.append(ch)
            elif gaps == "error":
                raise InvalidSequenceError(
                    f"Gap {ch!r} at position {i + 1} of {record_id!r}; gaps are not allowed here "
                    "(use gaps='remove' to drop them)"
                )
        elif ch == "*":
            if i != last:
                raise InvalidSequenceError(
                    f"Internal stop '*' at position {i + 1} of {record_id!r}; "
                    "only one terminal '*' "
                    "is allowed (it is removed)"
                )
        else:
            raise InvalidSequenceError(
                f"Invalid residue {ch!r} at position {i + 1} of {record_id!r}; allowed: the 20 "
                f"standard amino acids {STANDARD_AA}, the rare letters {RARE_AA}, gaps '-'/'.', "
                "a terminal '*', whitespace and digits (removed)"
            )
        i += 1
    if not out:
        raise InvalidSequenceError(f"Sequence of {record_id!r} is empty after cleaning")
    return "".join(out)


def _iter_fasta_lines(text: str) -> Iterator[tuple[int, str]]:
    for lineno, line in enumerate(text.splitlines(), start=1):  # handles \r\n and \r
        yield lineno, line.strip()


def read_fasta(
    source: str | os.PathLike[str],
    *,
    validate_sequences: bool = True,
    on_duplicate: Literal["error", "warn", "keep"] = "error",
    gaps: Literal["remove", "keep", "error"] = "remove",
) -> list[FastaRecord]:
    """Read a FASTA file (or FASTA text starting with '>') into records.

    Handles multi-line sequences, blank lines and Windows line endings. Empty records, text before
    the first header and (by default) duplicate ids raise `InvalidInputError` with the line number.
    """
    import warnings

    if isinstance(source, str) and source.lstrip().startswith(">"):
        text, name = source, "<string>"
    else:
        path = Path(source)
        if not path.is_file():
            raise InvalidInputError(f"FASTA file not found: {path}")
        text, name = read_text(path), str(path)
    records: list[FastaRecord] = []
    seen: dict[str, int] = {}
    header: tuple[int, str] | None = None
    chunks: list[str] = []

    def flush() -> None:
        if header is None:
            return
        lineno, head = header
        rid, _, desc = head.partition(" ")
        rid = rid.strip()
        if not rid:
            raise InvalidInputError(f"{name}, line {lineno}: header has no id")
        seq = "".join(chunks)
        if not seq:
            raise InvalidInputError(f"{name}, line {lineno}: record {rid!r} has an empty sequence")
        if rid in seen:
            msg = f"{name}, line {lineno}: duplicate id {rid!r} (first seen at line {seen[rid]})"
            if on_duplicate == "error":
                raise InvalidInputError(msg + "; ids must be unique")
            if on_duplicate == "warn":
                warnings.warn(msg, stacklevel=3)
        else:
            seen[rid] = lineno
        if validate_sequences:
            try:
                seq = validate(seq, rid, gaps=gaps)
            except InvalidSequenceError as exc:
                raise InvalidSequenceError(f"{name}, line {lineno}: {exc}") from None
        records.append(FastaRecord(rid, seq, desc.strip()))

    for lineno, line in _iter_fasta_lines(text):
        if not line:
            continue
        if line.startswith(">"):
            flush()
            header, chunks = (lineno, line[1:].strip()), []
        elif line.startswith(";"):
            continue  # old-style FASTA comment
        elif header is None:
            raise InvalidInputError(
                f"{name}, line {lineno}: sequence data before the first '>' header"
            )
        else:
            chunks.append(line)
    flush()
    if not records:
        raise InvalidInputError(f"{name}: no FASTA records found")
    return records


def as_records(
    sequences: str | Mapping[str, str] | Iterable[str | FastaRecord] | os.PathLike[str],
    *,
    validate_sequences: bool = True,
    unique: bool = False,
) -> list[FastaRecord]:
    """Normalise a sequence, FASTA path/text, `{id: seq}` mapping or iterable into records.

    Bare strings get ids `seq0`, `seq1`, ... A str is FASTA when it starts with '>' or names a
    file (see `_names_a_file`). Sequences are validated unless `validate_sequences=False` (folding
    checks its `A:B` multimer syntax itself); `unique=True` refuses duplicate ids (FASTA files
    always do).
    """
    if isinstance(sequences, os.PathLike) or (
        isinstance(sequences, str)
        and (sequences.lstrip().startswith(">") or _names_a_file(sequences))
    ):
        return read_fasta(sequences, validate_sequences=validate_sequences)
    check = validate if validate_sequences else (lambda seq, record_id: seq)
    if isinstance(sequences, str):
        out = [FastaRecord("seq0", check(sequences, "seq0"))]
    elif isinstance(sequences, Mapping):
        out = [FastaRecord(str(k), check(v, str(k))) for k, v in sequences.items()]
    else:
        out = [
            FastaRecord(item.id, check(item.sequence, item.id), item.description)
            if isinstance(item, FastaRecord)
            else FastaRecord(f"seq{i}", check(item, f"seq{i}"))
            for i, item in enumerate(sequences)
        ]
    if unique:
        seen: set[str] = set()
        dup: set[str] = set()
        for r in out:  # a set, not list.count per id: linear in the number of records
            if r.id in seen:
                dup.add(r.id)
            seen.add(r.id)
        if dup:
            raise InvalidInputError(f"Duplicate record ids {sorted(dup)}; ids must be unique")
    return out


def _names_a_file(text: str) -> bool:
    """A FASTA file name (by suffix, even if missing, so the error says 'not found') or a file."""
    if "\n" in text or len(text) > 4096:
        return False
    if Path(text).suffix.lower() in (".fa", ".fasta", ".faa", ".fas", ".fna"):
        return True
    try:
        return Path(text).is_file()
    except OSError:  # e.g. a long sequence is too long for a file name
        return False


def write_fasta(
    records: Iterable[FastaRecord | tuple[str, str]], path: str | os.PathLike[str], width: int = 60
) -> None:
    """Write records to `path` atomically, sequences wrapped at `width` columns (0: none)."""
    lines = []
    for rec in records:
        rid, seq, desc = (
            (rec.id, rec.sequence, rec.description)
            if isinstance(rec, FastaRecord)
            else (rec[0], rec[1], "")
        )
        lines.append(f">{rid} {desc}".rstrip())
        step = width if width > 0 else max(len(seq), 1)
        lines.extend(seq[i : i + step] for i in range(0, len(seq), step))
    atomic_write_text(path, "\n".join(lines) + "\n")
