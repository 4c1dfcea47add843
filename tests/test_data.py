"""Data loaders on the real bundled files, the lookup order, and the CLI table format."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from protein_lm import data
from protein_lm.errors import DataNotFoundError, InvalidInputError


def test_deeploc_raw_counts(shared_data: Path) -> None:
    assert len(data.read_deeploc("validation")) == 1678
    test = data.read_deeploc("test")
    assert len(test) == 2768
    assert {r["membrane"] for r in test} == {"M", "S", "U"}


def test_deeploc_localization_split_is_seeded_and_drops_dual_locations(shared_data: Path) -> None:
    a = data.load_deeploc(seed=0)
    b = data.load_deeploc(seed=0)
    c = data.load_deeploc(seed=1)
    assert len(a["train"]) + len(a["validation"]) == 1678 - 23
    assert len(a["test"]) == 2768
    assert a["validation"]["id"] == b["validation"]["id"] != c["validation"]["id"]
    assert not set(a["train"]["id"]) & set(a["validation"]["id"])
    assert len(set(a["train"]["label"])) == 10
    assert not any("-" in lab for lab in a["train"]["label"])


def test_deeploc_membrane_task_drops_unknown(shared_data: Path) -> None:
    m = data.load_deeploc("membrane")
    assert set(m["test"]["label"]) == {"membrane", "soluble"}
    raw_ms = sum(r["membrane"] in "MS" for r in data.read_deeploc("test"))
    assert len(m["test"]) == raw_ms


def test_secondary_structure_splits_and_mask(secondary_structure) -> None:
    ss = secondary_structure  # data.load_secondary_structure(), parsed once (tests/conftest.py)
    assert {k: len(v) for k, v in ss.items()} == {"train": 9712, "validation": 1080, "test": 364}
    row = ss["test"][0]
    assert len(row["sequence"]) == len(row["label"]) == len(row["mask"])
    assert set("".join(ss["test"]["label"])) == {"H", "E", "C"}
    assert "0" in "".join(ss["test"]["mask"])  # unresolved residues exist and must be ignored


def test_secondary_structure_labels_are_token_aligned(secondary_structure) -> None:
    ss = secondary_structure["test"].select(range(3))
    enc, id2label = data.encode_labels(ss, "token-classification")
    assert id2label == {0: "C", 1: "E", 2: "H"}
    for row in enc:
        for lab, ch, m in zip(row["labels"], row["label"], row["mask"]):
            assert lab == (-100 if m == "0" else {"C": 0, "E": 1, "H": 2}[ch])


def test_blat_wild_type_matches_every_mutant(shared_data: Path) -> None:
    dms = data.load_blat()
    assert len(dms.data) == 4996 and dms.offset == 24
    for m in dms.data["mutant"]:
        assert dms.wild_type[int(m[1:-1]) - dms.offset] == m[0], m
    assert dms.wild_type == data._BLAT_WT  # the built-in fallback equals the file


def test_missing_file_error_names_file_folders_and_source(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PROTEIN_LM_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("PROTEIN_LM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "data_dirs", lambda: [tmp_path / "nowhere", tmp_path / "cache"])
    with pytest.raises(DataNotFoundError) as err:
        data.data_path("some_proteins.fasta", download=False)
    msg = str(err.value)
    assert "some_proteins.fasta" in msg and "nowhere" in msg and "facebookresearch/esm" in msg


def test_download_into_cache_checks_sha256(tmp_path: Path, monkeypatch, shared_data: Path) -> None:
    """The download path, served from a file:// URL (never the network)."""
    src = shared_data / "some_proteins.fasta"
    cache = tmp_path / "cache"
    monkeypatch.setattr(data, "data_dirs", lambda: [cache])
    monkeypatch.setattr(data, "_cache_dir", lambda: cache)
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    monkeypatch.setitem(data.SOURCES, "some_proteins.fasta", (src.as_uri(), sha, None))
    path = data.data_path("some_proteins.fasta")
    assert path == cache / "some_proteins.fasta" and path.read_bytes() == src.read_bytes()
    path.unlink()
    monkeypatch.setitem(data.SOURCES, "some_proteins.fasta", (src.as_uri(), "0" * 64, None))
    with pytest.raises(DataNotFoundError, match="SHA-256 does not match"):
        data.data_path("some_proteins.fasta")
    assert not path.exists()


def test_download_takes_a_member_of_a_gzipped_tar(tmp_path: Path, monkeypatch) -> None:
    """npm packages are .tgz: the 3D viewer's script comes out of one (file:// URL, no network)."""
    import io
    import tarfile

    body = b"var $3Dmol = {};"
    archive = tmp_path / "pkg.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, payload in (("package/build/viewer.js", body), ("package/README.md", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload))
    cache = tmp_path / "cache"
    monkeypatch.setattr(data, "data_dirs", lambda: [cache])
    monkeypatch.setattr(data, "_cache_dir", lambda: cache)
    sha = hashlib.sha256(body).hexdigest()
    monkeypatch.setitem(data.SOURCES, "viewers/viewer.js", (archive.as_uri(), sha, "viewer.js"))
    assert data.data_path("viewers/viewer.js").read_bytes() == body
    monkeypatch.setitem(data.SOURCES, "viewers/gone.js", (archive.as_uri(), sha, "gone.js"))
    with pytest.raises(DataNotFoundError, match="has no member 'gone.js'"):
        data.data_path("viewers/gone.js")


def test_read_table_round_trip(tmp_path: Path) -> None:
    import datasets

    ds = datasets.Dataset.from_list([
        {"id": "a", "sequence": "MKT", "label": "HEC", "mask": "011"},
        {"id": "b", "sequence": "AAAA", "label": "CCCC", "mask": "1111"},
    ])
    path = data.write_table(ds, tmp_path / "t.csv")
    back = data.read_table(path, "token-classification")
    assert back.to_list() == ds.to_list()
    tsv = data.write_table(ds, tmp_path / "t.tsv")
    assert data.read_table(tsv, "token-classification")["label"] == ["HEC", "CCCC"]


@pytest.mark.parametrize(
    ("content", "task", "pattern"),
    [
        ("", "regression", "file is empty"),
        ("seq,label\nMK,1\n", "regression", r"missing column\(s\) \['sequence'\]"),
        ("sequence,label,extra\nMK,1,2\n", "regression", r"unknown column\(s\) \['extra'\]"),
        ("sequence,label\nMK,abc\n", "regression", r"row 1 \(id 'row1'\), field 'label': 'abc' is not a number"),
        ("id,sequence,label\nx,MKJ,a\n", "sequence-classification", r"row 1 \(id 'x'\), field 'sequence'.*'J' at position 3"),
        ("sequence,label\nMK,HE\nMKT,HE\n", "token-classification", r"row 2 .*field 'label': 2 labels for a sequence of 3"),
        ("sequence,label,mask\nMK,HE,0\n", "token-classification", r"field 'mask': must be 2 characters"),
        ("id,sequence,label\na,MK,x\na,MK,y\n", "sequence-classification", "row 2 .*duplicate id"),
        ("sequence,label\n", "regression", "no data rows"),
    ],
    ids=["empty", "missing", "unknown", "nan-label", "bad-letter", "label-length", "mask", "dup", "no-rows"],
)
def test_read_table_errors_name_file_row_and_field(tmp_path: Path, content, task, pattern) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(InvalidInputError, match=pattern):
        data.read_table(p, task)


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "Infinity"])
def test_read_table_refuses_non_finite_regression_labels(tmp_path: Path, value: str) -> None:
    p = tmp_path / "nonfinite.csv"
    p.write_text(f"id,sequence,label\na,MK,1.5\nb,MKT,{value}\n")
    pattern = rf"nonfinite.csv, row 2 \(id 'b'\), field 'label': '{value}' is not a finite"
    with pytest.raises(InvalidInputError, match=pattern):
        data.read_table(p, "regression")


def test_read_table_refuses_token_table_with_nothing_labelled(tmp_path: Path) -> None:
    p = tmp_path / "unmasked.csv"
    p.write_text("sequence,label,mask\nMK,HE,00\nMKT,HEC,000\n")
    with pytest.raises(InvalidInputError, match=r"unmasked.csv: every 'mask' is all 0"):
        data.read_table(p, "token-classification")
    p.write_text("sequence,label,mask\nMK,HE,00\nMKT,HEC,010\n")  # one labelled residue is enough
    assert data.read_table(p, "token-classification")["mask"] == ["00", "010"]


def test_read_table_non_utf8_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "latin1.csv"
    p.write_bytes("sequence,label\nMKT,1\nMKV,37 \xb0C\n".encode("latin-1"))
    with pytest.raises(InvalidInputError,
                       match=r"latin1.csv, line 3: not UTF-8 text \(byte 0xb0 at offset 28\)"):
        data.read_table(p, "regression")


def test_encode_labels_errors(tmp_path: Path) -> None:
    import datasets

    one_class = datasets.Dataset.from_list([{"id": "a", "sequence": "MK", "label": "x"}] * 3)
    with pytest.raises(InvalidInputError, match="only one class"):
        data.encode_labels(one_class, "sequence-classification", source="train.csv")
    unseen = datasets.Dataset.from_list([{"id": "q", "sequence": "MK", "label": "z"}])
    with pytest.raises(InvalidInputError, match=r"val.csv, row 1 \(id 'q'\).*unknown class 'z'"):
        data.encode_labels(unseen, "sequence-classification", {"x": 0, "y": 1}, source="val.csv")
    tok = datasets.Dataset.from_list([{"id": "t", "sequence": "MK", "label": "HQ", "mask": "11"}])
    with pytest.raises(InvalidInputError, match="unknown class 'Q'"):
        data.encode_labels(tok, "token-classification", {"H": 0, "E": 1, "C": 2})


def test_class_balance_of_loaded_splits_is_plausible(secondary_structure) -> None:
    counts = Counter("".join(secondary_structure["test"]["label"]))
    assert 0.3 < counts["C"] / sum(counts.values()) < 0.5


def test_data_dirs_do_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue #15: a notebook, a test and a script anywhere search the same folders."""
    monkeypatch.delenv("PROTEIN_LM_DATA", raising=False)
    here = data.data_dirs()
    monkeypatch.chdir(tmp_path)
    assert data.data_dirs() == here
    assert not any(str(tmp_path.parent) in str(d) for d in here)
