"""Framework-neutral run outputs: atomic directory, training log, metrics, plot, predictions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from protein_lm.errors import InvalidInputError
from protein_lm.finetuning.reporting import (
    LogEntry,
    atomic_output_dir,
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
