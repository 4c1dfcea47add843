"""Save and load `Embeddings`: `.npz`, `.npy`, parquet, `datasets.Dataset`, resumable shard
folders.

Bulk runs (`embed_to_file`) are resumable and atomic: records are cut, in input order, into
shards of `shard_size`; each shard is written to a temporary file and renamed into place
(`os.replace`), so a shard file is either complete or absent. A rerun with the same input and
options skips finished shards; a folder holding shards of other input, weights or options is
refused (its `manifest.json`, `protein_lm.provenance`, does not match) rather than mixed.
Every record is checked (ids, lengths against `long_policy`) before the folder is created, and a
run that fails before its first shard removes the folder (or manifest) it created, so the
corrected command can start at once. The final `.npz`/`.npy`/`.parquet` file is written the same
way, then the shard folder `<output>.parts/` is removed. An output without a suffix is a shard
folder itself (read it with `load_embeddings`).
Several processes or jobs can share one output (`shard=(i, n)`: the shard files that
`protein_lm.distributed.deal` gives shard i, weighted by their residues): each writes only its
shard files, and a run with
`n == 1` afterwards (rank 0 under torchrun, or a rerun without `--shard`) finds them finished and
only writes the final file.
Files are created with the permissions of a plain `open()` (0666 minus the umask).

`.npz` layout: `ids` (N,), `lengths` (N,), `layers`, `mean_<layer>` (N, D); with per-residue
output `per_residue_<layer>` (sum L, D) rows concatenated in record order; with contacts
`contacts` (sum L*L,) the flattened maps concatenated. `.npy` holds the mean embeddings of the
first requested layer (N, D) and `<stem>.ids.txt` beside it holds the ids, one per line.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from protein_lm.distributed import check_shard, deal
from protein_lm.embeddings import Embeddings, check_records, embed
from protein_lm.errors import InvalidInputError, require
from protein_lm.files import atomic_file, atomic_write_text
from protein_lm.precision import resolve_precision
from protein_lm.provenance import MANIFEST, Manifest, claim, stamp, weights_fingerprint
from protein_lm.sequences import FastaRecord, as_records

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel

__all__ = [
    "FORMATS",
    "check_output",
    "save_embeddings",
    "load_embeddings",
    "to_dataset",
    "concat_embeddings",
    "embed_to_file",
]

log = logging.getLogger(__name__)

FORMATS = (".npz", ".npy", ".parquet", "")  # "" = shard folder


def _to_arrays(emb: Embeddings) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {
        "ids": np.array(emb.ids, dtype=str),
        "lengths": emb.lengths.astype(np.int64),
        "layers": np.array(emb.layers, dtype=np.int64),
        "failed": np.array(emb.failed, dtype=str),
    }
    for layer, m in emb.mean.items():
        arrays[f"mean_{layer}"] = m
        if emb.per_residue is not None:
            arrays[f"per_residue_{layer}"] = _concat(
                [r for r in emb.per_residue[layer]], m.shape[1]
            )
    if emb.contacts is not None:
        arrays["contacts"] = _concat([c.reshape(-1) for c in emb.contacts], None)
    return arrays


def _concat(parts: list[np.ndarray], width: int | None) -> np.ndarray:
    if not parts:
        return np.zeros((0, width) if width else (0,), np.float32)
    if width:  # failed records hold (L, 0) placeholders: widen them to NaN rows
        parts = [
            p if p.shape[1] == width else np.full((len(p), width), np.nan, np.float32)
            for p in parts
        ]
    return np.concatenate(parts).astype(np.float32)


def _from_arrays(z: Mapping[str, np.ndarray]) -> Embeddings:
    lengths = np.asarray(z["lengths"], dtype=np.int64)
    layers = tuple(int(x) for x in z["layers"])
    mean = {l: np.asarray(z[f"mean_{l}"], dtype=np.float32) for l in layers}
    split = np.cumsum(lengths)[:-1]
    per_residue = None
    if f"per_residue_{layers[0]}" in z:
        per_residue = {l: np.split(np.asarray(z[f"per_residue_{l}"]), split) for l in layers}
    contacts = None
    if "contacts" in z:
        flat = np.split(np.asarray(z["contacts"]), np.cumsum(lengths**2)[:-1])
        contacts = [c.reshape(n, n) for c, n in zip(flat, lengths.tolist())]
    return Embeddings(
        tuple(str(i) for i in z["ids"]),
        lengths,
        layers,
        mean,
        per_residue,
        contacts,
        tuple(str(i) for i in z.get("failed", ())),
    )


def concat_embeddings(parts: Iterable[Embeddings]) -> Embeddings:
    """Join `Embeddings` of disjoint record sets (same layers and options), in the given order."""
    parts = list(parts)
    if not parts:
        raise ValueError("concat_embeddings needs at least one part")
    first = parts[0]
    per = (
        None
        if first.per_residue is None
        else {
            l: [r for p in parts for r in p.per_residue[l]]  # type: ignore[index]
            for l in first.layers
        }
    )
    return Embeddings(
        ids=tuple(i for p in parts for i in p.ids),
        lengths=np.concatenate([p.lengths for p in parts]),
        layers=first.layers,
        mean={l: np.concatenate([p.mean[l] for p in parts]) for l in first.layers},
        per_residue=per,
        contacts=None if first.contacts is None else [c for p in parts for c in p.contacts],  # type: ignore[union-attr]
        failed=tuple(i for p in parts for i in p.failed),
    )


def to_dataset(emb: Embeddings) -> Dataset:
    """A `datasets.Dataset` with `id`, `length`, `mean_<layer>` and, when present,
    `per_residue_<layer>` (L x D lists) and `contacts` (L x L lists)."""
    datasets = require("datasets", "torch")
    cols: dict[str, Any] = {"id": list(emb.ids), "length": emb.lengths.tolist()}
    for l in emb.layers:
        cols[f"mean_{l}"] = list(emb.mean[l])
        if emb.per_residue is not None:
            cols[f"per_residue_{l}"] = [r.tolist() for r in emb.per_residue[l]]
    if emb.contacts is not None:
        cols["contacts"] = [c.tolist() for c in emb.contacts]
    return datasets.Dataset.from_dict(cols)


def check_output(
    path: str | os.PathLike[str], *, per_residue: bool = False, contacts: bool = False
) -> str:
    """The lower-case suffix of an embeddings output, refused (before any work) when it is not
    .npz, .npy, .parquet or a folder, or when .npy is asked to hold more than mean embeddings."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise InvalidInputError(f"Output {path} must end in .npz, .npy, .parquet or be a folder")
    if suffix == ".npy" and (per_residue or contacts):
        raise InvalidInputError(
            f"{path}: .npy holds only mean embeddings; "
            "use .npz or .parquet for per-residue/contacts"
        )
    return suffix


def save_embeddings(emb: Embeddings, path: str | os.PathLike[str]) -> Path:
    """Write `emb` atomically as `.npz`, `.npy` (+ `.ids.txt`) or `.parquet` (by the suffix)."""
    path = Path(path)
    suffix = check_output(
        path, per_residue=emb.per_residue is not None, contacts=emb.contacts is not None
    )
    if suffix == "":
        raise InvalidInputError(f"Output {path} must end in .npz, .npy or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        if suffix == ".parquet":
            to_dataset(emb).to_parquet(str(tmp))
        elif suffix == ".npz":
            # a file object, not the name: numpy would append `.npz` to the temporary name
            with open(tmp, "wb") as fh:
                # numpy's stub lets `**` reach `allow_pickle`; the keys here never do
                np.savez(fh, **_to_arrays(emb))  # type: ignore[arg-type]
        else:
            with open(tmp, "wb") as fh:
                np.save(fh, emb.mean[emb.layers[0]])
            atomic_write_text(path.with_suffix(".ids.txt"), "\n".join(emb.ids) + "\n")
    return path


def load_embeddings(path: str | os.PathLike[str]) -> Embeddings:
    """Read embeddings written by `save_embeddings` (`.npz`) or a shard folder of
    `embed_to_file`."""
    path = Path(path)
    if path.is_dir():
        shards = sorted(path.glob("shard-*.npz"))
        if not shards:
            raise InvalidInputError(f"{path} holds no shard-*.npz files")
        return concat_embeddings(load_embeddings(s) for s in shards)
    if path.suffix.lower() != ".npz":
        raise InvalidInputError(f"load_embeddings reads .npz files or shard folders, got {path}")
    with np.load(path, allow_pickle=False) as z:
        return _from_arrays({k: z[k] for k in z.files})


def embed_to_file(
    model: PreTrainedModel,
    sequences: str | Mapping[str, str] | Iterable[str | FastaRecord] | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    shard_size: int = 1000,
    model_name: str = "",
    shard: tuple[int, int] = (0, 1),
    weights: str | None = None,
    **embed_kwargs: Any,
) -> Path:
    """Embed many sequences into `output` (.npz, .npy, .parquet or a folder), resumably.

    `embed_kwargs` go to `embeddings.embed` (layers, per_residue, contacts, max_tokens, strategy,
    long_policy, progress). The manifest records `weights` (`provenance.weights_fingerprint`;
    default: of `model`'s tensors), the options, every record's sequence hash and, for
    people, `model_name`: a rerun or merge with any of them changed is refused before a shard
    is written. `shard=(i, n)` with n > 1 embeds only shard i's shard files
    (`protein_lm.distributed.deal`, weighted by residues) into the shard folder and returns that
    folder, leaving the final file to a run with `n == 1` (which embeds whatever is still
    missing, then merges).
    """
    if shard_size <= 0:
        raise ValueError(f"`shard_size` must be > 0, got {shard_size}")
    count = check_shard(*shard)[1]
    output = Path(output)
    suffix = check_output(
        output,
        per_residue=bool(embed_kwargs.get("per_residue")),
        contacts=bool(embed_kwargs.get("contacts")),
    )
    records = as_records(sequences)
    # Every record is checked before anything is written, so bad input leaves no folder behind.
    check_records(records, long_policy=embed_kwargs.get("long_policy", "error"))
    parts_dir = output if suffix == "" else output.with_name(output.name + ".parts")
    options = {k: v for k, v in embed_kwargs.items() if k not in ("progress", "num_threads")}
    # The precision actually used (auto differs between machines): shards of bfloat16 and
    # float32 runs are not merged as one.
    options["precision"] = resolve_precision(model, embed_kwargs.get("precision", "auto"))
    manifest = Manifest.of(
        weights_fingerprint(model) if weights is None else weights,
        {
            **options,
            "shard_size": shard_size,
            "dtype": str(getattr(model, "dtype", "")),
        },  # float16 differs
        ((r.id, r.sequence) for r in records),
        model_name,
    )
    created = not parts_dir.exists()
    parts_dir.mkdir(parents=True, exist_ok=True)
    claimed = False
    try:
        # An older version's manifest is replaced only while no shard of it is there.
        claimed = claim(
            parts_dir,
            manifest,
            same_records=True,
            replace_old=not any(parts_dir.glob("shard-*.npz")),
        )
        shard_paths = _write_shards(
            model, records, parts_dir, manifest, shard_size, embed_kwargs, shard
        )
    except BaseException:
        # Failed before any shard was finished (e.g. a bad --layers): leave nothing behind, so
        # the corrected command is not refused as "a different run".
        if not any(parts_dir.glob("shard-*.npz")):
            if created:
                shutil.rmtree(parts_dir, ignore_errors=True)
            elif claimed:
                (parts_dir / MANIFEST).unlink(missing_ok=True)
        raise
    if suffix == "" or count > 1:
        return parts_dir
    save_embeddings(concat_embeddings(load_embeddings(s) for s in shard_paths), output)
    shutil.rmtree(parts_dir)
    return output


def _write_shards(
    model: PreTrainedModel,
    records: list[FastaRecord],
    parts_dir: Path,
    manifest: Manifest,
    shard_size: int,
    embed_kwargs: dict[str, Any],
    shard: tuple[int, int],
) -> list[Path]:
    """Embed every shard file of `shard` not finished yet (the folder is claimed with
    `manifest`); the paths of all shard files."""
    index, count = shard
    starts = range(0, len(records), shard_size)
    if index == 0 and count > len(starts):
        log.warning(
            "%d records in %d shard files of %d for %d processes: some have nothing to "
            "do (lower --shard-size / shard_size)",
            len(records),
            len(starts),
            shard_size,
            count,
        )
    # The file layout is fixed by `shard_size` alone (so a rerun resumes it, whatever n); only
    # which files this process writes depends on the shard, weighted by their residues.
    mine = set(
        deal(
            [
                sum(len(r.sequence) for r in records[start : start + shard_size])
                for start in starts
            ],
            shard,
        )
    )
    shard_paths, claimed = [], stamp(parts_dir)
    for k, start in enumerate(starts):
        path = parts_dir / f"shard-{k:05d}.npz"
        shard_paths.append(path)
        if k not in mine or path.is_file():
            continue  # another process's, or finished in an earlier run
        emb = embed(model, records[start : start + shard_size], **embed_kwargs)
        # Checked again just before the write: a job of another run may have claimed the folder
        # meanwhile (e.g. after this run's manifest was removed by a failed one).
        if stamp(parts_dir) != claimed:
            claim(parts_dir, manifest, same_records=True, replace_old=False)
            claimed = stamp(parts_dir)
        save_embeddings(emb, path)
    return shard_paths
