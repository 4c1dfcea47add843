"""Offline demo on the bundled real data: `python -m protein_lm.demo` (what `make demo` runs).

Each step uses the embedded defaults and the `tiny` models, so it runs on a laptop CPU with no
network; steps whose optional extra is missing are skipped with the pip command that enables them.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from protein_lm import data
from protein_lm.errors import MissingExtraError
from protein_lm.sequences import read_fasta
from protein_lm.tokenization import encode

__all__ = ["main"]


def _step(title: str, fn: Callable[[Path], None], workdir: Path) -> None:
    print(f"\n== {title}")
    t0 = time.perf_counter()
    try:
        fn(workdir)
    except MissingExtraError as exc:
        print(f"   skipped: {exc}")
        return
    print(f"   ({time.perf_counter() - t0:.1f} s)")


def _tokenise(_: Path) -> None:
    recs = read_fasta(data.data_path("some_proteins.fasta"))
    batch = encode([r.sequence for r in recs])
    print(f"   {len(recs)} sequences from some_proteins.fasta -> input_ids {batch['input_ids'].shape}")
    print(f"   first tokens of {recs[0].id}: {batch['input_ids'][0, :8].tolist()}")


def _datasets(_: Path) -> None:
    loc = data.load_deeploc()
    ss = data.load_secondary_structure()
    blat = data.load_blat()
    print("   DeepLoc localisation: " + ", ".join(f"{k} {len(v)}" for k, v in loc.items()))
    print("   FLIP secondary structure: " + ", ".join(f"{k} {len(v)}" for k, v in ss.items()))
    counts = Counter("".join(ss["test"]["label"]))
    total = sum(counts.values())
    print("   SS3 test label shares: " + ", ".join(f"{k} {v / total:.2f}" for k, v in sorted(counts.items())))
    print(f"   BLAT DMS: {len(blat.data)} mutants, wild type {len(blat.wild_type)} aa, offset {blat.offset}")


STEPS: list[tuple[str, Callable[[Path], None]]] = [
    ("Validate and tokenise a FASTA", _tokenise),
    ("Load the bundled real data sets", _datasets),
]


def main() -> int:
    """Run every demo step in a temporary folder; returns 0."""
    with tempfile.TemporaryDirectory(prefix="protein_lm_demo_") as tmp:
        for title, fn in STEPS:
            _step(title, fn, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
