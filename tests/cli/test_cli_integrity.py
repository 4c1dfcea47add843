"""Results are never silently wrong (issue #16): bad labels, verbatim pass-through, one writer."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from protein_lm.cli import main


def _finetune(train: Path, val: Path, out: Path, task: str, *extra: str) -> list[str]:
    return ["finetune", "--task", task, "--model", "tiny", "--train", str(train),
            "--validation", str(val), "--output-dir", str(out), "--max-steps", "1",
            "--device", "cpu", "--no-progress", *extra]


@pytest.mark.parametrize("value", ["nan", "-inf"])
def test_finetune_non_finite_label_exits_2_before_any_model(tmp_path, capsys, value) -> None:
    train = tmp_path / "train.csv"
    train.write_text(f"sequence,label\nMKT,0.5\nMKV,{value}\n")
    val = tmp_path / "val.csv"
    val.write_text("sequence,label\nMKT,0.5\n")
    out = tmp_path / "out"
    assert main(_finetune(train, val, out, "regression")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"{train}, row 2 (id 'row2'), field 'label': '{value}' is not a finite" in err
    assert not out.exists()


def test_score_passes_extra_columns_through_verbatim(tmp_path, capsys) -> None:
    # `007` (pandas: 7), `NA` (pandas: empty), an empty cell and a blank header (pandas:
    # `Unnamed: 1`) must come out exactly as they went in.
    muts = tmp_path / "m.csv"
    muts.write_text('mutant,,plate,note\nK2A,007,NA,\nT3G,x,"a,b",NA\n')
    out = tmp_path / "o.csv"
    assert main(["score", "--model", "tiny", "--sequence", "MKTAYIAKQR", "--mutations",
                 str(muts), "-o", str(out), "--strategy", "wt-marginals", "--no-progress"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "mutant,,plate,note,score_wt-marginals"
    assert [line.rsplit(",", 1)[0] for line in lines[1:]] == ["K2A,007,NA,", 'T3G,x,"a,b",NA']


def _held(output: Path) -> int:
    """Lock `output` as another run would (its own open file, a pid in the lock file)."""
    import fcntl
    import os

    fd = os.open(output.parent / f".{output.name}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, b"4242\n")
    return fd


def test_second_writer_of_an_output_exits_2_naming_the_pid(tmp_path, capsys) -> None:
    import os

    muts = tmp_path / "m.csv"
    muts.write_text("mutant\nK2A\n")
    out = tmp_path / "o.csv"
    fd = _held(out)
    try:
        code = main(["score", "--model", "tiny", "--sequence", "MKTAYIAKQR", "--mutations",
                     str(muts), "-o", str(out), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0
        assert (f"{out} is being written by another run (pid 4242); wait for it or choose "
                "another output") in err
        assert not out.exists()
        # finetune: the output folder is locked by the one home of folder writes, either framework
        train = tmp_path / "t.csv"
        train.write_text("sequence,label\nMKT,0.5\nMKV,1.5\n")
        run = tmp_path / "run"
        fd2 = _held(run)
        try:
            assert main(_finetune(train, train, run, "regression")) == 2
            assert "run is being written by another run (pid 4242)" in capsys.readouterr().err
            assert not run.exists()
        finally:
            os.close(fd2)
    finally:
        os.close(fd)


def test_finetune_writes_through_a_symlinked_output_dir(tmp_path, capsys) -> None:
    train = tmp_path / "t.csv"
    train.write_text("sequence,label\nMKT,0.5\nMKVL,1.5\nMKTA,1.0\n")
    target = tmp_path / "store"
    target.mkdir()
    link = tmp_path / "run"
    link.symlink_to(target, target_is_directory=True)
    assert main(_finetune(train, train, link, "regression")) == 0
    assert link.is_symlink() and (target / "metrics.json").is_file()


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_finetune_refuses_a_regular_file_as_output_dir(tmp_path, capsys, overwrite) -> None:
    train = tmp_path / "t.csv"
    train.write_text("sequence,label\nMKT,0.5\nMKVL,1.5\n")
    afile = tmp_path / "afile"
    afile.write_text("mine")
    assert main(_finetune(train, train, afile, "regression", *overwrite)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "afile' is a file, not a folder" in err
    assert afile.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "t.csv"]


def test_embed_removes_a_torn_temp_file_left_by_a_killed_save(tmp_path, capsys) -> None:
    import socket

    fasta = tmp_path / "in.fasta"
    fasta.write_text(">a\nMKTAYIAK\n>b\nMKV\n")
    host = socket.gethostname().split(".")[0]
    host = "".join(c if c.isalnum() or c == "-" else "-" for c in host) or "host"
    torn = tmp_path / f".o.npz.999999999@{host}.abcd1234.tmp"  # no such process: killed
    torn.write_bytes(b"PK\x03\x04 half")
    assert main(["embed", "--model", "tiny", str(fasta), "-o", str(tmp_path / "o.npz"),
                 "--no-progress"]) == 0
    assert not torn.exists() and (tmp_path / "o.npz").is_file()
    assert not list(tmp_path.glob(".*.tmp"))
