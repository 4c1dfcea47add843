"""Strict weight loading (issue #16): `model.safetensors` or its index's shards, validated."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

pytest.importorskip("torch")

from protein_lm.cli import main
from protein_lm.errors import InvalidInputError, ModelNotFoundError
from protein_lm.models import check_safetensors, load_model, tiny_config

FIX = "re-save or re-download the model"


def _saved(folder: Path, **save_kwargs: object) -> Path:
    """A tiny masked-LM saved with `save_pretrained` (safetensors)."""
    import transformers

    model = transformers.EsmForMaskedLM(tiny_config(num_layers=1, hidden_size=32, num_heads=4))
    model.save_pretrained(folder, safe_serialization=True, **save_kwargs)
    return folder


def _corrupt(file: Path, how: str) -> None:
    data = file.read_bytes()
    if how == "body-cut":
        file.write_bytes(data[:-100])
    elif how == "header-cut":
        file.write_bytes(data[:40])
    elif how == "junk":
        file.write_bytes(bytes(range(256)) * 8)
    elif how == "appended":
        file.write_bytes(data + b"\0" * 16)
    elif how == "offsets":  # a header whose first tensor claims bytes past the end of the file
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + n])
        first = next(k for k in header if k != "__metadata__")
        header[first]["data_offsets"][1] += 10**9
        raw = json.dumps(header).encode()
        file.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + n :])


def _argv(command: str, model: Path, tmp_path: Path) -> list[str]:
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">a\nMKTAYIAKQR\n")
    muts = tmp_path / "m.csv"
    muts.write_text("mutant\nK2A\n")
    out = str(tmp_path / "out")
    return {
        "embed": ["embed", "--model", str(model), str(fasta), "-o", out],
        "score": ["score", "--model", str(model), "--sequence", "MKTAYIAKQR", "--mutations",
                  str(muts), "-o", out],
        "predict": ["predict", "--model", str(model), str(fasta), "-o", out],
        "fold": ["fold", "--model", str(model), str(fasta), "-o", out],
    }[command] + ["--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("how", ["body-cut", "header-cut", "junk", "appended", "offsets"])
@pytest.mark.parametrize("command", ["embed", "score", "predict", "fold"])
def test_damaged_model_safetensors_exits_2_naming_the_file(
    command: str, how: str, tmp_path: Path, capsys
) -> None:
    model = _saved(tmp_path / "model")
    _corrupt(model / "model.safetensors", how)
    capsys.readouterr()  # transformers' "Writing model shards" bar
    assert main(_argv(command, model, tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(model / "model.safetensors") in err and FIX in err
    assert not (tmp_path / "out").exists()


def test_junk_safetensors_beside_a_pickle_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    model = tmp_path / "model"
    tiny_config(num_layers=1, hidden_size=32, num_heads=4).save_pretrained(model)
    (model / "junk.safetensors").write_bytes(b"not a safetensors file")
    (model / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")  # a pickle: never opened
    assert main(_argv("embed", model, tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "has no model.safetensors" in err and "junk.safetensors" in err
    assert "pytorch_model.bin" in err and "refused on purpose" in err
    with pytest.raises(ModelNotFoundError, match=r"junk\.safetensors"):
        load_model(str(model))


def test_other_safetensors_are_ignored_with_a_warning(tmp_path: Path, caplog) -> None:
    model = _saved(tmp_path / "model")
    (model / "old.safetensors").write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger="protein_lm"):
        assert check_safetensors(model) == [model / "model.safetensors"]
    assert "ignoring old.safetensors" in caplog.text
    assert load_model(str(model), device="cpu") is not None


def test_sharded_weights_are_the_files_the_index_names(tmp_path: Path) -> None:
    model = _saved(tmp_path / "model", max_shard_size="20KB")
    assert not (model / "model.safetensors").exists()
    shards = check_safetensors(model)
    assert len(shards) > 1 and all(s.name.startswith("model-000") for s in shards)
    assert load_model(str(model), device="cpu") is not None
    _corrupt(shards[-1], "body-cut")
    with pytest.raises(InvalidInputError, match=f"{shards[-1].name}.*{FIX}"):
        load_model(str(model), device="cpu")
    shards[-1].unlink()
    with pytest.raises(InvalidInputError, match=f"names '{shards[-1].name}', which is not a file"):
        check_safetensors(model)
