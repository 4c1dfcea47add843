"""Keras fine-tuning: config checks, CLI outputs, PT/TF agreement, bad input (FLIP SS3 learning:
test_tf_learning.py)."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
pytest.importorskip("tensorflow")

from protein_lm.cli import main  # noqa: E402
from protein_lm.errors import InvalidInputError  # noqa: E402
from protein_lm.finetuning.reporting import read_training_log  # noqa: E402
from protein_lm.tf.training import TFFinetuneConfig, finetune, predict  # noqa: E402

TASKS = ["sequence-classification", "token-classification", "regression"]


# ------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "folding"}, "`task` must be one of"),
        ({"epochs": 1, "max_steps": 5}, "not both"),
        ({"epochs": 0}, "`epochs` must be > 0"),
        ({"max_steps": 0}, "`max_steps` must be > 0"),
        ({"max_time_s": -1}, "`max_time_s` must be > 0"),
        ({"learning_rate": 0}, "`learning_rate` must be > 0"),
        ({"batch_tokens": 0}, "`batch_tokens` must be > 0"),
        ({"eval_steps": 0}, "`eval_steps` must be > 0"),
        ({"warmup_fraction": 1.0}, r"`warmup_fraction` must be in \[0, 1\)"),
        ({"precision": "fp8"}, "`precision` must be"),
        ({"jit_compile": "yes"}, "`jit_compile` must be"),
        ({"length_policy": "drop"}, "`length_policy` must be"),
        ({"max_length": 2000}, "`max_length` must be in"),
    ],
    ids=lambda v: v if isinstance(v, str) else "-".join(v),
)
def test_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TFFinetuneConfig(**{"task": "regression", **kwargs})


def test_config_round_trips_through_dict() -> None:
    cfg = TFFinetuneConfig(
        task="token-classification", max_steps=7, model_overrides={"num_layers": 2}
    )
    assert TFFinetuneConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# --------------------------------------------------------------------------- real data
def _write(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def tables(
    tmp_path_factory: pytest.TempPathFactory, secondary_structure
) -> dict[str, tuple[Path, Path]]:
    """Small train/validation CSVs per task from FLIP SS3, DeepLoc membrane and BLAT DMS."""
    from protein_lm.data import load_blat, load_deeploc

    d = tmp_path_factory.mktemp("tables")
    ss = secondary_structure
    pick = lambda ds, n: [r for r in ds if len(r["sequence"]) < 200][:n]  # noqa: E731
    out = {
        "token-classification": (
            _write(
                d / "ss_train.csv",
                [
                    {k: r[k] for k in ("id", "sequence", "label", "mask")}
                    for r in pick(ss["train"], 40)
                ],
            ),
            _write(
                d / "ss_val.csv",
                [
                    {k: r[k] for k in ("id", "sequence", "label", "mask")}
                    for r in pick(ss["validation"], 12)
                ],
            ),
        )
    }
    dl = load_deeploc("membrane")
    out["sequence-classification"] = tuple(
        _write(
            d / f"dl_{s}.csv",
            [{k: r[k] for k in ("id", "sequence", "label")} for r in pick(dl[s], n)],
        )
        for s, n in (("train", 40), ("validation", 12))
    )
    blat = load_blat()
    rows = []
    for r in blat.data.select(range(60)):
        wt, pos, mut = r["mutant"][0], int(r["mutant"][1:-1]) - blat.offset, r["mutant"][-1]
        assert blat.wild_type[pos] == wt
        rows.append(
            {
                "id": r["mutant"],
                "sequence": blat.wild_type[:pos] + mut + blat.wild_type[pos + 1 :],
                "label": r["label"],
            }
        )
    out["regression"] = (
        _write(d / "blat_train.csv", rows[:44]),
        _write(d / "blat_val.csv", rows[44:]),
    )
    return out


@pytest.fixture(scope="module")
def pt_token_model(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A tiny PyTorch token-classification folder (C/E/H head, seed 7); None without torch."""
    if importlib.util.find_spec("torch") is None:
        return None
    from protein_lm.models import load_model

    d = tmp_path_factory.mktemp("pt") / "pt"
    load_model("tiny", "token-classification", id2label={0: "C", 1: "E", 2: "H"}, seed=7) \
        .save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def trained(
    tables: dict, pt_token_model: Path | None, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """One model directory per task, trained by `protein-lm finetune --framework tf` from "tiny";
    the token-classification run continues training `pt_token_model` (a PyTorch folder) when torch
    is installed (test_a_pytorch_model_continues_training_in_tf)."""
    out = {}
    for task, (train, val) in tables.items():
        out[task] = tmp_path_factory.mktemp("runs") / task
        start = "tiny"
        if task == "token-classification" and pt_token_model is not None:
            start = str(pt_token_model)
        code = main(
            [
                "finetune",
                "--framework",
                "tf",
                "--task",
                task,
                "--model",
                start,
                "--train",
                str(train),
                "--validation",
                str(val),
                "--test",
                str(val),
                "--output-dir",
                str(out[task]),
                "--max-steps",
                "3",
                "--batch-tokens",
                "2000",
                "--no-progress",
            ]
        )
        assert code == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_cli_finetune_writes_a_transformers_directory(
    task: str, trained: dict, tables: dict
) -> None:
    d = trained[task]
    names = {p.name for p in d.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "metrics.json",
        "training_log.csv",
        "training_curves.png",
        "tokenizer.json",
    } <= names
    assert not [n for n in names if n.startswith(".")]
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["protein_lm_task"] == task
    metrics = json.loads((d / "metrics.json").read_text())
    key = {
        "sequence-classification": "mcc",
        "token-classification": "q3",
        "regression": "spearman",
    }[task]
    assert key in metrics["validation"] and key in metrics["test"] and metrics["steps"] == 3
    log = read_training_log(d / "training_log.csv")
    assert {e.split for e in log} == {"train", "validation"}
    assert all(np.isfinite(e.value) for e in log)
    if task == "regression":
        y = [float(r["label"]) for r in csv.DictReader(open(tables[task][0]))]
        assert np.allclose(cfg["protein_lm_label_scale"], [np.mean(y), np.std(y)])  # label units
    else:
        assert len(cfg["id2label"]) == (2 if task == "sequence-classification" else 3)


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_pytorch_reads_tf_models_and_predicts_the_same(
    task: str, trained: dict, tables: dict
) -> None:
    pytest.importorskip("torch")
    from protein_lm.finetuning.reporting import read_predict_input
    from protein_lm.pt.predict import predict as pt_predict

    records = read_predict_input(tables[task][1])
    ours, theirs = predict(trained[task], records), pt_predict(trained[task], records)
    assert ours.ids == theirs.ids and ours.task == theirs.task == task
    if task == "regression":
        assert np.allclose(ours.predictions, theirs.predictions, atol=1e-4)
    else:
        assert ours.predictions == theirs.predictions
    if task == "sequence-classification":
        assert ours.class_names == theirs.class_names
        assert np.abs(ours.probabilities - theirs.probabilities).max() < 1e-5


@pytest.mark.slow
def test_cli_predict_tf_writes_the_shared_csv_format(
    trained: dict, tables: dict, tmp_path: Path
) -> None:
    out = tmp_path / "pred.csv"
    assert (
        main(
            [
                "predict",
                "--framework",
                "tf",
                "--model",
                str(trained["sequence-classification"]),
                str(tables["sequence-classification"][1]),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    rows = list(csv.DictReader(open(out)))
    classes = json.loads((trained["sequence-classification"] / "config.json").read_text())[
        "id2label"
    ]
    assert list(rows[0]) == ["id", "prediction"] + [f"prob_{c}" for c in classes.values()]
    assert len(rows) == 12 and all(r["prediction"] in classes.values() for r in rows)
    assert all(abs(sum(float(r[f"prob_{c}"]) for c in classes.values()) - 1) < 1e-4 for r in rows)


@pytest.mark.slow
def test_per_residue_prediction_covers_sequences_longer_than_the_window(trained: dict) -> None:
    seq = ("MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ" * 50)[:1500]
    result = predict(trained["token-classification"], {"long": seq, "short": "MKT"})
    assert [len(p) for p in result.predictions] == [1500, 3]
    assert set("".join(result.predictions)) <= set(result.class_names)


@pytest.mark.slow
def test_a_pytorch_model_continues_training_in_tf(pt_token_model: Path, trained: dict) -> None:
    """A PyTorch folder loads in TF with its head and trains on: the token-classification run of
    `trained` (`protein-lm finetune --framework tf --model <pt_token_model>`, 3 steps)."""
    pytest.importorskip("torch")
    from protein_lm.tf.checkpoint import load_tf_model

    assert load_tf_model(str(pt_token_model), "token-classification").new_head == []
    d = trained["token-classification"]
    metrics = json.loads((d / "metrics.json").read_text())
    id2label = json.loads((d / "config.json").read_text())["id2label"]
    assert metrics["steps"] == 3 and {int(k): v for k, v in id2label.items()} == {
        0: "C", 1: "E", 2: "H"}
    assert "q3" in metrics["validation"]


@pytest.mark.slow
def test_time_budget_stops_training_and_still_evaluates(tables: dict, tmp_path: Path) -> None:
    from protein_lm.data import read_table

    train, val = (read_table(p, "regression") for p in tables["regression"])
    config = TFFinetuneConfig(
        task="regression",
        max_steps=500,
        eval_steps=500,
        max_time_s=0.01,
        batch_tokens=1000,
        progress=False,
    )
    result = finetune(train, val, config=config, output_dir=tmp_path / "run")
    assert 1 <= result.steps < 500 and result.best_step == result.steps
    assert "spearman" in result.validation


def test_diverged_training_stops_with_nothing_published(tables: dict, tmp_path: Path) -> None:
    """Issue #16: a NaN/inf training loss stops the Keras run; no NaN model is saved."""
    from protein_lm.data import read_table

    train, val = (read_table(p, "regression") for p in tables["regression"])
    config = TFFinetuneConfig(task="regression", max_steps=6, eval_steps=6, learning_rate=1e30,
                              batch_tokens=1000, progress=False)
    with pytest.raises(InvalidInputError, match=r"training diverged: loss is (nan|inf) at step "
                       r"\d+; nothing was saved"):
        finetune(train, val, config=config, output_dir=tmp_path / "run")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a temporary sibling


# ------------------------------------------------------------------------------ bad input
def _tf_finetune(train: Path, val: Path, out: Path, *extra: str) -> int:
    """`protein-lm finetune --framework tf` for sequence classification with the tiny model."""
    return main(["finetune", "--framework", "tf", "--task", "sequence-classification",
                 "--model", "tiny", "--train", str(train), "--validation", str(val),
                 "--output-dir", str(out), *extra])


def test_invalid_residue_stops_before_training_and_writes_nothing(
    tables: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    train, val = tables["sequence-classification"]
    rows = list(csv.DictReader(open(train)))
    rows[2]["sequence"] = rows[2]["sequence"][:5] + "J" + rows[2]["sequence"][6:]
    bad = _write(tmp_path / "bad.csv", rows)
    out = tmp_path / "never"
    code = _tf_finetune(bad, val, out)
    err = capsys.readouterr().err
    assert code == 2 and "row 3" in err and rows[2]["id"] in err and "'J'" in err
    assert not out.exists()


def test_pytorch_only_options_are_refused(
    tables: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    train, val = tables["sequence-classification"]
    code = _tf_finetune(train, val, tmp_path / "o", "--lora")
    assert code == 2 and "--lora" in capsys.readouterr().err


def test_unknown_validation_class_names_the_row(tables: dict) -> None:
    from protein_lm.data import read_table

    train, val = (
        read_table(p, "sequence-classification") for p in tables["sequence-classification"]
    )
    val = val.map(lambda r, i: {"label": "nucleus" if i == 4 else r["label"]}, with_indices=True)
    with pytest.raises(InvalidInputError, match=r"row 5 .*unknown class 'nucleus'"):
        finetune(
            train,
            val,
            config=TFFinetuneConfig(task="sequence-classification", max_steps=1),
            output_dir="unused",
        )


def test_non_empty_output_dir_is_left_alone(tables: dict, tmp_path: Path) -> None:
    from protein_lm.data import read_table

    (tmp_path / "keep.txt").write_text("mine")
    train, val = (read_table(p, "regression") for p in tables["regression"])
    with pytest.raises(InvalidInputError, match="already exists and is not empty"):
        finetune(
            train,
            val,
            config=TFFinetuneConfig(task="regression", max_steps=1),
            output_dir=tmp_path,
        )
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
