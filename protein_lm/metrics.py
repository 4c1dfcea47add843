"""Offline metrics (scikit-learn / scipy): no hub download, so a metric can never break a run.

Classification: accuracy, macro-F1, MCC. Per-residue: Q3 (accuracy over labelled residues, i.e.
labels != -100), macro-F1 and MCC over the same residues. Regression: Spearman, Pearson, MSE.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "classification_metrics",
    "token_metrics",
    "regression_metrics",
    "confusion_matrix",
    "majority_baseline",
]


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray
) -> dict[str, float]:
    """Accuracy, macro-F1 and Matthews correlation of integer class predictions."""
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y_true.size == 0:
        raise ValueError("no labelled examples to score")
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
    }


def token_metrics(
    labels: np.ndarray, predictions: np.ndarray, ignore_index: int = -100
) -> dict[str, float]:
    """Q3 (accuracy), macro-F1 and MCC over tokens whose label is not `ignore_index`.

    Parameters
    ----------
    labels : ndarray of int, shape (B, T)
        Token-aligned labels (residue i at token i+1), -100 for special/padded/masked tokens.
    predictions : ndarray of int, shape (B, T)
        Argmax class per token.
    """
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    keep = labels != ignore_index
    m = classification_metrics(labels[keep], predictions[keep])
    return {"q3": m["accuracy"], **m, "n_residues": int(keep.sum())}


def regression_metrics(
    y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray
) -> dict[str, float]:
    """Spearman and Pearson correlation and mean squared error."""
    from scipy.stats import pearsonr, spearmanr

    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.size < 2:
        raise ValueError("need at least two examples for a correlation")
    constant = np.ptp(y_pred) == 0 or np.ptp(y_true) == 0  # correlation undefined: report 0
    return {
        "spearman": 0.0 if constant else float(spearmanr(y_true, y_pred).statistic),
        "pearson": 0.0 if constant else float(pearsonr(y_true, y_pred).statistic),
        "mse": float(np.mean((y_true - y_pred) ** 2)),
    }


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, num_classes: int
) -> np.ndarray:
    """Counts, shape (num_classes, num_classes): rows are true classes, columns predictions.

    Examples
    --------
    >>> confusion_matrix([0, 1, 2, 2], [0, 2, 2, 2], num_classes=3)
    array([[1, 0, 0],
           [0, 0, 1],
           [0, 0, 2]])
    """
    from sklearn.metrics import confusion_matrix as _cm

    return _cm(
        np.asarray(y_true).ravel(), np.asarray(y_pred).ravel(), labels=list(range(num_classes))
    )


def majority_baseline(
    train_labels: Sequence[int] | np.ndarray,
    test_labels: Sequence[int] | np.ndarray,
    ignore_index: int = -100,
) -> float:
    """Accuracy of always predicting the most frequent training class on the test labels.

    Examples
    --------
    Unlabelled positions (`ignore_index`) count in neither split:

    >>> majority_baseline([0, 0, 1, -100], [0, 1, 1, -100])
    0.3333333333333333
    """
    train = np.asarray(train_labels).ravel()
    test = np.asarray(test_labels).ravel()
    train, test = train[train != ignore_index], test[test != ignore_index]
    majority = np.bincount(train).argmax()
    return float(np.mean(test == majority))
