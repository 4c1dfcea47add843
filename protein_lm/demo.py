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
    print(
        f"   {len(recs)} sequences from some_proteins.fasta -> "
        f"input_ids {batch['input_ids'].shape}"
    )
    print(f"   first tokens of {recs[0].id}: {batch['input_ids'][0, :8].tolist()}")


def _datasets(_: Path) -> None:
    loc = data.load_deeploc()
    ss = data.load_secondary_structure()
    blat = data.load_blat()
    print("   DeepLoc localisation: " + ", ".join(f"{k} {len(v)}" for k, v in loc.items()))
    print("   FLIP secondary structure: " + ", ".join(f"{k} {len(v)}" for k, v in ss.items()))
    counts = Counter("".join(ss["test"]["label"]))
    total = sum(counts.values())
    print(
        "   SS3 test label shares: "
        + ", ".join(f"{k} {v / total:.2f}" for k, v in sorted(counts.items()))
    )
    print(
        f"   BLAT DMS: {len(blat.data)} mutants, wild type {len(blat.wild_type)} aa, "
        f"offset {blat.offset}"
    )


def _cli(argv: list[str]) -> None:
    from protein_lm.cli import main as cli_main

    print("   $ protein-lm " + " ".join(argv))
    status = cli_main(argv)
    if status != 0:
        raise RuntimeError(f"protein-lm {argv[0]} exited with status {status}")


def _finetune_predict(work: Path) -> None:
    import csv
    import json

    from protein_lm.errors import require

    require("torch", "torch")
    ss = data.load_secondary_structure()
    # A short from-scratch run of the tiny ESM-2 on a slice of FLIP (full recipe: the README).
    files = {
        split: data.write_table(ss[split].select(range(n)), work / f"ss3_{split}.csv")
        for split, n in (("train", 1500), ("validation", 100), ("test", 364))
    }
    out = work / "ss3_model"
    _cli(
        [
            "finetune",
            "--task",
            "token-classification",
            "--model",
            "tiny",
            "--train",
            str(files["train"]),
            "--validation",
            str(files["validation"]),
            "--test",
            str(files["test"]),
            "--output-dir",
            str(out),
            "--max-steps",
            "60",
            "--batch-tokens",
            "4000",
            "--max-time",
            "90",
            "--eval-steps",
            "30",
            "--no-progress",
        ]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    print(
        f"   test Q3 after at most 60 steps / 90 s: {metrics['test'].get('q3', float('nan')):.3f}"
    )
    fasta = work / "ss3_test.fasta"
    fasta.write_text(
        "".join(f">{r['id']}\n{r['sequence']}\n" for r in ss["test"].select(range(3)))
    )
    _cli(["predict", "--model", str(out), str(fasta), "-o", str(work / "pred.csv")])
    with open(work / "pred.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    print(f"   {row['id']}: {row['prediction'][:60]}...")


def _fold(work: Path) -> None:
    from protein_lm.errors import require

    require("torch", "fold")
    fasta = work / "to_fold.fasta"
    fasta.write_text(
        ">trp_cage\nNLYIQWLKDGGPSSGRPPPS\n>insulin\nGIVEQCCTSICSLYQLENYCN:FVNQHLCGSHLVEALYLVCGERGFFYTPKT\n"
    )
    _cli(["fold", str(fasta), "-o", str(work / "structures"), "--model", "tiny", "--no-progress"])
    print("   (tiny random ESMFold: the plumbing is real, the structures are not)")
    print(
        "   " + (work / "structures" / "summary.csv").read_text().replace("\n", "\n   ").rstrip()
    )


def _embed(work: Path) -> None:
    from protein_lm.errors import require

    require("torch", "torch")
    out = work / "embeddings.npz"
    _cli(["embed", "--model", "tiny", str(data.data_path("some_proteins.fasta")), "-o", str(out)])
    import numpy as np

    with np.load(out) as z:
        print("   arrays: " + ", ".join(f"{k} {z[k].shape}" for k in z.files))


STEPS: list[tuple[str, Callable[[Path], None]]] = [
    ("Validate and tokenise a FASTA", _tokenise),
    ("Load the bundled real data sets", _datasets),
    ("Fine-tune a tiny ESM-2 on FLIP secondary structure, then predict", _finetune_predict),
    ("Fold a monomer and a heterodimer with a tiny random ESMFold", _fold),
    ("Embed sequences (mean over residues)", _embed),
]


def main() -> int:
    """Run every demo step in a temporary folder; returns 0."""
    import datasets

    datasets.disable_progress_bars()
    try:
        import transformers

        transformers.logging.disable_progress_bar()
    except ImportError:
        pass
    with tempfile.TemporaryDirectory(prefix="protein_lm_demo_") as tmp:
        for title, fn in STEPS:
            _step(title, fn, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
