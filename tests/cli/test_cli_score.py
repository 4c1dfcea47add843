"""`protein-lm score`: scores written back per row; bad mutation files exit 2 naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from protein_lm.cli import main  # noqa: E402

WT = "MKTAYIAKQRQISFVKSHFSRQ"


def _args(csv: Path, out: Path, *extra: str) -> list[str]:
    return ["score", "--model", "tiny", "--sequence", WT, "--mutations", str(csv), "-o", str(out),
            "--no-progress", *extra]


def test_cli_score_skip_invalid(tmp_path: Path) -> None:
    import pandas as pd

    csv = tmp_path / "m.csv"
    csv.write_text("mutant,fitness\nK2A,1.0\nB2A,0.5\nT3G,0.1\n")
    out = tmp_path / "o.csv"
    args = _args(csv, out, "--strategy", "wt-marginals", "masked-marginals")
    assert main(args) == 2 and not out.exists()
    assert main([*args, "--skip-invalid"]) == 0
    got = pd.read_csv(out)
    assert list(got.columns) == ["mutant", "fitness", "score_wt-marginals", "score_masked-marginals"]
    assert got["score_masked-marginals"].isna().tolist() == [False, True, False]


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "file is empty"),
     ("mutant,note\nK2A,d\xe9j\xe0 vu\n".encode("latin-1"), "line 2: not UTF-8 text (byte 0xe9"),
     (b"variant\nK2A\n", "no 'mutant' column"),
     (b"mutant\n", "no data rows")],
    ids=["empty", "latin-1", "no-column", "header-only"],
)
def test_bad_mutation_file_exits_2_naming_the_file(tmp_path: Path, capsys, content: bytes,
                                                   message: str) -> None:
    csv = tmp_path / "muts.csv"
    csv.write_bytes(content)
    assert main(_args(csv, tmp_path / "o.csv")) == 2
    err = capsys.readouterr().err
    assert f"protein-lm score: error: {csv}" in err and message in err
    assert not (tmp_path / "o.csv").exists()
