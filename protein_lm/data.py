"""Loaders for the bundled real data sets and the CLI's CSV/TSV training format.

Files are found, in order, in `$PROTEIN_LM_DATA`, in `../shared/data` beside the checkout (what
tests and CI use), and in the user cache (`$PROTEIN_LM_CACHE`, default `~/.cache/protein_lm`),
which is filled on first use by downloading the file from its public source and checking its
SHA-256. Offline with nothing found: `DataNotFoundError` naming the file, the folders searched and
the source address.

Data sets (see ../shared/data/README.md for provenance and licences):

- DeepLoc 1.0 (`load_deeploc`): the source ships a validation file (1,678) and a test file
  (2,768) but no training file, so train/validation are a seeded, stratified 90/10 split of the
  validation file. 10-class localisation drops the 23 dual-location records (`Cytoplasm-Nucleus`);
  membrane-vs-soluble drops records whose membrane flag is `U` (unknown).
- FLIP 3-state secondary structure (`load_secondary_structure`): the source's own split (train
  9,712, validation 1,080, test 364), per-residue labels H/E/C and a 0/1 resolved mask.
- BLAT beta-lactamase DMS (`load_blat`): 4,996 single mutants, fitness column `2500`, offset 24.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import os
import tarfile
import urllib.request
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from protein_lm.errors import DataNotFoundError, InvalidInputError, InvalidSequenceError
from protein_lm.files import atomic_file, read_rows, read_text, sniff_delimiter
from protein_lm.sequences import read_fasta, validate

__all__ = [
    "SOURCES",
    "data_dirs",
    "data_path",
    "read_deeploc",
    "load_deeploc",
    "load_secondary_structure",
    "DmsData",
    "load_blat",
    "read_table",
    "write_table",
    "encode_labels",
    "stratified_subset",
]

_ESM = "https://raw.githubusercontent.com/facebookresearch/esm/2b369911"
_FLIP_ZIP = "https://github.com/J-SNACKKB/FLIP/raw/62cace87/splits/secondary_structure/splits.zip"
_BIOTITE = (
    "https://raw.githubusercontent.com/biotite-dev/biotite/25879355/tests/structure/data/pdb"
)
_DEEPLOC = "https://raw.githubusercontent.com/HannesStark/protein-localization/7b0be1e6/data_files"

# relative path -> (source URL, SHA-256, member inside a zip or tar.gz archive, or None)
SOURCES: dict[str, tuple[str, str, str | None]] = {
    "deeploc/deeploc_our_val_set.fasta": (
        f"{_DEEPLOC}/deeploc_our_val_set.fasta",
        "5fddf9a7c076c7a0c34e46bdf8a530fddb8cd17a54b28d8e7ebcf3d4fbbf77d6",
        None,
    ),
    "deeploc/deeploc_test_set.fasta": (
        f"{_DEEPLOC}/deeploc_test_set.fasta",
        "b4d4fb4dbf53e87fb1bff9cbad41919c7c1f2615299a0dd50ecb5a4d002b4b6a",
        None,
    ),
    "secondary_structure/sequences.fasta": (
        _FLIP_ZIP,
        "cc69cb36650161fa08874c7a3a2ceceb9c3bbab1b6394cb875647c1b8b4a4b03",
        "sequences.fasta",
    ),
    "secondary_structure/sampled.fasta": (
        _FLIP_ZIP,
        "d74173c6ecd35339e9455565b45160f7285d401a1fc05e814af67bcb7bb83ad1",
        "sampled.fasta",
    ),
    "secondary_structure/mask.fasta": (
        _FLIP_ZIP,
        "6ffafb87ab0d40781103594d3a8fa202d1db741fd49cc00fe6220797bf55897f",
        "mask.fasta",
    ),
    "variants/BLAT_ECOLX_Ranganathan2015.csv": (
        f"{_ESM}/examples/variant-prediction/data/BLAT_ECOLX_Ranganathan2015.csv",
        "2bf86306d8841b771bc8d8e717adac8d75adf1586759c0ccc1878ff408e13a29",
        None,
    ),
    "some_proteins.fasta": (
        f"{_ESM}/examples/data/some_proteins.fasta",
        "fcc1c158a063817e1a9bacc377d57eb28458f8358c417fcad3fce42bc235fee5",
        None,
    ),
    "structures/1aki.pdb": (
        f"{_BIOTITE}/1aki.pdb",
        "c75d7a689617248cdd92dc6633531d2506fb9bef1e6e21e26c8f579ae6955abb",
        None,
    ),
    "structures/1dix.pdb": (
        f"{_BIOTITE}/1dix.pdb",
        "bb5f0e35331c3cafeabcb6b06bbf482b3c63adfa3dc4e7d9cb483ac505360340",
        None,
    ),
    "structures/1l2y.pdb": (
        f"{_BIOTITE}/1l2y.pdb",
        "5d1bbb545a312dfff1ae1e64b6d8addecb2f561ddc4011aeb5bee9d1dfcd4438",
        None,
    ),
    "structures/1l2y.cif": (
        f"{_BIOTITE}/1l2y.cif",
        "8face44439c270c7bb9734a5eda12551460a9228969153f9caa306e1da75c671",
        None,
    ),
    # Not data, but fetched and checked the same way: 3Dmol.js (BSD-3) for `viz.show_structure`,
    # the version py3Dmol 2.5 loads from its CDN, so 3D views work offline once cached.
    "viewers/3Dmol-min.js": (
        "https://registry.npmjs.org/3dmol/-/3dmol-2.5.5.tgz",
        "f7cc78921ae72e7623e89cdd111434f58c2efddd2ffda1cd212644b406fb8016",
        "3Dmol-min.js",
    ),
    "structures/5ugo.pdb": (
        f"{_BIOTITE}/5ugo.pdb",
        "ca1ab6219eae36938cf62ea15efa3c56aa84d5bb54fb34bdb0c3d3105913abe4",
        None,
    ),
}

# TEM-1 mature chain, first residue numbered 24 (examples/variant-prediction/README.md of fair-esm
# @2b369911); used when variants/BLAT_ECOLX.fasta is not on disk, since the source has no file.
_BLAT_WT = (
    "HPETLVKVKDAEDQLGARVGYIELDLNSGKILESFRPEERFPMMSTFKVLLCGAVLSRVDAGQEQLGRRIHYSQNDLVEYSPVTEKHLTDG"
    "MTVRELCSAAITMSDNTAANLLLTTIGGPKELTAFLHNMGDHVTRLDRWEPELNEAIPNDERDTTMPAAMATTLRKLLTGELLTLASRQQ"
    "LIDWMEADKVAGPLLRSALPAGWFIADKSGAGERGSRGIIAALGPDGKPSRIVVIYTTGSQATMDERNRQIAEIGASLIKHW"
)
BLAT_OFFSET = 24


def data_dirs() -> list[Path]:
    """Folders searched for data files, in order (the cache last)."""
    dirs = []
    if os.environ.get("PROTEIN_LM_DATA"):
        dirs.append(Path(os.environ["PROTEIN_LM_DATA"]))
    # `shared/data` beside the checkout, found from this file, never from the working directory:
    # the same call must find the same data from a notebook, a test or a script anywhere.
    beside = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
    if beside not in dirs:
        dirs.append(beside)
    dirs.append(_cache_dir())
    return dirs


def _cache_dir() -> Path:
    return Path(os.environ.get("PROTEIN_LM_CACHE", Path.home() / ".cache" / "protein_lm"))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download(name: str, url: str, sha: str, member: str | None, dest: Path) -> None:
    with urllib.request.urlopen(url, timeout=30) as resp:
        payload = resp.read()
    if member is not None:
        payload = _archive_member(payload, url, member, name)
    if _sha256(payload) != sha:
        raise DataNotFoundError(
            f"Downloaded {name} from {url} but its SHA-256 does not match {sha}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(dest) as tmp:
        tmp.write_bytes(payload)


def _archive_member(payload: bytes, url: str, member: str, name: str) -> bytes:
    """The file named `member` (by base name) inside a zip or a gzipped tar (an npm package)."""
    if zipfile.is_zipfile(io.BytesIO(payload)):
        with zipfile.ZipFile(io.BytesIO(payload)) as zf:
            names = [m for m in zf.namelist() if m.rsplit("/", 1)[-1] == member]
            if names:
                return zf.read(names[0])
    else:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:*") as tf:
            files = [
                m for m in tf.getmembers() if m.isfile() and m.name.rsplit("/", 1)[-1] == member
            ]
            extracted = tf.extractfile(files[0]) if files else None
            if extracted is not None:
                return extracted.read()
    raise DataNotFoundError(f"{url} has no member {member!r} (needed for {name})")


def data_path(name: str, *, download: bool = True) -> Path:
    """Absolute path of a bundled data file such as `"deeploc/deeploc_test_set.fasta"`."""
    for folder in data_dirs():
        if (folder / name).is_file():
            return folder / name
    searched = ", ".join(str(d) for d in data_dirs())
    source = SOURCES.get(name)
    if source is None:
        raise DataNotFoundError(
            f"Data file {name!r} not found in: {searched}. Set PROTEIN_LM_DATA."
        )
    url, sha, member = source
    dest = _cache_dir() / name
    if download:
        try:
            _download(name, url, sha, member, dest)
            return dest
        except DataNotFoundError:
            raise
        except Exception as exc:
            reason = f" (download failed: {exc})"
    else:
        reason = ""
    raise DataNotFoundError(
        f"Data file {name!r} not found in: {searched}{reason}. Point PROTEIN_LM_DATA at a folder "
        f"holding it, or download it from {url}"
        + (f" (member {member})" if member else "")
        + f" and check SHA-256 {sha}."
    )


# ------------------------------------------------------------------------------------ DeepLoc
def read_deeploc(split: Literal["validation", "test"]) -> list[dict[str, str]]:
    """All records of one DeepLoc file: id, sequence, location, membrane (M/S/U)."""
    fname = {"validation": "deeploc_our_val_set.fasta", "test": "deeploc_test_set.fasta"}[split]
    rows = []
    for rec in read_fasta(data_path(f"deeploc/{fname}")):
        tag = rec.description.split()[0]
        location, _, membrane = tag.rpartition("-")  # dual locations: split at the last '-'
        rows.append(
            {"id": rec.id, "sequence": rec.sequence, "location": location, "membrane": membrane}
        )
    return rows


def load_deeploc(
    task: Literal["localization", "membrane"] = "localization",
    *,
    seed: int = 0,
    validation_fraction: float = 0.1,
) -> Any:
    """DeepLoc as a `datasets.DatasetDict` (train, validation, test) with id, sequence, label."""
    import datasets
    from sklearn.model_selection import train_test_split

    if task not in ("localization", "membrane"):
        raise ValueError(f"`task` must be 'localization' or 'membrane', got {task!r}")

    def select(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        out = []
        for r in rows:
            if task == "localization":
                if "-" in r["location"]:
                    continue  # dual location (23 records): not one of the 10 classes
                label = r["location"]
            else:
                if r["membrane"] not in ("M", "S"):
                    continue
                label = "membrane" if r["membrane"] == "M" else "soluble"
            out.append({"id": r["id"], "sequence": r["sequence"], "label": label})
        return out

    pool, test = select(read_deeploc("validation")), select(read_deeploc("test"))
    labels = [r["label"] for r in pool]
    # Stratify only when every class has at least 2 members (sklearn requires it).
    strat = labels if min(Counter(labels).values()) >= 2 else None
    train, val = train_test_split(
        pool, test_size=validation_fraction, random_state=seed, stratify=strat
    )
    return datasets.DatasetDict(
        {
            split: datasets.Dataset.from_list(rows)
            for split, rows in (("train", train), ("validation", val), ("test", test))
        }
    )


def stratified_subset(
    dataset: Any,
    n: int,
    *,
    max_length: int | None = None,
    seed: int = 0,
    label_column: str = "label",
) -> Any:
    """A seeded subset of at most `n` rows of a `datasets.Dataset` in which every class is present.

    For small (smoke-test) splits: a plain "first n rows" can miss a class, and a metric computed
    on a split without a class means nothing (accuracy 0.0, MCC 0.0). Rows whose sequence is longer
    than `max_length` are skipped. Class labels (one name per row) are drawn round-robin over the
    classes, so the subset is as balanced as the classes allow. Per-residue labels (a string as
    long as the sequence; with a `mask` column only residues with mask `1` count) first take one
    row holding each class, then random rows. Numeric labels (regression): random rows.

    Raises `InvalidInputError` when `n` is below the number of classes or a class has no row
    within `max_length`.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    seqs, labels = dataset["sequence"], dataset[label_column]
    masks = dataset["mask"] if "mask" in dataset.column_names else None
    keep = [i for i, s in enumerate(seqs) if max_length is None or len(s) <= max_length]
    all_classes: set[Any] = set()
    per_residue = bool(labels) and isinstance(labels[0], str) and len(labels[0]) == len(seqs[0])

    def classes_of(i: int) -> set[str]:
        lab = labels[i]
        return set(lab if masks is None else (c for c, m in zip(lab, masks[i]) if m == "1"))

    if labels and isinstance(labels[0], (int, float)) and not isinstance(labels[0], bool):
        chosen = list(rng.permutation(keep)[:n])
    elif per_residue:
        all_classes = set().union(*(classes_of(i) for i in range(len(seqs))))
        order, chosen, seen = list(rng.permutation(keep)), [], set()
        for c in sorted(all_classes):
            if c not in seen:
                row = next((i for i in order if c in classes_of(i) and i not in chosen), None)
                if row is not None:
                    chosen.append(row)
                    seen |= classes_of(row)
        chosen += [i for i in order if i not in chosen][: max(0, n - len(chosen))]
        found = set().union(*(classes_of(i) for i in chosen)) if chosen else set()
        missing = all_classes - found
        if missing or len(chosen) > n:
            raise InvalidInputError(
                f"stratified_subset: cannot fit residue classes {sorted(all_classes)} in {n} rows "
                f"(max_length={max_length}); missing {sorted(missing)}"
            )
    else:
        all_classes = set(labels)
        by_class = {
            c: [i for i in rng.permutation(keep) if labels[i] == c] for c in sorted(all_classes)
        }
        empty = [c for c, rows in by_class.items() if not rows]
        if n < len(by_class) or empty:
            raise InvalidInputError(
                f"stratified_subset: need every class of {sorted(by_class)} in {n} rows "
                f"(max_length={max_length}); "
                + (f"no rows of {empty}" if empty else f"n must be >= {len(by_class)}")
            )
        chosen, depth = [], 0
        while len(chosen) < n and any(depth < len(r) for r in by_class.values()):
            chosen += [int(r[depth]) for r in by_class.values() if depth < len(r)][
                : n - len(chosen)
            ]
            depth += 1
    return dataset.select(sorted(int(i) for i in chosen))


# ------------------------------------------------------------------- FLIP secondary structure
def load_secondary_structure() -> Any:
    """FLIP 3-state secondary structure as a `DatasetDict` (train, validation, test).

    Columns: id, sequence, label (one of H/E/C per residue), mask (`1` resolved, `0` ignore).
    """
    import datasets

    seqs = {r.id: r.sequence for r in read_fasta(data_path("secondary_structure/sequences.fasta"))}
    masks = {
        r.id: r.sequence
        for r in read_fasta(data_path("secondary_structure/mask.fasta"), validate_sequences=False)
    }
    splits: dict[str, list[dict[str, str]]] = {"train": [], "validation": [], "test": []}
    for rec in read_fasta(
        data_path("secondary_structure/sampled.fasta"), validate_sequences=False
    ):
        meta = dict(kv.split("=", 1) for kv in rec.description.split())
        split = (
            "test"
            if meta["SET"] == "test"
            else ("validation" if meta["VALIDATION"] == "True" else "train")
        )
        seq, mask = seqs[rec.id], masks[rec.id]
        if not (len(seq) == len(rec.sequence) == len(mask)):
            raise InvalidInputError(
                f"FLIP record {rec.id!r}: sequence, labels and mask differ in length"
            )
        splits[split].append({"id": rec.id, "sequence": seq, "label": rec.sequence, "mask": mask})
    return datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()})


# ------------------------------------------------------------------------------------ BLAT DMS
@dataclass(frozen=True)
class DmsData:
    """A deep mutational scan: `wild_type` sequence, residue number `offset` of its first letter,
    and `data` (a `datasets.Dataset` with `mutant` such as `H24C` and `label`, the fitness)."""

    name: str
    wild_type: str
    offset: int
    data: Any


def load_blat(fitness_column: str = "2500") -> DmsData:
    """TEM-1 beta-lactamase DMS (Stiffler et al. 2015): 4,996 single mutants, offset 24."""
    import datasets
    import pandas as pd

    try:
        wt = read_fasta(data_path("variants/BLAT_ECOLX.fasta", download=False))[0].sequence
    except DataNotFoundError:
        wt = _BLAT_WT
    df = pd.read_csv(data_path("variants/BLAT_ECOLX_Ranganathan2015.csv"), encoding="utf-8-sig")
    if fitness_column not in df.columns:
        raise InvalidInputError(
            f"BLAT csv has no column {fitness_column!r}; has {list(df.columns)}"
        )
    df = df.rename(columns={fitness_column: "label"})[["mutant", "label"]]
    return DmsData(
        "BLAT_ECOLX", wt, BLAT_OFFSET, datasets.Dataset.from_pandas(df, preserve_index=False)
    )


# ----------------------------------------------------------------- CLI training file format
TableTask = Literal["sequence-classification", "token-classification", "regression"]


def read_table(path: str | os.PathLike[str], task: TableTask) -> Any:
    """Read and validate a CSV/TSV with `sequence`, `label` (and optional `id`, `mask`).

    Returns a `datasets.Dataset` with columns id, sequence, label (str or float) and, for token
    tasks, mask (a 0/1 string, all ones when absent). Any problem raises `InvalidInputError` naming
    the file, the 1-based data row and the field.
    """
    import datasets

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: file not found")
    text = read_text(path)  # non-UTF-8 bytes: InvalidInputError naming file, line and offset
    if not text.strip():
        raise InvalidInputError(f"{path}: file is empty")
    reader = read_rows(path, text)
    fields = [f.strip() for f in (reader.fieldnames or [])]
    missing = {"sequence", "label"} - set(fields)
    if missing:
        raise InvalidInputError(
            f"{path}: missing column(s) {sorted(missing)}; found {fields}; "
            "expected sequence,label and optional id,mask"
        )
    unknown = set(fields) - {"id", "sequence", "label", "mask"}
    if unknown:
        raise InvalidInputError(
            f"{path}: unknown column(s) {sorted(unknown)}; allowed: id, sequence, label, mask"
        )
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(reader, start=1):
        raw = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
        rid = raw.get("id") or f"row{i}"
        where = f"{path}, row {i} (id {rid!r})"
        if rid in seen:
            raise InvalidInputError(f"{where}: duplicate id (first at row {seen[rid]})")
        seen[rid] = i
        try:
            seq = validate(raw["sequence"], rid)
        except InvalidSequenceError as exc:
            raise InvalidInputError(f"{where}, field 'sequence': {exc}") from None
        label: Any = raw["label"]
        if label == "":
            raise InvalidInputError(f"{where}, field 'label': empty")
        row: dict[str, Any] = {"id": rid, "sequence": seq}
        if task == "regression":
            try:
                label = float(label)
            except ValueError:
                raise InvalidInputError(
                    f"{where}, field 'label': {label!r} is not a number"
                ) from None
            # float() accepts nan/inf/-inf/NaN/Infinity: a NaN loss would train to garbage, exit 0.
            if not math.isfinite(label):
                raise InvalidInputError(
                    f"{where}, field 'label': {raw['label']!r} is not a finite number"
                )
        elif task == "token-classification":
            if len(label) != len(seq):
                raise InvalidInputError(
                    f"{where}, field 'label': {len(label)} labels for a sequence of "
                    f"{len(seq)} residues (one class character per residue)"
                )
            mask = raw.get("mask") or "1" * len(seq)
            if len(mask) != len(seq) or set(mask) - {"0", "1"}:
                raise InvalidInputError(
                    f"{where}, field 'mask': must be {len(seq)} characters of 0/1"
                )
            row["mask"] = mask
        row["label"] = label
        rows.append(row)
    if not rows:
        raise InvalidInputError(f"{path}: no data rows")
    # Masks all 0: no residue has a label, so loss and metrics would be NaN (or 0/0) at exit 0.
    if task == "token-classification" and not any("1" in r["mask"] for r in rows):
        raise InvalidInputError(
            f"{path}: every 'mask' is all 0, so no residue is labelled; "
            "mark the labelled residues with 1"
        )
    return datasets.Dataset.from_list(rows)


def write_table(dataset: Any, path: str | os.PathLike[str]) -> Path:
    """Write a dataset's id/sequence/label[/mask] columns as CSV (TSV for `.tsv`/`.tab`)."""
    path = Path(path)
    cols = [c for c in ("id", "sequence", "label", "mask") if c in dataset.column_names]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=sniff_delimiter(path))
        w.writerow(cols)
        for row in dataset.select_columns(cols):
            w.writerow([row[c] for c in cols])
    return path


def encode_labels(
    dataset: Any,
    task: TableTask,
    label2id: dict[str, int] | None = None,
    *,
    source: str = "data",
) -> tuple[Any, dict[int, str] | None]:
    """Add a `labels` column (class ids, floats, or per-residue ids with -100 where mask is 0).

    `label2id` defaults to the sorted classes of `dataset` (pass the training mapping for
    validation/test). A class not in `label2id` raises `InvalidInputError` naming the row.
    Returns the dataset and `id2label` (None for regression).
    """
    if task == "regression":
        return dataset.map(lambda r: {"labels": float(r["label"])}), None
    if label2id is None:
        if task == "token-classification":
            classes = sorted(set("".join(dataset["label"])))
        else:
            classes = sorted(set(dataset["label"]))
        if len(classes) < 2:
            raise InvalidInputError(
                f"{source}: only one class ({classes}) in the labels; "
                "classification needs at least two"
            )
        label2id = {c: i for i, c in enumerate(classes)}

    def enc(row: dict[str, Any], idx: int) -> dict[str, Any]:
        if task == "token-classification":
            mask = row.get("mask") or "1" * len(row["label"])
            bad = [c for c in set(row["label"]) if c not in label2id]
            if bad:
                raise InvalidInputError(
                    f"{source}, row {idx + 1} (id {row.get('id')!r}), field 'label': "
                    f"unknown class {bad[0]!r}; known: {sorted(label2id)}"
                )
            return {
                "labels": [label2id[c] if m == "1" else -100 for c, m in zip(row["label"], mask)]
            }
        if row["label"] not in label2id:
            raise InvalidInputError(
                f"{source}, row {idx + 1} (id {row.get('id')!r}), field 'label': "
                f"unknown class {row['label']!r}; known: {sorted(label2id)}"
            )
        return {"labels": label2id[row["label"]]}

    return dataset.map(enc, with_indices=True), {i: c for c, i in label2id.items()}
