"""`--device` is checked before any work (issue #16): a missing device is exit 2, nothing made."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from protein_lm.cli import main
from protein_lm.errors import InvalidInputError
from protein_lm.models import check_device, load_model

COMMANDS = ("embed", "score", "predict", "fold", "finetune")


def _argv(command: str, tmp_path: Path, device: str) -> tuple[list[str], Path]:
    """A valid command line for `command` and the output it would create."""
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">a\nMKTAYIAKQR\n")
    table = tmp_path / "t.csv"
    table.write_text("sequence,label\nMKT,0.5\nMKV,1.5\n")
    muts = tmp_path / "m.csv"
    muts.write_text("mutant\nK2A\n")
    out = tmp_path / "out"
    argv = {
        "embed": ["embed", "--model", "tiny", str(fasta), "-o", str(out)],
        "score": ["score", "--model", "tiny", "--sequence", "MKTAYIAKQR", "--mutations",
                  str(muts), "-o", str(out)],
        "predict": ["predict", "--model", "tiny", str(fasta), "-o", str(out)],
        "fold": ["fold", "--model", "tiny", str(fasta), "-o", str(out)],
        "finetune": ["finetune", "--task", "regression", "--model", "tiny", "--train",
                     str(table), "--validation", str(table), "--output-dir", str(out),
                     "--max-steps", "1"],
    }[command]
    return [*argv, "--device", device, "--no-progress"], out


def _made(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir()
                  if p.name not in ("in.fasta", "t.csv", "m.csv"))


@pytest.mark.parametrize("command", COMMANDS)
def test_cuda_on_a_machine_without_cuda_exits_2_and_makes_nothing(
    command: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv, _ = _argv(command, tmp_path, "cuda")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert ("--device cuda: CUDA is not available on this machine "
            "(torch.cuda.is_available() is False); use --device cpu") in err
    assert _made(tmp_path) == []


@pytest.mark.parametrize("command", ["embed", "score", "predict", "fold"])
def test_cuda_index_past_the_device_count_exits_2(
    command: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    argv, _ = _argv(command, tmp_path, "cuda:9")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "--device cuda:9: this machine has 1 CUDA device(s), cuda:0 to cuda:0" in err
    assert _made(tmp_path) == []


@pytest.mark.parametrize("command", ["embed", "fold"])
def test_mps_on_a_machine_without_mps_exits_2(
    command: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    argv, _ = _argv(command, tmp_path, "mps")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device mps: MPS is not available" in err
    assert _made(tmp_path) == []


def test_library_loaders_refuse_a_missing_device(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidInputError, match=r"device='cuda': CUDA is not available"):
        load_model("tiny", device="cuda")
    from protein_lm.folding.esmfold import load_folding_model

    with pytest.raises(InvalidInputError, match=r"device='cuda:1': CUDA is not available"):
        load_folding_model("tiny", device="cuda:1")
    check_device("cpu")
    check_device(None)
