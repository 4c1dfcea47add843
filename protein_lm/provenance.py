"""Provenance of resumable and sharded outputs: the one manifest format (`embed`, `fold`).

A `Manifest` says what made an output: `weights` (sha256 of the model's safetensors files, never
its name, see `weights_fingerprint`), `options` (only those that change results) and `records`
(id -> sha256 of the sequence, `sequence_hash`). A resume or merge reads the manifest on disk
and compares it with its own (`Manifest.difference`): any difference in weights or options is
refused with one line naming it, and a record whose sequence changed is recomputed, never
skipped. `claim` is the one way to start an output: it creates `manifest.json` exclusively (so
of two jobs started together, the second compares instead of overwriting) or checks the one
there. Nothing here imports torch at module level.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protein_lm.errors import InvalidInputError, require

if TYPE_CHECKING:
    import torch

__all__ = [
    "FORMAT",
    "MANIFEST",
    "Manifest",
    "sequence_hash",
    "weights_fingerprint",
    "read_manifest",
    "claim",
    "stamp",
]

FORMAT = 1
MANIFEST = "manifest.json"
_CHUNK = 1 << 20


def sequence_hash(sequence: str) -> str:
    """sha256 (hex) of a sequence as read from the input.

    Examples
    --------
    >>> sequence_hash("MKT")[:12]
    '366893d2245f'
    """
    return hashlib.sha256(sequence.encode()).hexdigest()


def weights_fingerprint(model: str | os.PathLike[str] | torch.nn.Module) -> str:
    """sha256 of a model's weights, never of its name.

    A local model folder, preset or cached hub id: its safetensors files as
    `models.check_safetensors` picks and validates them (names and bytes, in order). A loaded
    model (`tiny`, or one built or changed in memory): its tensors (names, dtypes, shapes,
    bytes), so two seeds or two edits give two fingerprints.
    """
    digest = hashlib.sha256()
    if isinstance(model, (str, os.PathLike)):
        for file in _weight_files(str(model)):
            digest.update(f"{file.name}\0{file.stat().st_size}\0".encode())
            with open(file, "rb") as fh:
                while chunk := fh.read(_CHUNK):
                    digest.update(chunk)
        return digest.hexdigest()
    torch_ = require("torch", "torch")
    for name, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}\0{flat.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(flat.view(torch_.uint8).numpy().tobytes())
    return digest.hexdigest()


def _weight_files(name: str) -> list[Path]:
    """The safetensors files of a local folder, or of the cached snapshot of a preset / hub id."""
    from protein_lm.models import check_safetensors, resolve_model

    if name == "tiny":
        raise ValueError("`tiny` has no weight files; pass the loaded model to fingerprint it")
    source = resolve_model(name)
    if source.local:
        return check_safetensors(source.name)
    hub = require("huggingface_hub", "torch")
    # The files the loader reads (downloaded now if not cached yet: it would fetch them anyway).
    folder = hub.snapshot_download(
        source.name,
        local_files_only=source.local_files_only,
        allow_patterns=["*.json", "*.safetensors"],
    )
    return check_safetensors(folder)


@dataclass(frozen=True)
class Manifest:
    """What made an output: weight fingerprint, result-changing options, record sequence hashes.

    `model` is the name the run was given, kept for people reading the file; it is never
    compared (the same name can hold other weights).
    """

    weights: str
    options: Mapping[str, Any]
    records: Mapping[str, str] = field(default_factory=dict)
    model: str = ""

    @classmethod
    def of(
        cls,
        weights: str,
        options: Mapping[str, Any],
        records: Iterable[tuple[str, str]] = (),
        model: str = "",
    ) -> Manifest:
        """A manifest with `options` normalised as JSON stores them and `records` (id, sequence)
        hashed."""
        opts = json.loads(json.dumps(dict(sorted(options.items())), default=str))
        return cls(weights, opts, {i: sequence_hash(s) for i, s in records}, model)

    def to_json(self) -> str:
        """The `manifest.json` text."""
        return (
            json.dumps(
                {
                    "format": FORMAT,
                    "model": self.model,
                    "weights": self.weights,
                    "options": self.options,
                    "records": self.records,
                },
                indent=1,
            )
            + "\n"
        )

    def difference(self, other: Manifest, *, same_records: bool = False) -> str | None:
        """What differs from `other` (weights, options, records sequenced differently, and with
        `same_records` the ids and their order), as a short phrase; None when nothing does."""
        if self.weights != other.weights:
            return (
                f"the model weights differ (sha256 {self.weights[:12]}... here, "
                f"{other.weights[:12]}... there; same name or not)"
            )
        if self.options != other.options:
            keys = sorted(
                k
                for k in {*self.options, *other.options}
                if self.options.get(k) != other.options.get(k)
            )
            return "options differ: " + ", ".join(
                f"{k} {self.options.get(k)!r} here, {other.options.get(k)!r} there" for k in keys
            )
        changed = [i for i, h in self.records.items() if other.records.get(i, h) != h]
        if changed:
            return f"record {changed[0]!r} has another sequence ({len(changed)} record(s) differ)"
        if same_records and list(self.records) != list(other.records):
            return "the records differ (other ids, or another order)"
        return None


def read_manifest(folder: str | os.PathLike[str]) -> Manifest | None:
    """The manifest in `folder`; None if there is none or it is of an older format."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    return Manifest(
        str(data.get("weights")),
        data.get("options") or {},
        data.get("records") or {},
        str(data.get("model", "")),
    )


def claim(
    folder: str | os.PathLike[str],
    manifest: Manifest,
    *,
    same_records: bool = False,
    replace_old: bool = True,
) -> bool:
    """Start or resume `folder` as the output of the run `manifest` describes.

    Creates `folder/manifest.json` exclusively, or checks the one there: a difference raises
    `InvalidInputError` naming it. A manifest of an older format (or unreadable) is replaced
    when `replace_old`, else refused. Returns True when this call created the manifest.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    for _ in range(2):
        if _create_exclusive(path, manifest.to_json()):
            return True
        there = read_manifest(folder)
        if there is None and path.is_file():
            if not replace_old:
                raise InvalidInputError(
                    f"{path} is of an older version or unreadable; delete "
                    f"{folder} or choose another output"
                )
            path.unlink(missing_ok=True)  # then create ours (the loop's second pass)
            continue
        if there is None:
            continue  # removed meanwhile: try again
        diff = manifest.difference(there, same_records=same_records)
        if diff:
            raise InvalidInputError(
                f"{folder} holds results of a different run: {diff}; rerun "
                f"with the same model, options and input, or delete {folder} "
                "or choose another output"
            )
        return False
    raise InvalidInputError(
        f"{path} keeps changing: another run with other input is writing "
        f"{folder}; choose another output"
    )


def stamp(folder: str | os.PathLike[str]) -> tuple[int, int, int] | None:
    """A cheap token of `folder/manifest.json` (inode, mtime, size): while it is unchanged, so is
    the manifest, and a long run need not re-read a large one before each write."""
    try:
        st = (Path(folder) / MANIFEST).stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _create_exclusive(path: Path, text: str) -> bool:
    """Write `text` to `path` only if it does not exist (complete or absent, never half)."""
    from protein_lm.files import atomic_write_text

    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    atomic_write_text(tmp, text)
    try:
        os.link(tmp, path)  # atomic and exclusive, unlike a rename
        return True
    except FileExistsError:
        return False
    except OSError:  # no hard links here (some network file systems): exclusive create
        try:
            with open(path, "x", encoding="utf-8") as fh:
                fh.write(text)
            return True
        except FileExistsError:
            return False
    finally:
        tmp.unlink(missing_ok=True)
