"""Model resolution: tiny configs, local directories, and the offline error for hub ids."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from protein_lm.errors import ModelNotFoundError  # noqa: E402
from protein_lm.models import ESM2_PRESETS, load_model, tiny_config  # noqa: E402
from protein_lm.tokenization import encode  # noqa: E402


def test_tiny_config_mirrors_esm2() -> None:
    cfg = tiny_config()
    assert cfg.vocab_size == 33 and cfg.position_embedding_type == "rotary"
    assert cfg.token_dropout and not cfg.emb_layer_norm_before
    assert cfg.hidden_dropout_prob == 0 and cfg.attention_probs_dropout_prob == 0
    assert cfg.pad_token_id == 1 and cfg.mask_token_id == 32


@pytest.mark.parametrize(
    ("task", "kwargs", "shape_last"),
    [
        ("masked-lm", {}, 33),
        ("sequence-classification", {"num_labels": 4}, 4),
        ("token-classification", {"id2label": {0: "C", 1: "E", 2: "H"}}, 3),
        ("regression", {}, 1),
    ],
    ids=["mlm", "seq", "token", "regression"],
)
def test_tiny_heads(task, kwargs, shape_last) -> None:
    model = load_model("tiny", task, config_overrides={"num_hidden_layers": 2, "hidden_size": 32,
                                                        "num_attention_heads": 2,
                                                        "intermediate_size": 64}, **kwargs)
    batch = encode(["MKTAYIAKQ", "MK"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape[-1] == shape_last
    if task == "regression":
        assert model.config.problem_type == "regression"


def test_tiny_is_seeded() -> None:
    a, b, c = load_model("tiny", seed=0), load_model("tiny", seed=0), load_model("tiny", seed=1)
    pa, pb, pc = (next(m.parameters()) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_local_directory_round_trip(tmp_path: Path) -> None:
    model = load_model("tiny", "token-classification", id2label={0: "C", 1: "E", 2: "H"})
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    again = load_model(str(tmp_path), "token-classification")
    assert again.config.id2label == {0: "C", 1: "E", 2: "H"}
    batch = encode(["MKTAYIAKQ"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, again(**batch).logits)


def test_uncached_hub_id_offline_fails_fast_with_advice(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelNotFoundError) as err:
        load_model(ESM2_PRESETS["esm2_t12_35M"]["hub_id"])
    assert time.monotonic() - start < 5
    assert "local model directory" in str(err.value) and "tiny" in str(err.value)


def test_missing_local_directory_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        load_model(str(tmp_path))
    with pytest.raises(ValueError, match="`task` must be one of"):
        load_model("tiny", "bogus")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`attn_implementation` must be 'eager' or 'sdpa'"):
        load_model("tiny", attn_implementation="flash")  # type: ignore[arg-type]


# ------------------------------------------------------------- one resolver for every command
class _Trap:
    """Unpickling this creates `marker`: proof that a pickle was (wrongly) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.mkdir, (str(self.marker),))


def _no_weights_dir(tmp_path: Path, pickled: bool) -> Path:
    d = tmp_path / ("pickled" if pickled else "config-only")
    tiny_config(num_layers=1, hidden_size=32, num_heads=4).save_pretrained(d)
    if pickled:
        import pickle

        (d / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(tmp_path / "PICKLE_LOADED")))
    return d


def _argv(command: str, model: str, tmp_path: Path) -> list[str]:
    fasta = tmp_path / "in.fasta"
    fasta.write_text(">a\nMKTAYIAKQR\n")
    table = tmp_path / "t.csv"
    table.write_text("id,sequence,label\na,MKT,x\nb,GSH,y\n")
    return {
        "predict": ["predict", "--model", model, str(fasta), "-o", str(tmp_path / "p.csv")],
        "embed": ["embed", "--model", model, str(fasta), "-o", str(tmp_path / "e.npz")],
        "finetune": ["finetune", "--task", "sequence-classification", "--model", model,
                     "--train", str(table), "--validation", str(table),
                     "--output-dir", str(tmp_path / "run"), "--max-steps", "1"],
    }[command]


@pytest.mark.parametrize("pickled", [False, True], ids=["config-only", "pickle-only"])
@pytest.mark.parametrize("command", ["predict", "embed", "finetune"])
def test_model_dir_without_safetensors_exits_2_with_one_line(
    command: str, pickled: bool, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from protein_lm.cli import main

    model = _no_weights_dir(tmp_path, pickled)
    assert main(_argv(command, str(model), tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(model) in err and "model.safetensors" in err and "refused on purpose" in err
    if pickled:
        assert "pytorch_model.bin" in err
    assert not (tmp_path / "PICKLE_LOADED").exists()  # the pickle was never opened
    assert not [p for p in tmp_path.iterdir() if p.name.startswith((".run", "run"))]


@pytest.mark.parametrize("command", ["predict", "embed", "finetune"])
def test_missing_path_says_folder_does_not_exist(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from protein_lm.cli import main

    missing = "path/that/does/not/exist"
    assert main(_argv(command, missing, tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"'{missing}' does not exist" in err
    assert "hf download" not in err


@pytest.mark.parametrize(
    ("name", "path_like"),
    [("path/that/does/not/exist", True), ("./model", True), ("~/runs/m", True),
     ("/abs/model", True), ("facebook/esm2_t6_8M_UR50D", False), ("esm2_t6_8M", False)],
    ids=["nested", "dot", "home", "absolute", "hub-id", "preset"],
)
def test_resolver_tells_paths_from_hub_ids(
    name: str, path_like: bool, monkeypatch, tmp_path: Path
) -> None:
    from protein_lm.models import resolve_model

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError) as err:
        resolve_model(name)
    message = str(err.value)
    if path_like:
        assert "does not exist" in message and "hf download" not in message
    else:
        assert "hf download facebook/esm2_t6_8M_UR50D" in message


def test_tf_loader_uses_the_same_resolver(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")
    from protein_lm.tf.checkpoint import load_tf_model

    model = _no_weights_dir(tmp_path, pickled=True)
    with pytest.raises(ModelNotFoundError, match="refused on purpose"):
        load_tf_model(str(model), "regression")
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_tf_model("path/that/does/not/exist", "regression")
    assert not (tmp_path / "PICKLE_LOADED").exists()
