"""`finetuning.predictions`: task inference, windows and assembly shared by both frameworks."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from protein_lm.errors import InvalidInputError
from protein_lm.finetuning.predictions import (
    assemble_predictions,
    model_task,
    plan_windows,
    window_starts,
)
from protein_lm.sequences import FastaRecord


@pytest.mark.parametrize(
    ("config", "task"),
    [
        ({"protein_lm_task": "regression", "architectures": ["X"]}, "regression"),
        ({"architectures": ["EsmForTokenClassification"]}, "token-classification"),
        ({"architectures": ["EsmForSequenceClassification"]}, "sequence-classification"),
        ({"architectures": ["EsmForSequenceClassification"], "problem_type": "regression"},
         "regression"),
    ],
    ids=["explicit", "token", "sequence", "regression"],
)
def test_model_task_from_dict_or_config(config: dict, task: str) -> None:
    assert model_task(config) == task
    assert model_task(SimpleNamespace(**config)) == task


def test_model_task_refuses_a_bare_encoder() -> None:
    with pytest.raises(InvalidInputError, match="not a fine-tuned"):
        model_task({"architectures": ["EsmForMaskedLM"]})


@pytest.mark.parametrize("length", [1, 4, 5, 9, 10, 23])
def test_windows_cover_every_residue(length: int) -> None:
    starts = window_starts(length, 4)
    covered = set()
    for s in starts:
        covered |= set(range(s, min(s + 4, length)))
    assert covered == set(range(length)) and starts[-1] + 4 >= length


def test_token_windows_are_averaged_and_sequence_tasks_warn_when_cut() -> None:
    records = [FastaRecord("long", "MKTAYIAK"), FastaRecord("short", "MK")]
    items = plan_windows(records, "token-classification", 4)
    assert [(r, s) for r, s, _ in items] == [(0, 0), (0, 2), (0, 4), (1, 0)]
    config = SimpleNamespace(id2label={0: "C", 1: "H"})
    outputs = [np.tile([1.0, 0.0], (len(sub), 1)) if r == 0 else np.tile([0.0, 1.0], (2, 1))
               for r, _, sub in items]
    pred = assemble_predictions("token-classification", config, records, items, outputs)
    assert pred.predictions == ("CCCCCCCC", "HH") and pred.failed == ()
    with pytest.warns(UserWarning, match="1 sequence"):
        items = plan_windows(records, "sequence-classification", 4)
    assert len(items) == 2
    outputs = [np.array([0.2, 0.8]), None]
    pred = assemble_predictions("sequence-classification", config, records, items, outputs)
    assert pred.predictions == ("H", "") and pred.failed == ("short",)
    assert pred.probabilities.dtype == np.float32


def test_regression_is_mapped_back_to_label_units() -> None:
    records = [FastaRecord("a", "MKT")]
    config = SimpleNamespace(protein_lm_label_scale=[10.0, 2.0])
    pred = assemble_predictions("regression", config, records, [(0, 0, "MKT")], [0.5])
    assert pred.predictions == (11.0,)


@pytest.mark.parametrize("task", ["sequence-classification", "token-classification", "regression"])
def test_a_non_finite_output_is_a_failure_never_a_prediction(task: str, caplog) -> None:
    # argmax over NaN probabilities names a class; a NaN regression value looks like data.
    records = [FastaRecord("good", "MKT"), FastaRecord("broken", "MKV")]
    config = SimpleNamespace(id2label={0: "C", 1: "H"}, protein_lm_label_scale=None)
    items = [(0, 0, "MKT"), (1, 0, "MKV")]
    if task == "regression":
        outputs: list = [0.5, float("nan")]
    elif task == "token-classification":
        outputs = [np.full((3, 2), 0.5), np.array([[0.1, 0.9], [np.inf, 0.0], [0.5, 0.5]])]
    else:
        outputs = [np.array([0.2, 0.8]), np.array([np.nan, np.nan])]
    pred = assemble_predictions(task, config, records, items, outputs)
    assert pred.failed == ("broken",)
    assert "non-finite model output" in caplog.text and "broken" in caplog.text
    if task != "regression":
        assert pred.predictions[1] == "" and pred.predictions[0] != ""
