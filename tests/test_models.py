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
