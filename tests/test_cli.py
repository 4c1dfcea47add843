"""`protein-lm finetune` / `predict`: round trip on real data, bad input exits with status 2."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from protein_lm.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def tables(ss, small_model_dir, tmp_path_factory):
    """The session's short FLIP SS3 subsets (`ss`) as train.csv / val.csv / test.tsv, and `small`:
    the session's 2-layer random ESM-2 folder."""
    from protein_lm.data import write_table

    d = tmp_path_factory.mktemp("cli")
    for split, name in (("train", "train.csv"), ("validation", "val.csv"), ("test", "test.tsv")):
        write_table(ss[split], d / name)
    (d / "small").symlink_to(small_model_dir, target_is_directory=True)
    return d


def _finetune_args(d: Path, out: Path, *extra: str) -> list[str]:
    return ["finetune", "--task", "token-classification", "--model", str(d / "small"),
            "--train", str(d / "train.csv"), "--validation", str(d / "val.csv"),
            "--output-dir", str(out), "--max-steps", "4", "--eval-steps", "2",
            "--batch-tokens", "2000", "--learning-rate", "2e-3", "--device", "cpu",
            "--no-progress", *extra]


def test_predict_round_trip_reproduces_test_metrics(ss_run, tables, tmp_path):
    """`protein-lm predict` on the test file of a fine-tuned folder (the session's `ss_run`,
    trained on the same records) gives the test Q3 of its metrics.json. What `protein-lm finetune`
    writes is checked in tests/pt/test_pt_training.py (the stale-temp-dir CLI run)."""
    out = ss_run[0]
    metrics = json.loads((out / "metrics.json").read_text())
    pred_csv = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(out), str(tables / "test.tsv"), "-o", str(pred_csv),
                 "--device", "cpu"]) == 0
    with open(pred_csv) as fh:
        preds = {r["id"]: r["prediction"] for r in csv.DictReader(fh)}
    with open(tables / "test.tsv") as fh:
        truth = list(csv.DictReader(fh, delimiter="\t"))
    hits = [p == t for row in truth for p, t, m in zip(preds[row["id"]], row["label"], row["mask"])
            if m == "1"]
    assert float(np.mean(hits)) == pytest.approx(metrics["test"]["q3"], abs=1e-6)


def test_predict_reads_fasta(ss_run, tmp_path):
    out = ss_run[0]
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">a\nMKTAYIAKQR\n>b\nGSHMLE\n")
    assert main(["predict", "--model", str(out), str(fasta), "-o", str(tmp_path / "p.csv"),
                 "--device", "cpu"]) == 0
    lines = (tmp_path / "p.csv").read_text().splitlines()
    assert lines[0] == "id,prediction" and [len(x.split(",")[1]) for x in lines[1:]] == [10, 6]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("train_text", "message"),
    [
        ("", "file is empty"),
        ("id,sequence\nq1,MKT\n", "missing column"),
        ("id,sequence,label,extra\nq1,MKT,CCC,1\n", "unknown column"),
        ("id,sequence,label\nq1,MKT,CC\nq2,MKTA,CCHH\n", "row 1 (id 'q1'), field 'label'"),
        ("id,sequence,label\nq1,MKT,CCC\nq2,MKTA,CCCC\n", "only one class"),
        ("id,sequence,label\nq1,MKT,CCC\nq2,MJTA,CCHH\n", "row 2 (id 'q2'), field 'sequence'"),
    ],
    ids=["empty", "missing-column", "unknown-column", "label-length", "single-class",
         "invalid-letter"],
)
def test_bad_training_file_exits_2_and_writes_nothing(tables, tmp_path, capsys, train_text, message):
    train = _write(tmp_path / "bad.csv", train_text)
    val = _write(tmp_path / "val.csv", "id,sequence,label\nv1,MKT,CHC\n")
    out = tmp_path / "out"
    code = main(["finetune", "--task", "token-classification", "--model", str(tables / "small"),
                 "--train", str(train), "--validation", str(val), "--output-dir", str(out),
                 "--max-steps", "1", "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "val.csv"]


def test_unknown_class_in_validation_names_the_file(tables, tmp_path, capsys):
    val = _write(tmp_path / "val.csv", "id,sequence,label\nv1,MKT,CHC\nv2,MKT,CZC\n")
    code = main(["finetune", "--task", "token-classification", "--model", str(tables / "small"),
                 "--train", str(tables / "train.csv"), "--validation", str(val),
                 "--output-dir", str(tmp_path / "o"), "--max-steps", "1", "--device", "cpu"])
    assert code == 2
    assert f"{val}, row 2 (id 'v2'), field 'label': unknown class 'Z'" in capsys.readouterr().err


def test_predict_bad_input_exits_2(tables, tmp_path, capsys):
    bad = _write(tmp_path / "x.fasta", ">a\nMKT1J\n")
    code = main(["predict", "--model", str(tables / "small"), str(bad), "-o", str(tmp_path / "p.csv")])
    assert code == 2
    assert "'J'" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()
    code = main(["predict", "--model", str(tmp_path / "nope"), str(bad), "-o", str(tmp_path / "p.csv")])
    assert code == 2


def test_existing_output_dir_is_not_clobbered(tables, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert main(_finetune_args(tables, out)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
