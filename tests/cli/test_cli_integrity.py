"""Results are never silently wrong (issue #16): bad labels, verbatim pass-through, one writer."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from protein_lm.cli import main  # noqa: E402


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
