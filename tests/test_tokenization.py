"""Tokenizer: golden ids, and parity with transformers' EsmTokenizer and fair-esm's Alphabet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protein_lm.errors import InvalidSequenceError
from protein_lm.tokenization import decode, encode, hf_tokenizer

VOCAB_LETTERS = "LAGVSERTIDPKQNFYMHWCXBUZO.-"
residue = st.sampled_from(list(VOCAB_LETTERS) + ["<mask>"])
protein = st.lists(residue, min_size=1, max_size=60).map("".join)
batches = st.lists(protein, min_size=1, max_size=6)
EDGE_CASES = ["M", "<mask>", "<mask><mask>", "MK<mask>", "XBZUO", "-.-", "A" * 300, "C" * 2]


@pytest.fixture(scope="module")
def esm_tokenizer(esm_vocab_dir: Path):
    from transformers import EsmTokenizer

    return EsmTokenizer(str(esm_vocab_dir / "vocab.txt"))


@pytest.fixture(scope="module")
def fair_esm_converter():
    esm = pytest.importorskip("esm")
    return esm.Alphabet.from_architecture("ESM-1b").get_batch_converter()


def test_golden_ids() -> None:
    out = encode(["MKT", "A<mask>C", "XO-."])
    assert out["input_ids"].tolist() == [
        [0, 20, 15, 11, 2, 1],
        [0, 5, 32, 23, 2, 1],
        [0, 24, 28, 30, 29, 2],
    ]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0], [1] * 6]


@settings(max_examples=150, deadline=None)
@given(batches)
def test_parity_with_esm_tokenizer(esm_tokenizer, seqs: list[str]) -> None:
    ref = esm_tokenizer(seqs, padding=True, return_tensors="np")
    ours = encode(seqs)
    np.testing.assert_array_equal(ours["input_ids"], ref["input_ids"])
    np.testing.assert_array_equal(ours["attention_mask"], ref["attention_mask"])


@settings(max_examples=150, deadline=None)
@given(batches)
def test_parity_with_fair_esm(fair_esm_converter, seqs: list[str]) -> None:
    _, _, tokens = fair_esm_converter([(str(i), s) for i, s in enumerate(seqs)])
    np.testing.assert_array_equal(encode(seqs)["input_ids"], tokens.numpy())


@settings(max_examples=100, deadline=None)
@given(batches)
def test_parity_of_hf_fast_tokenizer(esm_tokenizer, seqs: list[str]) -> None:
    fast = hf_tokenizer()
    np.testing.assert_array_equal(
        fast(seqs, padding=True, return_tensors="np")["input_ids"],
        esm_tokenizer(seqs, padding=True, return_tensors="np")["input_ids"],
    )


@settings(max_examples=100, deadline=None)
@given(batches, st.integers(min_value=3, max_value=40))
def test_truncation_matches_both_conventions(esm_tokenizer, fair_esm_converter, seqs, max_len) -> None:
    ours = encode(seqs, max_length=max_len, truncation=True)
    ref = esm_tokenizer(seqs, max_length=max_len, truncation=True, padding=True, return_tensors="np")
    np.testing.assert_array_equal(ours["input_ids"], ref["input_ids"])
    np.testing.assert_array_equal(ours["attention_mask"], ref["attention_mask"])
    # fair-esm counts residues, not tokens: truncation_seq_length = max_length - 2.
    esm = pytest.importorskip("esm")
    conv = esm.Alphabet.from_architecture("ESM-1b").get_batch_converter(truncation_seq_length=max_len - 2)
    _, _, tokens = conv([(str(i), s) for i, s in enumerate(seqs)])
    np.testing.assert_array_equal(ours["input_ids"], tokens.numpy())


@pytest.mark.parametrize("seq", EDGE_CASES)
def test_edge_cases_match_references(esm_tokenizer, fair_esm_converter, seq: str) -> None:
    ours = encode([seq])["input_ids"]
    np.testing.assert_array_equal(ours, esm_tokenizer([seq], return_tensors="np")["input_ids"])
    np.testing.assert_array_equal(ours, fair_esm_converter([("a", seq)])[2].numpy())


def test_unknown_characters_raise_or_map_one_unk_each() -> None:
    with pytest.raises(InvalidSequenceError, match=r"Unknown character 'J' at position 3 of sequence 1"):
        encode(["MK", "MKJ"])
    ids = encode(["MJJK"], on_unknown="unk")["input_ids"][0].tolist()
    assert ids == [0, 20, 3, 3, 15, 2]  # one <unk> per character keeps residue alignment
    assert hf_tokenizer()("MJJK")["input_ids"] == ids


def test_too_long_without_truncation_is_an_error() -> None:
    with pytest.raises(ValueError, match="max_length=5; pass truncation=True"):
        encode(["MKTAYI"], max_length=5)


def test_padding_modes_and_tensor_types() -> None:
    out = encode(["MK", "A"], padding="max_length", max_length=8)
    assert out["input_ids"].shape == (2, 8)
    assert encode(["MKT"], pad_to_multiple_of=8)["input_ids"].shape == (1, 8)
    ragged = encode(["MK", "A"], padding=False, return_tensors=None)
    assert ragged["input_ids"] == [[0, 20, 15, 2], [0, 5, 2]]
    assert encode("MK", return_tensors=None)["input_ids"] == [0, 20, 15, 2]
    torch = pytest.importorskip("torch")
    pt = encode(["MK"], return_tensors="pt")
    assert pt["input_ids"].dtype == torch.int64


def test_tf_tensors() -> None:
    tf = pytest.importorskip("tensorflow")
    out = encode(["MK", "A"], return_tensors="tf")
    assert isinstance(out["input_ids"], tf.Tensor) and out["input_ids"].shape == (2, 4)


def test_decode_round_trip() -> None:
    seq = "MKTAYIAKQRQISFVKSHFSRQ"
    assert decode(encode([seq])["input_ids"][0]) == seq


def test_hf_tokenizer_saves_and_reloads_with_auto_tokenizer(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    hf_tokenizer().save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert tok("MK<mask>")["input_ids"] == [0, 20, 15, 32, 2]
    assert tok.pad_token_id == 1 and tok.mask_token_id == 32
