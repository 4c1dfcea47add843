"""`tf.predict`: the Keras path reads a fine-tuned directory like the PyTorch path does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("tensorflow")

from protein_lm.errors import InvalidInputError, ModelNotFoundError  # noqa: E402
from protein_lm.tf.predict import predict  # noqa: E402

SMALL = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 4,
         "intermediate_size": 64}


def test_predict_needs_a_trained_head(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from protein_lm.models import load_model

    load_model("tiny", "masked-lm").save_pretrained(tmp_path)
    with pytest.raises(InvalidInputError, match="not a fine-tuned"):
        predict(tmp_path, ["MKT"])


def test_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        predict(tmp_path / "nope", ["MKT"])


def test_same_predictions_as_pytorch_with_windows(tmp_path: Path) -> None:
    """Token task, a sequence longer than the window: both frameworks average the same windows."""
    pytest.importorskip("torch")
    from protein_lm.models import load_model
    from protein_lm.pt.predict import predict as pt_predict

    model = load_model("tiny", "token-classification", id2label={0: "C", 1: "E", 2: "H"},
                       config_overrides=SMALL, seed=3)
    model.config.protein_lm_task = "token-classification"
    model.save_pretrained(tmp_path)
    seqs = {"long": "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEK", "short": "MKT"}
    ours = predict(tmp_path, seqs, max_length=40)
    theirs = pt_predict(tmp_path, seqs, max_length=40)
    assert ours.predictions == theirs.predictions and ours.ids == theirs.ids
    assert [len(p) for p in ours.predictions] == [len(seqs["long"]), 3]
