"""transformers checkpoints <-> Keras: PT->TF->PT round trips, complete directories, bad files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")

from protein_lm.errors import InvalidInputError, ModelNotFoundError  # noqa: E402
from protein_lm.models import load_model  # noqa: E402
from protein_lm.tf.checkpoint import load_tf_model, save_tf_model, tf_state_dict  # noqa: E402
from protein_lm.tokenization import encode  # noqa: E402
from pt_reference import SEQS, TASKS, pt_logits, pt_model  # noqa: E402

@pytest.mark.parametrize("task", TASKS)
def test_pt_tf_pt_round_trip_gives_same_logits(task: str, tmp_path: Path) -> None:
    import transformers

    pt = pt_model(task, {}, seed=1)
    pt.save_pretrained(tmp_path / "pt")
    save_tf_model(load_tf_model(str(tmp_path / "pt"), task), tmp_path / "tf")
    cls = (
        transformers.EsmForTokenClassification
        if task == "token-classification"
        else transformers.EsmForSequenceClassification
    )
    back, info = cls.from_pretrained(tmp_path / "tf", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    batch = encode(SEQS)
    assert np.abs(pt_logits(back.eval(), batch) - pt_logits(pt, batch)).max() <= 1e-6
    assert back.config.id2label == pt.config.id2label
    assert back.config.problem_type == pt.config.problem_type


def test_tf_tiny_saved_loads_completely_in_pytorch(tmp_path: Path) -> None:
    import transformers

    model = load_tf_model(
        "tiny", "token-classification", id2label={0: "H", 1: "E", 2: "C"}, seed=3
    )
    save_tf_model(model, tmp_path)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in tmp_path.iterdir()
    }
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())
    pt, info = transformers.EsmForTokenClassification.from_pretrained(
        tmp_path, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    batch = encode(SEQS)
    assert np.abs(pt_logits(pt.eval(), batch) - np.asarray(model(batch))).max() <= 1e-4
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert tok("MKT")["input_ids"] == [0, 20, 15, 11, 2]


def test_seeded_tiny_is_reproducible_and_seed_dependent() -> None:
    a = tf_state_dict(load_tf_model("tiny", "sequence-classification", num_labels=2, seed=0))
    b = tf_state_dict(load_tf_model("tiny", "sequence-classification", num_labels=2, seed=0))
    c = tf_state_dict(load_tf_model("tiny", "sequence-classification", num_labels=2, seed=1))
    key = "esm.encoder.layer.0.attention.self.query.weight"
    assert np.array_equal(a[key], b[key]) and not np.array_equal(a[key], c[key])


def test_masked_lm_checkpoint_gets_a_new_head_and_keeps_the_encoder(tmp_path: Path) -> None:
    pt = load_model("tiny", "masked-lm", seed=4)  # the layout of hub ESM-2 checkpoints
    pt.save_pretrained(tmp_path)
    model = load_tf_model(str(tmp_path), "sequence-classification", num_labels=4, seed=0)
    assert set(model.new_head) == {
        "classifier.dense.weight",
        "classifier.dense.bias",
        "classifier.out_proj.weight",
        "classifier.out_proj.bias",
    }
    state = tf_state_dict(model)
    ref = pt.state_dict()["esm.embeddings.word_embeddings.weight"].numpy()
    assert np.array_equal(state["esm.embeddings.word_embeddings.weight"], ref)
    assert not any(
        k.startswith("lm_head") for k in state
    )  # MLM head not carried into a classifier


# ----------------------------------------------------------------------------- bad input
def test_directory_without_weights_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="model.safetensors"):
        load_tf_model(str(tmp_path), "regression")


def test_stray_safetensors_beside_model_safetensors_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The files PyTorch loads, and no others: a stray backup must not overwrite the weights."""
    from safetensors.numpy import save_file

    pt = load_model("tiny", "regression", seed=5)
    pt.save_pretrained(tmp_path)
    stray = {k: v.numpy() + 1.0 for k, v in pt.state_dict().items() if v.is_floating_point()}
    save_file(stray, str(tmp_path / "zz_old_backup.safetensors"))
    with caplog.at_level("WARNING"):
        state = tf_state_dict(load_tf_model(str(tmp_path), "regression"))
    assert "zz_old_backup.safetensors" in caplog.text
    key = "esm.encoder.layer.0.attention.self.query.weight"
    assert np.array_equal(state[key], pt.state_dict()[key].numpy())
    batch = encode(SEQS)
    tf_model = load_tf_model(str(tmp_path), "regression")
    assert np.abs(np.asarray(tf_model(batch)) - pt_logits(pt.eval(), batch)).max() <= 1e-4


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path: Path) -> None:
    load_model("tiny", "regression").save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["hidden_size"], cfg["intermediate_size"] = 64, 256
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        InvalidInputError, match=r"esm\.embeddings\.word_embeddings\.weight has shape"
    ):
        load_tf_model(str(tmp_path), "regression")


# ---------------------------------------------------------------------------- side effects
def test_loading_leaves_the_global_random_states_alone() -> None:
    """Weights come from seeded numpy; Keras' default initialisers would draw from `random`."""
    import random

    from protein_lm.tf.model import EsmTaskModel

    random.seed(3), np.random.seed(3)
    expected = random.random(), float(np.random.random())
    random.seed(3), np.random.seed(3)
    model = load_tf_model("tiny", "token-classification", num_labels=3)
    assert (random.random(), float(np.random.random())) == expected
    assert isinstance(model, EsmTaskModel) and model.new_head == []
    assert set(model.passthrough) == {
        "esm.contact_head.regression.weight", "esm.contact_head.regression.bias"
    }
