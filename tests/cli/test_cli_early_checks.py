"""Every option and model is checked before work starts (issue #16): exit 2, one line naming the
flag or file, nothing created."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("torch")

from protein_lm.cli import main


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">a\nMKTAYIAKQR\n>b\nMKVLA\n")
    table = tmp_path / "t.csv"
    table.write_text("sequence,label\nMKTAYIAKQR,a\nMKVLA,b\nMKTAYI,a\nMKVLAQ,b\n")
    return fasta, table


def _exit_code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own refusals
        return int(exc.code or 0)


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["fold", "{fasta}", "-o", "{out}", "--model", "tiny", "--max-length", "-5"],
         "argument --max-length: must be >= 0, got -5"),
        (["fold", "{fasta}", "-o", "{out}", "--model", "tiny", "--num-recycles", "-1"],
         "argument --num-recycles: must be >= 0, got -1"),
        (["fold", "{fasta}", "-o", "{out}", "--model", "tiny", "--max-tokens", "0"],
         "argument --max-tokens: must be > 0, got 0"),
        (["embed", "{fasta}", "-o", "{out}.npz", "--model", "tiny", "--batch-tokens", "0"],
         "argument --batch-tokens: must be > 0, got 0"),
        (["embed", "{fasta}", "-o", "{out}.npy", "--model", "tiny", "--per-residue"],
         ".npy holds only mean embeddings"),
        (["predict", "--model", "{out}", "{fasta}", "-o", "{out}.csv", "--batch-tokens", "-1"],
         "argument --batch-tokens: must be > 0, got -1"),
        (["finetune", "--task", "sequence-classification", "--model", "tiny", "--train",
          "{table}", "--validation", "{table}", "--output-dir", "{out}", "--epochs", "nan"],
         "argument --epochs: must be a finite number > 0, got nan"),
        (["-v", "embed", "{fasta}", "-o", "{out}.npz", "--model", "tiny", "-q"],
         "argument -q/--quiet: not allowed with argument -v/--verbose"),
    ],
    ids=["fold-max-length", "fold-num-recycles", "fold-max-tokens", "embed-batch-tokens",
         "embed-npy-per-residue", "predict-batch-tokens", "finetune-epochs-nan", "v-and-q"],
)
def test_bad_options_exit_2_naming_the_flag_and_create_nothing(tmp_path, capsys, argv, named):
    fasta, table = _inputs(tmp_path)
    before = sorted(tmp_path.iterdir())
    out = tmp_path / "out"
    argv = [a.format(fasta=fasta, table=table, out=out) for a in argv]
    assert _exit_code(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert named in err[-1]  # argparse prints its usage above the one error line
    assert sorted(tmp_path.iterdir()) == before


def test_finetune_overwrite_never_deletes_the_current_folder_or_inputs(tmp_path, capsys) -> None:
    _, table = _inputs(tmp_path)
    argv = ["finetune", "--task", "sequence-classification", "--model", "tiny", "--train",
            "t.csv", "--validation", "t.csv", "--max-steps", "1", "--no-progress", "--overwrite"]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main([*argv, "--output-dir", "."]) == 2  # the inputs are inside "."
        assert "t.csv is inside --output-dir ." in capsys.readouterr().err
        other = tmp_path / "notes"
        other.mkdir()
        (other / "mine.txt").write_text("keep")
        assert main([*argv, "--output-dir", "notes"]) == 2  # not an earlier run's output
        assert "is not an earlier run's output (no finetune_config.json)" in (
            capsys.readouterr().err
        )
        (other / "mine.txt").unlink()
        os.chdir(other)  # the current folder, with the inputs elsewhere
        (other / "here.txt").write_text("keep")
        assert main([*argv[:6], "../t.csv", "--validation", "../t.csv", *argv[9:],
                     "--output-dir", "."]) == 2
        assert "holds the current directory" in capsys.readouterr().err
    finally:
        os.chdir(cwd)
    assert table.read_text().startswith("sequence,label") and (other / "here.txt").is_file()


@pytest.fixture(scope="module")
def two_class_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a 2-class sequence head (labels a, b), as `finetune` writes one."""
    from protein_lm.models import load_model

    d = tmp_path_factory.mktemp("two_class")
    load_model("tiny", "sequence-classification", id2label={0: "a", 1: "b"}).save_pretrained(d)
    return d


@pytest.mark.parametrize("framework", ["pt", "tf"])
def test_continuing_a_2_class_head_with_3_classes_exits_2(tmp_path, capsys, two_class_dir,
                                                           framework) -> None:
    if framework == "tf":
        pytest.importorskip("keras")
    table = tmp_path / "t3.csv"
    table.write_text("sequence,label\nMKTAYIAKQR,a\nMKVLA,b\nMKTAYI,c\n")
    out = tmp_path / "out"
    argv = ["finetune", "--task", "sequence-classification", "--model", str(two_class_dir),
            "--train", str(table), "--validation", str(table), "--output-dir", str(out),
            "--max-steps", "1", "--no-progress", "--framework", framework]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f"Model folder '{two_class_dir}' holds a 2-class ['a', 'b']" in err[-1]
    assert "this run has 3-class ['a', 'b', 'c'] labels" in err[-1]
    assert not out.exists()


def test_check_head_keeps_a_head_for_the_same_labels_and_refuses_regression() -> None:
    from protein_lm.errors import InvalidInputError
    from protein_lm.models import check_head, label_config_kwargs

    config = {"architectures": ["EsmForSequenceClassification"], "id2label": {"0": "a", "1": "b"}}
    same = label_config_kwargs("sequence-classification", None, {0: "a", 1: "b"})
    check_head(config, "sequence-classification", same, "m")  # continue training: allowed
    renamed = label_config_kwargs("sequence-classification", None, {0: "x", 1: "y"})
    with pytest.raises(InvalidInputError, match="2-class"):
        check_head(config, "sequence-classification", renamed, "m")  # silent relabel refused
    with pytest.raises(InvalidInputError, match="regression labels"):
        check_head(config, "regression", label_config_kwargs("regression", None, None), "m")
    base = {"architectures": ["EsmForMaskedLM"]}
    check_head(base, "sequence-classification", renamed, "m")  # a base model: new head


def test_fold_with_an_esm2_folder_exits_2_before_any_output(tmp_path, capsys,
                                                            small_model_dir) -> None:
    fasta, _ = _inputs(tmp_path)
    out = tmp_path / "structures"
    assert main(["fold", str(fasta), "-o", str(out), "--model", str(small_model_dir),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not an ESMFold model" in err[0] and "EsmForMaskedLM" in err[0]
    assert not out.exists()


def test_predict_with_tiny_says_it_needs_a_trained_folder(tmp_path, capsys) -> None:
    fasta, _ = _inputs(tmp_path)
    assert main(["predict", "--model", "tiny", str(fasta), "-o", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'tiny' is an untrained random ESM-2" in err
    assert "use `tiny`" not in err and not (tmp_path / "p.csv").exists()
