"""`finetuning.splits`: one validation of a split for both frameworks (same input, same error)."""

from __future__ import annotations

import numpy as np
import pytest

from protein_lm.batching import IGNORE_INDEX
from protein_lm.errors import InvalidInputError
from protein_lm.finetuning.splits import prepare_split, prepare_splits

pytest.importorskip("datasets")

TRAIN = {"id": ["a", "b", "c"], "sequence": ["MKTAY", "GSHM", "MKVL"],
         "label": ["CCHHE", "CEEH", "HHCC"]}


def _bad(**change: object) -> dict:
    rows = {k: list(v) for k, v in TRAIN.items()}
    for key, (row, value) in change.items():
        rows[key][row] = value
    return rows


def test_masked_residues_get_ignore_index(secondary_structure) -> None:
    """A `mask` of 0 makes the residue's label -100 in the split both trainers consume."""
    train = secondary_structure["train"].select(range(20))
    split, id2label = prepare_split(train, "token-classification", None, "train",
                                    max_length=1024, length_policy="truncate")
    assert id2label == {0: "C", 1: "E", 2: "H"}
    for i in range(len(split)):
        row = train[i]
        lab = np.asarray(split[i]["labels"])
        masked = np.array([m == "0" for m in row["mask"]])
        assert (lab[masked] == IGNORE_INDEX).all()
        assert [id2label[v] for v in lab[~masked]] == [
            c for c, m in zip(row["label"], masked) if not m]
    assert split.lengths.tolist() == [len(s) for s in train["sequence"]]


@pytest.mark.parametrize(
    ("train", "match"),
    [
        (_bad(sequence=(1, "GSJM")), r"^train, row 2 \(id 'b'\), field 'sequence': Invalid residue 'J'"),
        (_bad(label=(0, "CCH")), r"^train, row 1 \(id 'a'\), field 'label': 3 labels for 5"),
        ({"sequence": TRAIN["sequence"]}, r"missing column\(s\) \['label'\]"),
        ({k: [] for k in TRAIN}, "no rows"),
        ({**TRAIN, "label": ["C" * 5, "C" * 4, "C" * 4]}, "only one class"),
    ],
    ids=["invalid-letter", "label-length", "missing-column", "empty", "single-class"],
)
def test_bad_split_names_source_row_and_field(train: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        prepare_splits(train, TRAIN, None, "token-classification", max_length=1024,
                       length_policy="error")


def test_sequences_are_cleaned_like_everywhere_else() -> None:
    rows = _bad(sequence=(0, "mkt ay"))
    split = prepare_split(rows, "token-classification", None, "t", max_length=1024,
                          length_policy="error")[0]
    assert split.sequences[0] == "MKTAY"


def test_length_policy() -> None:
    with pytest.raises(InvalidInputError, match=r"row 1 \(id 'a'\).*5 residues > 4"):
        prepare_split(TRAIN, "token-classification", None, "t", max_length=6,
                      length_policy="error")
    with pytest.warns(UserWarning, match="1 sequence"):
        prepare_split(TRAIN, "token-classification", None, "t", max_length=6,
                      length_policy="truncate")


def test_regression_labels_are_standardised_with_the_training_scale() -> None:
    train = {"sequence": ["MKT", "GSH", "MKV"], "label": [1.0, 2.0, 3.0]}
    val = {"sequence": ["MKT"], "label": [2.0]}
    s = prepare_splits(train, val, None, "regression", max_length=1024, length_policy="error")
    assert s.scale == pytest.approx((2.0, np.std([1, 2, 3])))
    assert s.validation.labels == [0.0]
    with pytest.raises(InvalidInputError, match="all regression labels are equal"):
        prepare_splits({**train, "label": [1.0] * 3}, val, None, "regression", max_length=1024,
                       length_policy="error")


def test_pytorch_and_keras_give_the_same_error_for_the_same_bad_input(tmp_path) -> None:
    """Both trainers validate through `prepare_splits`: identical messages, nothing written."""
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    from protein_lm.pt.training import FinetuneConfig
    from protein_lm.pt.training import finetune as pt_finetune
    from protein_lm.tf.training import TFFinetuneConfig
    from protein_lm.tf.training import finetune as tf_finetune

    bad = _bad(sequence=(2, "MK*VL"))
    messages = []
    for finetune, config in ((pt_finetune, FinetuneConfig), (tf_finetune, TFFinetuneConfig)):
        with pytest.raises(InvalidInputError) as err:
            finetune(bad, TRAIN, config=config(task="token-classification", max_steps=1),
                     output_dir=tmp_path / "out")
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert "train, row 3 (id 'c'), field 'sequence'" in messages[0]
    assert list(tmp_path.iterdir()) == []
