"""`pt.predict`: a fine-tuned directory predicts every residue, also past the model's window."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")


def test_predict_covers_long_sequences_with_windows(tmp_path) -> None:
    from protein_lm.models import load_model
    from protein_lm.pt.predict import predict

    model = load_model("tiny", "token-classification", id2label={0: "C", 1: "E", 2: "H"},
                       config_overrides={"num_hidden_layers": 1, "hidden_size": 32,
                                         "num_attention_heads": 4, "intermediate_size": 64})
    model.config.protein_lm_task = "token-classification"
    model.save_pretrained(tmp_path)
    long_seq = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQAPILSRVGDGTQDNLSGAEK"  # > 38 residues
    pred = predict(tmp_path, {"long": long_seq, "short": "MKT"}, max_length=40)
    assert [len(p) for p in pred.predictions] == [len(long_seq), 3]
    assert set("".join(pred.predictions)) <= {"C", "E", "H"}


def test_predict_refuses_a_model_without_a_head(tmp_path) -> None:
    from protein_lm.errors import InvalidInputError
    from protein_lm.models import load_model
    from protein_lm.pt.predict import predict

    load_model("tiny", "masked-lm").save_pretrained(tmp_path)
    with pytest.raises(InvalidInputError, match="not a fine-tuned"):
        predict(tmp_path, ["MKT"])


@pytest.mark.parametrize("mode", ["bfloat16", "int8"])
def test_predict_precision_modes_agree_with_float32(ss_run, ss, mode) -> None:
    """Issue #18: predict takes the CPU precision of embed and score; class calls barely move."""
    import numpy as np

    from protein_lm.pt.predict import predict

    out, _ = ss_run
    proteins = dict(zip(ss["test"]["id"][:8], ss["test"]["sequence"][:8]))
    ref = predict(out, proteins, precision="float32").predictions
    got = predict(out, proteins, precision=mode).predictions
    same = np.mean([a == b for p, q in zip(ref, got) for a, b in zip(p, q)])
    assert same > 0.95, same
