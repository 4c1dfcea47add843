"""fair-esm <-> transformers ESM-2 conversion: same logits, embeddings and contacts (<= 1e-5)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
esm = pytest.importorskip("esm")

from protein_lm.convert import (  # noqa: E402
    fairesm_state_dict_to_transformers,
    fairesm_to_transformers,
    load_fairesm,
    transformers_to_fairesm,
)
from protein_lm.errors import InvalidInputError  # noqa: E402
from protein_lm.models import load_model  # noqa: E402
from protein_lm.tokenization import encode  # noqa: E402

SEQS = ["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "MKT<mask>YIAKQ", "GW"]


@pytest.fixture(scope="module")
def fe_model():
    """A random tiny fair-esm ESM-2 with non-trivial biases and layer norms."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = esm.ESM2(2, 32, 4, esm.Alphabet.from_architecture("ESM-1b"), token_dropout=True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "bias" in name or "norm" in name:  # default init: zeros/ones would hide mix-ups
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


def _fe_out(model, batch):
    with torch.no_grad():
        return model(batch["input_ids"], repr_layers=[0, 1, 2], return_contacts=True)


def _hf_out(model, batch):
    model.set_attn_implementation("eager")  # sdpa returns no attention maps (contacts)
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
        contacts = model.predict_contacts(batch["input_ids"], batch["attention_mask"])
    return out, contacts


def test_fairesm_to_transformers_parity(fe_model, tmp_path: Path) -> None:
    batch = encode(SEQS, return_tensors="pt")
    real = batch["attention_mask"].bool()
    ref = _fe_out(fe_model, batch)
    hf = fairesm_to_transformers(fe_model, tmp_path / "hf")
    hf = load_model(str(tmp_path / "hf"), device="cpu")  # through the saved directory
    out, contacts = _hf_out(hf, batch)
    torch.testing.assert_close(out.logits[real], ref["logits"][real], atol=1e-5, rtol=1e-5)
    for layer in (0, 1, 2):
        torch.testing.assert_close(out.hidden_states[layer][real],
                                   ref["representations"][layer][real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(contacts, ref["contacts"], atol=1e-5, rtol=1e-5)
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    assert (tmp_path / "hf" / "tokenizer.json").is_file()


def test_round_trip_through_fairesm_files(fe_model, tmp_path: Path) -> None:
    batch = encode(SEQS, return_tensors="pt")
    ref = _fe_out(fe_model, batch)
    hf = fairesm_to_transformers(fe_model)
    back = transformers_to_fairesm(hf, tmp_path / "esm2_tiny.pt")
    assert (tmp_path / "esm2_tiny-contact-regression.pt").is_file()
    for model in (back, load_fairesm(tmp_path / "esm2_tiny.pt")):
        got = _fe_out(model, batch)
        torch.testing.assert_close(got["logits"], ref["logits"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got["representations"][2], ref["representations"][2],
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got["contacts"], ref["contacts"], atol=1e-5, rtol=1e-5)
    # fair-esm's own loader reads our files (torch >= 2.6 needs Namespace allow-listed).
    with torch.serialization.safe_globals([argparse.Namespace]):
        fe2, _ = esm.pretrained.load_model_and_alphabet_local(str(tmp_path / "esm2_tiny.pt"))
    torch.testing.assert_close(_fe_out(fe2.eval(), batch)["logits"], ref["logits"])


def test_transformers_model_converts_to_fairesm() -> None:
    hf = load_model("tiny", config_overrides={"num_hidden_layers": 2, "hidden_size": 32,
                                              "num_attention_heads": 2, "intermediate_size": 128})
    batch = encode(SEQS, return_tensors="pt")
    fe = transformers_to_fairesm(hf.eval())
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        want = hf(**batch).logits[real]
    torch.testing.assert_close(_fe_out(fe, batch)["logits"][real], want, atol=1e-5, rtol=1e-5)


def test_unknown_parameters_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="embed_positions"):
        fairesm_state_dict_to_transformers({"embed_positions.weight": torch.zeros(1)})
    hf = load_model("tiny", config_overrides={"num_hidden_layers": 1, "hidden_size": 32,
                                              "num_attention_heads": 2, "intermediate_size": 64})
    with pytest.raises(InvalidInputError, match="intermediate_size"):
        transformers_to_fairesm(hf)


def test_missing_and_foreign_files(tmp_path: Path) -> None:
    from protein_lm.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="not found"):
        load_fairesm(tmp_path / "nope.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(InvalidInputError, match="not a fair-esm checkpoint"):
        load_fairesm(tmp_path / "other.pt")
