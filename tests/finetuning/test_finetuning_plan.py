"""The training plan shared by both frameworks: learning rate, steps, warm-up, config stamps."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from protein_lm.finetuning.config import FinetuneOptions
from protein_lm.finetuning.plan import default_learning_rate, plan_training
from protein_lm.finetuning.splits import PreparedSplits, Split


def _splits(scale: tuple[float, float] = (0.0, 1.0)) -> PreparedSplits:
    split = Split(["a"], ["MKT"], [0])
    return PreparedSplits(split, split, None, {0: "x"}, scale)


@pytest.mark.parametrize(
    ("model", "lora", "lr"),
    [("tiny", False, 1e-3), ("tiny", True, 1e-3), ("esm2_t6_8M", True, 3e-4),
     ("esm2_t6_8M", False, 5e-5)],
    ids=["tiny", "tiny-lora", "pretrained-lora", "pretrained"],
)
def test_default_learning_rate(model: str, lora: bool, lr: float) -> None:
    assert default_learning_rate(model, lora) == lr
    options = FinetuneOptions(task="regression", model=model)
    assert plan_training(options, _splits(), 5, framework="pt", lora=lora).learning_rate == lr
    given = FinetuneOptions(task="regression", model=model, learning_rate=0.25)
    assert plan_training(given, _splits(), 5, framework="pt", lora=lora).learning_rate == 0.25


@pytest.mark.parametrize(
    ("options", "batches", "framework", "total", "eval_steps", "warmup"),
    [
        ({}, 7, "pt", 21, 2, 2),  # 3 epochs by default; ceil(21 * 0.05) = 2
        ({}, 7, "tf", 22, 2, 1),  # whole evaluation intervals; int(22 * 0.05) = 1
        ({"epochs": 1.5}, 5, "pt", 8, 1, 1),
        ({"max_steps": 4, "eval_steps": 100}, 9, "pt", 4, 4, 1),  # interval <= run
        ({"max_steps": 30, "eval_steps": 7}, 9, "tf", 35, 7, 1),
        ({"max_steps": 30, "eval_steps": 7}, 9, "pt", 30, 7, 2),
        ({"warmup_fraction": 0.0}, 0, "pt", 3, 1, 0),  # no batch on this process: one counted
    ],
    ids=["default-pt", "default-tf", "epochs", "eval-clipped", "tf-rounds-up", "pt-keeps",
         "no-batches"],
)
def test_steps(options: dict, batches: int, framework: str, total: int, eval_steps: int,
               warmup: int) -> None:
    plan = plan_training(FinetuneOptions(task="token-classification", **options), _splits(),
                         batches, framework=framework)  # type: ignore[arg-type]
    assert (plan.total_steps, plan.eval_steps, plan.warmup_steps) == (total, eval_steps, warmup)
    assert plan.batches_per_epoch == max(batches, 1)
    assert plan.eval_rounds == -(-total // eval_steps)


def test_config_stamps_name_the_task_and_the_regression_scale() -> None:
    plan = plan_training(FinetuneOptions(task="regression"), _splits((2.5, 0.5)), 3,
                         framework="tf")
    assert plan.config_stamps == {"protein_lm_task": "regression",
                                  "protein_lm_label_scale": [2.5, 0.5]}
    cfg = SimpleNamespace()
    plan.stamp(cfg)
    assert cfg.protein_lm_task == "regression" and cfg.protein_lm_label_scale == [2.5, 0.5]
    token = plan_training(FinetuneOptions(task="token-classification"), _splits(), 3,
                          framework="pt")
    assert token.config_stamps == {"protein_lm_task": "token-classification"}
