"""Model card of finetune output folders, and the stratified smoke subsets the notebooks use."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from protein_lm.errors import InvalidInputError
from protein_lm.finetuning.model_card import write_model_card
from protein_lm.finetuning.reporting import LogEntry, write_metrics, write_run_outputs


def test_model_card_from_folder(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"id2label": {"1": "soluble", "0": "membrane"}}))
    write_run_outputs(tmp_path, [LogEntry(1, 0.5, "validation", "mcc", 0.5)],
                      {"mcc": 0.5, "loss": 0.3}, {"mcc": 0.4}, config={"seed": 0},
                      task="sequence-classification", model="facebook/esm2_t12_35M_UR50D",
                      title="membrane")
    card = (tmp_path / "README.md").read_text()  # written with every finetune run's outputs
    assert json.loads((tmp_path / "finetune_config.json").read_text()) == {"seed": 0}
    assert (tmp_path / "training_curves.png").stat().st_size > 0
    front = card.split("---")[1]
    assert "library_name: transformers" in front and "- sequence-classification" in front
    assert 'base_model: "facebook/esm2_t12_35M_UR50D"' in front and "- mcc" in front
    assert "`membrane`, `soluble`" in card and "| test | mcc | 0.4 |" in card
    write_model_card(tmp_path, dataset="DeepLoc 1.0")
    assert "DeepLoc 1.0" in (tmp_path / "README.md").read_text()


def test_write_metrics_without_task_writes_no_card(tmp_path: Path) -> None:
    write_metrics(tmp_path / "metrics.json", {"q3": 0.5})
    assert not (tmp_path / "README.md").exists()


def test_tiny_base_model_is_not_linked(tmp_path: Path) -> None:
    text = write_model_card(tmp_path, task="regression", base_model="tiny").read_text()
    assert "base_model" not in text.split("---")[1] and "Regression" in text


datasets = pytest.importorskip("datasets")


def _ds(rows: list[dict]) -> object:
    return datasets.Dataset.from_list(rows)


def test_stratified_subset_has_every_class() -> None:
    from protein_lm.data import stratified_subset

    rows = [{"sequence": "MK" * (i % 7 + 1), "label": "a"} for i in range(50)]
    rows += [{"sequence": "MKV", "label": "b"}, {"sequence": "M" * 500, "label": "c"}]
    with pytest.raises(InvalidInputError, match=r"no rows of \['c'\]"):
        stratified_subset(_ds(rows), 10, max_length=100)
    sub = stratified_subset(_ds(rows[:51]), 10, max_length=100, seed=1)
    assert len(sub) == 10 and Counter(sub["label"]) == {"a": 9, "b": 1}
    assert sub["sequence"] == stratified_subset(_ds(rows[:51]), 10, max_length=100,
                                                seed=1)["sequence"]  # seeded
    with pytest.raises(InvalidInputError, match="n must be >= 2"):
        stratified_subset(_ds(rows[:51]), 1)


def test_stratified_subset_per_residue_counts_masked_residues_only() -> None:
    from protein_lm.data import stratified_subset

    rows = [{"sequence": "MKVL", "label": "CCCC", "mask": "1111"} for _ in range(20)]
    rows.append({"sequence": "MKVL", "label": "HHEE", "mask": "1100"})  # E is unresolved
    rows.append({"sequence": "MKVL", "label": "CEEC", "mask": "1111"})
    sub = stratified_subset(_ds(rows), 4)
    residues = {c for lab, m in zip(sub["label"], sub["mask"]) for c, k in zip(lab, m) if k == "1"}
    assert residues == {"C", "E", "H"} and len(sub) == 4
