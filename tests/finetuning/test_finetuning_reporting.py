"""Framework-neutral run outputs: atomic directory, training log, metrics, plot, predictions."""

from __future__ import annotations

import json
import logging
import math
import os
import stat
import tempfile

import numpy as np
import pytest

from protein_lm.errors import InvalidInputError
from protein_lm.finetuning.reporting import (
    LogEntry,
    atomic_output_dir,
    clean_metrics,
    plot_training_curves,
    read_predict_input,
    read_training_log,
    write_metrics,
    write_predictions,
    write_training_log,
)

ENTRIES = [
    LogEntry(1, 0.1, "train", "loss", 1.1),
    LogEntry(2, 0.2, "train", "loss", 0.9),
    LogEntry(2, 0.2, "validation", "loss", 1.0),
    LogEntry(2, 0.2, "validation", "q3", 0.55),
    LogEntry(4, 0.4, "validation", "q3", 0.61),
]


def test_atomic_output_dir_appears_only_on_success(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(RuntimeError):
        with atomic_output_dir(out) as tmp:
            (tmp / "model.safetensors").write_text("partial")
            raise RuntimeError("training crashed")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone too
    with atomic_output_dir(out) as tmp:
        (tmp / "metrics.json").write_text("{}")
        assert not out.exists()
    assert (out / "metrics.json").read_text() == "{}"


def test_atomic_output_dir_refuses_a_non_empty_directory_unless_overwrite(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "old.txt").write_text("keep")
    with pytest.raises(InvalidInputError, match="already exists and is not empty"):
        with atomic_output_dir(out):
            pass
    assert (out / "old.txt").read_text() == "keep"
    with atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_training_log_round_trips(tmp_path):
    path = write_training_log(ENTRIES, tmp_path / "training_log.csv")
    assert path.read_text().splitlines()[0] == "step,epoch,split,name,value"
    assert read_training_log(path) == ENTRIES


def test_metrics_json_has_validation_and_test_and_no_nan(tmp_path):
    path = write_metrics(tmp_path / "metrics.json", {"q3": np.float32(0.5), "mcc": math.nan},
                         None, best_step=np.int64(4))
    data = json.loads(path.read_text())
    assert data == {"validation": {"q3": 0.5, "mcc": None}, "test": None, "best_step": 4}


def test_plot_writes_a_png(tmp_path):
    path = plot_training_curves(ENTRIES, tmp_path / "curves.png", title="SS3")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predictions_csv_columns(tmp_path):
    path = write_predictions(tmp_path / "p.csv", ["a", "b"], ["membrane", "soluble"],
                             np.array([[0.9, 0.1], [0.2, 0.8]]), ["membrane", "soluble"])
    lines = path.read_text().splitlines()
    assert lines[0] == "id,prediction,prob_membrane,prob_soluble"
    assert lines[1] == "a,membrane,0.9,0.1"
    reg = write_predictions(tmp_path / "r.csv", ["a"], [np.float32(1.5)])
    assert reg.read_text().splitlines() == ["id,prediction", "a,1.5"]
    with pytest.raises(ValueError, match="must name all 2 probability columns"):
        write_predictions(tmp_path / "x.csv", ["a"], ["m"], np.array([[0.5, 0.5]]), ["m"])


def test_read_predict_input_fasta_and_csv(tmp_path):
    fasta = tmp_path / "x.fasta"
    fasta.write_text(">p1\nMKT\n>p2\nAAA\n")
    assert [r.id for r in read_predict_input(fasta)] == ["p1", "p2"]
    csv = tmp_path / "x.csv"
    csv.write_text("id,sequence,label\nq1,MKTA,H\n,GGG,C\n")
    recs = read_predict_input(csv)
    assert [(r.id, r.sequence) for r in recs] == [("q1", "MKTA"), ("row2", "GGG")]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,sequence\nq1,MKJT\n")
    with pytest.raises(InvalidInputError, match=r"bad.csv, row 1 \(id 'q1'\), field 'sequence'"):
        read_predict_input(bad)
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("id,seq\nq1,MKT\n")
    with pytest.raises(InvalidInputError, match="no 'sequence' column"):
        read_predict_input(nocol)


def test_atomic_output_dir_removes_stale_temp_folders_of_killed_runs(tmp_path, caplog):
    out = tmp_path / "run"
    old_style = tmp_path / ".run.k2j4h8sd.tmp"  # before pids were in the name
    dead = tmp_path / ".run.999999999.abcd1234.tmp"  # no such process
    alive = tmp_path / f".run.{os.getppid()}.abcd1234.tmp"  # another run still writing
    other = tmp_path / ".runs.999999999.abcd1234.tmp"  # a different output: not ours
    for d in (old_style, dead, alive, other):
        (d / "checkpoints").mkdir(parents=True)
    with caplog.at_level(logging.INFO, logger="protein_lm"):
        with atomic_output_dir(out) as tmp:
            assert tmp.name.startswith(f".run.{os.getpid()}.")
            (tmp / "metrics.json").write_text("{}")
    assert not old_style.exists() and not dead.exists()
    assert alive.exists() and other.exists()
    assert "interrupted run" in caplog.text and str(dead) in caplog.text


def test_atomic_output_dir_follows_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_output_dir(tmp_path / "run") as tmp:
            fd, _ = tempfile.mkstemp(dir=tmp, suffix=".safetensors")  # 0600, as libraries do
            os.close(fd)
            tempfile.mkdtemp(dir=tmp)  # 0700
            (tmp / "metrics.json").write_text("{}")
    finally:
        os.umask(old)
    out = tmp_path / "run"
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    for p in out.rglob("*"):
        assert stat.S_IMODE(p.stat().st_mode) == (0o755 if p.is_dir() else 0o644), p


def test_metric_counts_are_int_whichever_path_logged_them(tmp_path):
    """Regression: the PyTorch logger handed `n_residues` over as float for validation only."""
    assert clean_metrics({"q3": np.float32(0.5), "n_residues": 120.0}) == {
        "q3": 0.5, "n_residues": 120}
    write_metrics(tmp_path / "m.json", {"q3": 0.5, "n_residues": 120.0},
                  {"q3": 0.4, "n_residues": np.int64(80)})
    data = json.loads((tmp_path / "m.json").read_text())
    assert type(data["validation"]["n_residues"]) is type(data["test"]["n_residues"]) is int


def test_read_predict_input_names_a_non_utf8_csv(tmp_path):
    """Issue #10 F4: a Latin-1 CSV gives the file and line, not a bare codec error."""
    path = tmp_path / "latin1.csv"
    path.write_bytes("id,sequence\nprot\u00e9ine,MKT\n".encode("latin-1"))
    with pytest.raises(InvalidInputError, match=r"latin1\.csv, line 2: not UTF-8"):
        read_predict_input(path)
