"""Validate and encode the training, validation and test splits (one copy for both frameworks).

`prepare_splits` is what `protein_lm.pt.training.finetune` and `protein_lm.tf.training.finetune`
call before anything is loaded or written: the same bad input gives the same `InvalidInputError`
(naming the source, the 1-based row, the id and the field) whichever framework trains. Sequences
are checked and cleaned by `sequences.validate` (gaps kept: both are ESM-2 tokens).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protein_lm.errors import InvalidInputError

__all__ = ["Split", "PreparedSplits", "as_dataset", "prepare_split", "prepare_splits"]


@dataclass
class Split:
    """A validated split: ids, cleaned sequences and encoded labels (on the training scale).

    Also a map-style dataset of `{"sequence", "labels"}` examples (what `batching.Collator`
    takes), with `lengths` (residues per sequence) for token-budget batch samplers.
    """

    ids: list[str]
    sequences: list[str]
    labels: list[Any]  # class id, standardised float, or per-residue ids with -100
    lengths: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.lengths = np.array([len(s) for s in self.sequences], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"sequence": self.sequences[i], "labels": self.labels[i]}


@dataclass
class PreparedSplits:
    """The three splits of a run, their classes and the regression label scale (mean, std)."""

    train: Split
    validation: Split
    test: Split | None
    id2label: dict[int, str] | None
    scale: tuple[float, float] = (0.0, 1.0)


def as_dataset(data: Any, source: str) -> Any:
    """A `datasets.Dataset` from a Dataset, a pandas DataFrame or a dict of columns."""
    import datasets

    if isinstance(data, datasets.Dataset):
        return data
    if hasattr(data, "to_dict") and hasattr(data, "columns"):  # pandas DataFrame
        return datasets.Dataset.from_pandas(data, preserve_index=False)
    if isinstance(data, Mapping):
        return datasets.Dataset.from_dict(dict(data))
    raise InvalidInputError(
        f"{source}: expected a datasets.Dataset, DataFrame or dict of "
        f"columns, got {type(data).__name__}"
    )


def prepare_split(
    data: Any,
    task: str,
    label2id: dict[str, int] | None,
    source: str,
    *,
    max_length: int,
    length_policy: str,
) -> tuple[Split, dict[int, str] | None]:
    """Validate one split and encode its labels.

    Returns the split and `id2label` (the classes of this split when `label2id` is None, i.e. for
    the training split). Sequences over `max_length - 2` residues raise (`length_policy="error"`)
    or are kept whole with a warning (`"truncate"`: the collator cuts them).
    """
    import datasets

    from protein_lm.data import encode_labels
    from protein_lm.sequences import validate

    ds = as_dataset(data, source)
    missing = {"sequence", "label"} - set(ds.column_names)
    if missing:
        raise InvalidInputError(
            f"{source}: missing column(s) {sorted(missing)}; has {ds.column_names}"
        )
    if len(ds) == 0:
        raise InvalidInputError(f"{source}: no rows")
    ids = ds["id"] if "id" in ds.column_names else [f"row{i + 1}" for i in range(len(ds))]
    labels, limit, seqs = ds["label"], max_length - 2, []
    for i, (rid, raw) in enumerate(zip(ids, ds["sequence"])):
        where = f"{source}, row {i + 1} (id {rid!r})"
        try:
            seq = validate(raw, str(rid), gaps="keep")
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(f"{where}, field 'sequence': {exc}") from None
        if task == "token-classification" and len(labels[i]) != len(seq):
            raise InvalidInputError(
                f"{where}, field 'label': {len(labels[i])} labels for {len(seq)} residues"
            )
        if len(seq) > limit and length_policy == "error":
            raise InvalidInputError(
                f"{where}, field 'sequence': {len(seq)} residues > {limit}; "
                "use length_policy='truncate' or split it"
            )
        seqs.append(seq)
    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # a "Map" bar per split is noise in logs; restored below
    try:
        encoded, id2label = encode_labels(
            ds,
            task,  # type: ignore[arg-type]
            label2id,
            source=source,
        )
    finally:
        if shown:
            datasets.enable_progress_bars()
    n_long = sum(len(s) > limit for s in seqs)
    if n_long:
        warnings.warn(
            f"{source}: {n_long} sequence(s) longer than {limit} residues are truncated "
            "(their cut-off residues are not trained or scored)",
            stacklevel=3,
        )
    return Split([str(r) for r in ids], seqs, list(encoded["labels"])), id2label


def prepare_splits(
    train: Any,
    validation: Any,
    test: Any,
    task: str,
    *,
    max_length: int,
    length_policy: str,
    source_names: Sequence[str] = ("train", "validation", "test"),
) -> PreparedSplits:
    """Validate all splits (classes from `train`); standardise regression labels.

    Regression targets are standardised with the training mean and std (kept in `scale`, saved in
    the model config as `protein_lm_label_scale`) so the MSE loss is O(1) whatever the unit.
    """

    def check(
        data: Any,
        label2id: dict[str, int] | None,
        source: str,
    ) -> tuple[Split, dict[int, str] | None]:
        return prepare_split(
            data, task, label2id, source, max_length=max_length, length_policy=length_policy
        )

    train_s, id2label = check(train, None, source_names[0])
    label2id = None if id2label is None else {v: k for k, v in id2label.items()}
    val_s = check(validation, label2id, source_names[1])[0]
    test_s = None if test is None else check(test, label2id, source_names[2])[0]
    scale = (0.0, 1.0)
    if task == "regression":
        y = np.asarray(train_s.labels, dtype=np.float64)
        if y.std() == 0:
            raise InvalidInputError(
                f"{source_names[0]}: all regression labels are equal; nothing to learn"
            )
        scale = (float(y.mean()), float(y.std()))
        for s in (train_s, val_s, test_s):
            if s is not None:
                s.labels = [(v - scale[0]) / scale[1] for v in s.labels]
    return PreparedSplits(train_s, val_s, test_s, id2label, scale)
