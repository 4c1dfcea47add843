"""`protein-lm embed`: output, bad input exits 2 and leaves nothing, --no-progress, permissions."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from protein_lm.cli import main  # noqa: E402
from protein_lm.embedding_store import load_embeddings  # noqa: E402
from protein_lm.embeddings import MAX_RESIDUES  # noqa: E402
from protein_lm.sequences import write_fasta  # noqa: E402

SEQS = {"p1": "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "p2": "MKTAYIAK", "p3": "GWGWGWGW",
        "p4": "MADEEKLPPGWEKRMSRSSGRVYYFNHITNASQWERPSG"}


def test_cli_embed(tmp_path: Path, capfd) -> None:
    fasta = tmp_path / "in.fasta"
    write_fasta(list(SEQS.items()), fasta)
    assert main(["embed", "--model", "tiny", str(fasta), "-o", str(tmp_path / "o.npz"),
                 "--per-residue", "--layers", "0", "-1", "--no-progress"]) == 0
    err = capfd.readouterr().err
    assert "embed:" not in err and "%|" not in err and "it/s" not in err  # no tqdm bar at all
    emb = load_embeddings(tmp_path / "o.npz")
    assert emb.layers == (0, 4) and emb.mean[4].shape == (4, 128)
    fasta.write_text(">a\nMKT\n>a\nMKV\n")
    assert main(["embed", "--model", "tiny", str(fasta), "-o", str(tmp_path / "d.npz")]) == 2
    assert f"{fasta}, line 3: duplicate id 'a'" in capfd.readouterr().err


def test_too_long_exits_2_leaves_nothing_and_the_advised_command_works(tmp_path: Path,
                                                                        capfd) -> None:
    rng = np.random.default_rng(0)
    long_seq = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=MAX_RESIDUES + 10))
    fasta = tmp_path / "in.fasta"
    write_fasta([("short", "MKTAYIAK"), ("long", long_seq)], fasta)
    out = tmp_path / "o.npz"
    argv = ["embed", "--model", "tiny", str(fasta), "-o", str(out), "--no-progress",
            "--shard-size", "1"]
    assert main(argv) == 2
    err = capfd.readouterr().err
    assert "'long' has 1032 residues" in err and "--long window" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.fasta"]  # no o.npz.parts/
    assert main([*argv, "--long", "window"]) == 0, capfd.readouterr().err
    assert load_embeddings(out).ids == ("short", "long")
    assert not (tmp_path / "o.npz.parts").exists()


def test_non_utf8_fasta_exits_2_naming_the_file(tmp_path: Path, capsys) -> None:
    fasta = tmp_path / "latin1.fasta"
    fasta.write_bytes(">p1 prot\xe9ine\nMKTAYIAK\n".encode("latin-1"))
    assert main(["embed", "--model", "tiny", str(fasta), "-o", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err
    assert f"{fasta}, line 1: not UTF-8 text (byte 0xe9 at offset 8)" in err
    assert len(err.strip().splitlines()) == 1


def test_outputs_follow_the_umask(tmp_path: Path) -> None:
    fasta = tmp_path / "in.fasta"
    write_fasta(list(SEQS.items()), fasta)
    old = os.umask(0o022)
    try:
        assert main(["embed", "--model", "tiny", str(fasta), "-o", str(tmp_path / "shards"),
                     "--shard-size", "2", "--no-progress"]) == 0
        assert main(["embed", "--model", "tiny", str(fasta), "-o", str(tmp_path / "m.npy"),
                     "--no-progress"]) == 0
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "shards").iterdir()}
    assert modes == {"manifest.json": 0o644, "shard-00000.npz": 0o644, "shard-00001.npz": 0o644}
    assert (tmp_path / "shards").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "m.npy").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "m.ids.txt").stat().st_mode & 0o777 == 0o644
