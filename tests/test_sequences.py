from __future__ import annotations

from pathlib import Path

import pytest

from protein_lm.errors import InvalidInputError, InvalidSequenceError
from protein_lm.sequences import (
    ESM2_TOKENS,
    STANDARD_AA,
    FastaRecord,
    as_records,
    read_fasta,
    read_text,
    validate,
    write_fasta,
)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("mktayiakq", "MKTAYIAKQ"),
        ("MKT AYI\nAKQ\t", "MKTAYIAKQ"),
        ("1 MKTAYI 7 AKQ 10", "MKTAYIAKQ"),
        ("MK-T.A", "MKTA"),
        ("MKTA*", "MKTA"),
        ("MKTA*\n", "MKTA"),
        ("MXBZUO", "MXBZUO"),
    ],
    ids=["lower", "whitespace", "digits", "gaps", "stop", "stop-newline", "rare"],
)
def test_validate_policy(raw: str, clean: str) -> None:
    assert validate(raw) == clean


def test_validate_keeps_gaps_and_masks_on_request() -> None:
    assert validate("MK-T.A", gaps="keep") == "MK-T.A"
    assert validate("MK<mask>A", allow_mask=True) == "MK<mask>A"
    with pytest.raises(InvalidSequenceError, match="Gap '-' at position 3"):
        validate("MK-T", gaps="error")


@pytest.mark.parametrize(
    ("raw", "pattern"),
    [
        ("MKJA", r"Invalid residue 'J' at position 3 of 'rec1'"),
        ("MK*A", r"Internal stop '\*' at position 3 of 'rec1'"),
        ("MK#", r"Invalid residue '#' at position 3"),
        ("  12 ", r"empty after cleaning"),
        ("", r"empty after cleaning"),
    ],
    ids=["J", "internal-stop", "symbol", "only-digits", "empty"],
)
def test_validate_errors_name_record_and_position(raw: str, pattern: str) -> None:
    with pytest.raises(InvalidSequenceError, match=pattern):
        validate(raw, "rec1")


def test_invalid_sequence_error_is_value_error() -> None:
    with pytest.raises(ValueError):
        validate("MKJ")


def test_read_fasta_multiline_blank_lines_crlf(tmp_path: Path) -> None:
    p = tmp_path / "x.fasta"
    p.write_bytes(b">a first protein\r\nMKT\r\nAYI\r\n\r\n>b\r\n\r\nmk\r\n")
    recs = read_fasta(p)
    assert recs == [FastaRecord("a", "MKTAYI", "first protein"), FastaRecord("b", "MK", "")]


def test_read_fasta_reports_duplicates_and_empty_records(tmp_path: Path) -> None:
    p = tmp_path / "dup.fasta"
    p.write_text(">a\nMK\n>b\nAA\n>a\nMM\n")
    with pytest.raises(InvalidInputError, match=r"line 5: duplicate id 'a' \(first seen at line 1\)"):
        read_fasta(p)
    with pytest.warns(UserWarning, match="duplicate id"):
        assert len(read_fasta(p, on_duplicate="warn")) == 3
    p.write_text(">a\nMK\n>empty\n\n>c\nAA\n")
    with pytest.raises(InvalidInputError, match=r"line 3: record 'empty' has an empty sequence"):
        read_fasta(p)


def test_read_fasta_bad_residue_names_file_line_and_record(tmp_path: Path) -> None:
    p = tmp_path / "bad.fasta"
    p.write_text(">ok\nMK\n>bad\nMKJ\n")
    with pytest.raises(InvalidSequenceError, match=r"bad.fasta, line 3: Invalid residue 'J' at position 3 of 'bad'"):
        read_fasta(p)


def test_read_fasta_rejects_text_before_header_and_no_records(tmp_path: Path) -> None:
    p = tmp_path / "x.fasta"
    p.write_text("MKT\n>a\nMK\n")
    with pytest.raises(InvalidInputError, match="before the first '>'"):
        read_fasta(p)
    p.write_text("\n\n")
    with pytest.raises(InvalidInputError, match="no FASTA records"):
        read_fasta(p)


def test_write_read_round_trip(tmp_path: Path) -> None:
    recs = [FastaRecord("p1", "M" * 130, "desc here"), FastaRecord("p2", "ACDEFGHIKLMNPQRSTVWY")]
    out = tmp_path / "out.fasta"
    write_fasta(recs, out, width=60)
    lines = out.read_text().splitlines()
    assert max(len(line) for line in lines if not line.startswith(">")) == 60
    assert read_fasta(out) == recs
    assert not list(tmp_path.glob("*.tmp"))


def test_as_records_accepts_str_mapping_list_and_fasta(tmp_path: Path) -> None:
    assert as_records("mkt") == [FastaRecord("seq0", "MKT")]
    assert [r.id for r in as_records({"x": "MK", "y": "AA"})] == ["x", "y"]
    assert as_records(["MK", "AA"])[1] == FastaRecord("seq1", "AA")
    p = tmp_path / "a.fasta"
    p.write_text(">z\nMK\n")
    assert as_records(p) == [FastaRecord("z", "MK")]
    assert as_records(">q\nAA\n") == [FastaRecord("q", "AA")]


def test_as_records_raw_and_unique_options(tmp_path: Path) -> None:
    """Folding's use: multimer `A:B` kept as given, duplicate ids refused (linear check)."""
    assert as_records(["MK:AA"], validate_sequences=False) == [FastaRecord("seq0", "MK:AA")]
    p = tmp_path / "m.FASTA"  # suffix case and .fna are FASTA names too
    p.write_text(">d\nMK:AA\n")
    assert as_records(str(p), validate_sequences=False) == [FastaRecord("d", "MK:AA")]
    with pytest.raises(InvalidInputError, match="not found"):
        as_records(str(tmp_path / "missing.fna"))
    recs = [FastaRecord("x", "MK"), FastaRecord("y", "AA"), FastaRecord("x", "GG")]
    assert len(as_records(recs)) == 3  # no check unless asked (embed names both records itself)
    with pytest.raises(InvalidInputError, match=r"Duplicate record ids \['x'\]; ids must be unique"):
        as_records(recs, unique=True)
    long = "M" + STANDARD_AA * 15  # longer than a file name may be: not mistaken for a path
    assert as_records(long) == [FastaRecord("seq0", long)]


def test_alphabet_constants() -> None:
    assert len(ESM2_TOKENS) == 33
    assert [ESM2_TOKENS[i] for i in (0, 1, 2, 3, 32)] == ["<cls>", "<pad>", "<eos>", "<unk>", "<mask>"]


def test_non_utf8_fasta_names_file_line_and_offset(tmp_path: Path) -> None:
    p = tmp_path / "latin1.fasta"
    p.write_bytes(">p1\nMKT\n>p2 prot\xe9ine\nMKV\n".encode("latin-1"))
    with pytest.raises(InvalidInputError,
                       match=r"latin1.fasta, line 3: not UTF-8 text \(byte 0xe9 at offset 16\)"):
        read_fasta(p)


def test_read_text_drops_bom(tmp_path: Path) -> None:
    p = tmp_path / "bom.fasta"
    p.write_bytes(b"\xef\xbb\xbf>a\nMKT\n")
    assert read_text(p) == ">a\nMKT\n"
    assert read_fasta(p) == [FastaRecord("a", "MKT")]


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        write_fasta([("a", "MKT")], tmp_path / "a.fasta")
        os.umask(0o077)
        write_fasta([("a", "MKT")], tmp_path / "b.fasta")
    finally:
        os.umask(old)
    assert (tmp_path / "a.fasta").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.fasta").stat().st_mode & 0o777 == 0o600
