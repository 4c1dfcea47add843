from __future__ import annotations

import numpy as np
import pytest

from protein_lm.metrics import (
    classification_metrics,
    confusion_matrix,
    majority_baseline,
    regression_metrics,
    token_metrics,
)


def test_token_metrics_ignore_masked_positions() -> None:
    labels = np.array([[-100, 0, 1, 2, -100], [-100, 2, -100, -100, -100]])
    preds = np.array([[2, 0, 1, 0, 1], [0, 2, 0, 0, 0]])
    m = token_metrics(labels, preds)
    assert m["q3"] == pytest.approx(3 / 4) and m["n_residues"] == 4


def test_classification_and_confusion() -> None:
    m = classification_metrics([0, 1, 1, 2], [0, 1, 2, 2])
    assert m["accuracy"] == pytest.approx(0.75)
    assert confusion_matrix([0, 1, 1, 2], [0, 1, 2, 2], 3).tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


def test_regression_metrics() -> None:
    m = regression_metrics([1, 2, 3, 4], [10, 20, 30, 41])
    assert m["spearman"] == pytest.approx(1.0) and 0.99 < m["pearson"] < 1.0
    assert regression_metrics([1, 2, 3], [5, 5, 5])["spearman"] == 0.0


def test_majority_baseline() -> None:
    assert majority_baseline([0, 0, 1, -100], [0, 1, 1, -100]) == pytest.approx(1 / 3)
