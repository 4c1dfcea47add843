"""PyTorch fine-tuning (`pt.training`): label alignment, config checks, tiny runs, DDP (learning on
real data: test_pt_learning.py)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from protein_lm.batching import IGNORE_INDEX, Collator  # noqa: E402
from protein_lm.errors import InvalidInputError  # noqa: E402
from protein_lm.sequences import CLS_ID, EOS_ID, ESM2_TOKENS, PAD_ID, STANDARD_AA  # noqa: E402
from protein_lm.pt.training import FinetuneConfig, finetune  # noqa: E402

SMALL = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64}
REPO = Path(__file__).resolve().parents[2]


def _short(ds, n: int, max_len: int = 120):
    """The first `n` records of a split with at most `max_len` residues (fast CPU tests)."""
    keep = [i for i, s in enumerate(ds["sequence"]) if len(s) <= max_len][:n]
    return ds.select(keep)


# `ss` (session fixture, tests/conftest.py): 64/16/16 FLIP SS3 records of <= 120 residues.
def _config(task: str, **kw) -> FinetuneConfig:
    base = dict(task=task, max_steps=4, eval_steps=2, batch_tokens=2000, progress=False,
                model_overrides=SMALL, device="cpu")
    base.update(kw)
    return FinetuneConfig(**base)


# ----------------------------------------------------------------------- label alignment
_residues = st.text(alphabet=STANDARD_AA, min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_residues, st.randoms(use_true_random=False)), min_size=1, max_size=6))
def test_token_labels_sit_on_their_residue_tokens(rows):
    """Residue i's label is at token i+1, next to that residue's id; CLS/EOS/pad/masked are -100.

    The widely copied tutorial tokenises then assigns labels[i] to token i, which puts every
    label one position early (on the previous residue, and the first on <cls>).
    """
    examples, expected = [], []
    for seq, rnd in rows:
        labels = [rnd.choice([0, 1, 2, IGNORE_INDEX]) for _ in seq]
        examples.append({"sequence": seq, "labels": labels})
        expected.append(labels)
    batch = Collator("token-classification")(examples)
    ids, lab = batch["input_ids"], batch["labels"]
    width = ids.shape[1]
    for row, (seq, labels) in enumerate(zip([s for s, _ in rows], expected)):
        n = len(seq)
        assert ids[row, 0] == CLS_ID and lab[row, 0] == IGNORE_INDEX
        assert ids[row, n + 1] == EOS_ID and lab[row, n + 1] == IGNORE_INDEX
        assert (ids[row, n + 2 :] == PAD_ID).all() and (lab[row, n + 2 :] == IGNORE_INDEX).all()
        for i, aa in enumerate(seq):
            assert ESM2_TOKENS[ids[row, i + 1]] == aa
            assert lab[row, i + 1] == labels[i]
        assert lab.shape == (len(rows), width)


# --------------------------------------------------------------------------- validators
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "fold"}, "`task` must be one of"),
        ({"epochs": 1, "max_steps": 3}, "not both"),
        ({"epochs": 0}, None),
        ({"max_steps": -1}, "`max_steps` must be > 0"),
        ({"max_time_s": 0}, "`max_time_s` must be > 0"),
        ({"learning_rate": -1.0}, "`learning_rate` must be > 0"),
        ({"batch_tokens": 0}, "`batch_tokens` must be > 0"),
        ({"eval_steps": 0}, "`eval_steps` must be > 0"),
        ({"warmup_fraction": 1.0}, "`warmup_fraction`"),
        ({"class_weights": "inverse"}, "`class_weights` must be"),
        ({"task": "regression", "class_weights": "balanced"}, "needs a classification task"),
        ({"lora_rank": 0}, "`lora_rank` must be > 0"),
        ({"precision": "fp8"}, "`precision` must be"),
        ({"attn_implementation": "flash"}, "`attn_implementation` must be"),
        ({"length_policy": "window"}, "`length_policy` must be"),
        ({"max_length": 2000}, "`max_length` must be in"),
        ({"device": "tpu"}, "`device` must be None"),
    ],
    ids=lambda v: str(v) if isinstance(v, dict) else "",
)
def test_config_rejects_bad_values(kwargs, match):
    args = {"task": "token-classification", **kwargs}
    with pytest.raises(ValueError, match=match or "epochs"):
        FinetuneConfig(**args)


def test_config_refuses_cuda_on_a_machine_without_it(monkeypatch):
    """Issue #16: device='cuda' without CUDA would train on CPU and record "cuda"."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InvalidInputError, match=r"device='cuda': CUDA is not available.*"
                       r"use device='cpu'"):
        FinetuneConfig(task="regression", device="cuda")
    assert FinetuneConfig(task="regression", device="cpu").device == "cpu"


def test_config_round_trips_through_dict():
    cfg = FinetuneConfig(task="sequence-classification", class_weights=(1.0, 2.0), max_steps=5)
    assert FinetuneConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# ---------------------------------------------------------------------- end-to-end, tiny
def test_token_classification_run_writes_a_loadable_model_that_reproduces_its_metrics(ss, ss_run):
    import transformers

    from protein_lm.metrics import token_metrics
    from protein_lm.pt.predict import predict

    out, res = ss_run  # finetune(ss train/validation/test, _config("token-classification"))
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "metrics.json", "training_log.csv",
            "training_curves.png", "tokenizer.json"} <= files
    assert not any(name.startswith("checkpoint") for name in files)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["validation"]) >= {"q3", "macro_f1", "mcc"}
    assert metrics["test"]["q3"] == pytest.approx(res.test["q3"])
    assert metrics["best_step"] in (2, 4) and metrics["steps"] == 4
    model = transformers.AutoModelForTokenClassification.from_pretrained(out)
    assert model.config.id2label == {0: "C", 1: "E", 2: "H"}
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok("MKT")["input_ids"] == [0, 20, 15, 11, 2]
    # The saved model is the one that was scored: predicting the test split with it gives the
    # test Q3 in metrics.json (best-vs-last checkpoint: see the regression test further down).
    pred = predict(out, dict(zip(ss["test"]["id"], ss["test"]["sequence"])))
    lab, prd = [], []
    for row, p in zip(ss["test"], pred.predictions):
        assert len(p) == len(row["sequence"])
        keep = [i for i, m in enumerate(row["mask"]) if m == "1"]
        lab += [row["label"][i] for i in keep]
        prd += [p[i] for i in keep]
    q3 = float(np.mean(np.array(lab) == np.array(prd)))
    assert q3 == pytest.approx(res.test["q3"], abs=1e-6)
    assert token_metrics(np.array([[0, 1]]), np.array([[0, 1]]))["q3"] == 1.0


def test_same_seed_same_weights(ss, ss_run, tmp_path):
    _, a = ss_run  # _config("token-classification"), seed 0 (its test-split scoring changes no weight)
    b = finetune(ss["train"], ss["validation"], config=_config("token-classification"),
                 output_dir=tmp_path / "b")
    c = finetune(ss["train"], ss["validation"], config=_config("token-classification", seed=1),
                 output_dir=tmp_path / "c")
    assert a.weights_sha256 == b.weights_sha256 != c.weights_sha256


def test_finetune_leaves_the_callers_random_states_alone(ss, tmp_path):
    """transformers reseeds python, numpy and torch inside; the caller's sequences go on."""
    import random

    import torch

    def draws() -> tuple[float, float, float]:
        return random.random(), float(np.random.random()), float(torch.rand(1))

    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    expected = draws()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    finetune(ss["train"], ss["validation"], output_dir=tmp_path / "run",
             config=_config("token-classification", max_steps=1, eval_steps=1, seed=3))
    assert draws() == expected


@pytest.fixture(scope="module")
def membrane(shared_data):
    from protein_lm.data import load_deeploc

    d = load_deeploc("membrane")
    return {k: _short(d[k], n, 200) for k, n in (("train", 48), ("validation", 16), ("test", 16))}


def test_sequence_classification_with_class_weights_and_lora(membrane, tmp_path):
    import transformers

    cfg = _config("sequence-classification", class_weights="balanced", lora=True, lora_rank=4)
    res = finetune(membrane["train"], membrane["validation"], membrane["test"], config=cfg,
                   output_dir=tmp_path / "seq")
    assert set(res.validation) >= {"accuracy", "macro_f1", "mcc"}
    assert res.id2label == {0: "membrane", 1: "soluble"}
    # LoRA adapters are merged: the directory is a plain model, no adapter files.
    assert not (tmp_path / "seq" / "adapter_config.json").exists()
    model = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "seq")
    assert model.config.num_labels == 2


def test_regression_on_blat_reports_correlations_in_label_units(shared_data, tmp_path):
    from protein_lm.data import load_blat
    from protein_lm.pt.predict import predict

    blat = load_blat()
    rows = blat.data.select(range(60))

    def mutate(m: str) -> str:
        pos = int(m[1:-1]) - blat.offset
        return blat.wild_type[:pos] + m[-1] + blat.wild_type[pos + 1 :]

    table = {"id": rows["mutant"], "sequence": [mutate(m) for m in rows["mutant"]],
             "label": [float(v) for v in rows["label"]]}
    half = {k: v[:40] for k, v in table.items()}
    rest = {k: v[40:] for k, v in table.items()}
    res = finetune(half, rest, config=_config("regression", batch_tokens=3000),
                   output_dir=tmp_path / "reg")
    assert set(res.validation) >= {"spearman", "pearson", "mse"}
    pred = predict(tmp_path / "reg", dict(zip(rest["id"], rest["sequence"])))
    # Predictions are de-standardised back to fitness units: same mean scale as the labels.
    mse = float(np.mean((np.array(pred.predictions) - np.array(rest["label"])) ** 2))
    assert mse == pytest.approx(res.validation["mse"], rel=1e-4)


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d.update(label=["C" * len(s) for s in d["sequence"]]), "only one class"),
        (lambda d: d["sequence"].__setitem__(1, "MKJT"), r"row 2 .*'sequence'.*'J'"),
        (lambda d: d["label"].__setitem__(0, d["label"][0][:-1]), r"row 1 .*'label'"),
        (lambda d: d.pop("label"), "missing column"),
    ],
    ids=["single-class", "invalid-letter", "label-length", "missing-column"],
)
def test_bad_training_data_raises_naming_row_and_field(ss, tmp_path, change, match):
    train = {k: list(v) for k, v in ss["train"].to_dict().items()}
    change(train)
    with pytest.raises(InvalidInputError, match=match):
        finetune(train, ss["validation"], config=_config("token-classification"),
                 output_dir=tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_unknown_validation_class_is_rejected(membrane, tmp_path):
    val = membrane["validation"].to_dict()
    val["label"][3] = "nucleus"
    with pytest.raises(InvalidInputError, match=r"validation, row 4 .*unknown class 'nucleus'"):
        finetune(membrane["train"], val, config=_config("sequence-classification"),
                 output_dir=tmp_path / "bad")


def test_length_policy_error_names_the_record(ss, tmp_path):
    cfg = _config("token-classification", length_policy="error", max_length=40)
    with pytest.raises(InvalidInputError, match=r"row \d+ .*residues > 38"):
        finetune(ss["train"], ss["validation"], config=cfg, output_dir=tmp_path / "long")


def _synthetic_regression(n: int, seed: int = 0) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list(STANDARD_AA), size=int(rng.integers(20, 40))))
            for _ in range(n)]
    return {"id": [f"s{i}" for i in range(n)], "sequence": seqs,
            "label": [float(x) for x in rng.normal(size=n)]}


def test_diverged_training_stops_with_nothing_published(tmp_path):
    """Issue #16: a NaN loss or gradient norm stops the run; no NaN model is saved."""
    train, val = _synthetic_regression(16), _synthetic_regression(8, seed=1)
    cfg = _config("regression", learning_rate=1e30, max_steps=6, eval_steps=6)
    with pytest.raises(InvalidInputError, match=r"training diverged: (loss|grad_norm) is (nan|inf)"
                       r" at step \d+; nothing was saved"):
        finetune(train, val, config=cfg, output_dir=tmp_path / "run")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a temporary sibling


# --------------------------------------------------------------------------------- DDP
def test_two_process_ddp_on_cpu_agrees(ss, small_model_dir, tmp_path):
    """`torchrun --nproc_per_node 2` runs the CLI entry point with gloo; both ranks end equal."""
    from protein_lm.data import write_table

    write_table(ss["train"], tmp_path / "train.csv")
    write_table(ss["validation"], tmp_path / "val.csv")
    model_dir = small_model_dir
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "protein_lm.cli", "finetune", "--task", "token-classification",
           "--model", str(model_dir), "--train", str(tmp_path / "train.csv"),
           "--validation", str(tmp_path / "val.csv"), "--output-dir", str(tmp_path / "ddp"),
           "--max-steps", "3", "--eval-steps", "3", "--batch-tokens", "1500", "--device", "cpu",
           "--learning-rate", "1e-3", "--no-progress",
           "--max-time", "1000"]  # never reached; exercises the rank-0 stop broadcast each step
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    a, b = metrics["weights_sha256"]
    assert a == b
    va, vb = metrics["validation_per_process"]
    assert va == vb and va["q3"] > 0


def test_saved_model_is_the_best_checkpoint_not_the_last(ss, tmp_path):
    """Regression: transformers 5.24's best-model reload skipped ESM LayerNorm weights (saved as
    gamma/beta), so the 'best' model kept the last step's LayerNorms. With a learning rate high
    enough to make later steps worse, the saved model must reproduce the best step's validation
    loss (recomputed here with the Trainer's batching: mean of batch losses weighted by size).
    """
    import torch
    import transformers

    from protein_lm.batching import TokenBudgetBatchSampler
    from protein_lm.finetuning.splits import prepare_split
    from protein_lm.pt.trainer import make_collator

    cfg = _config("token-classification", max_steps=6, eval_steps=2, learning_rate=0.05)
    res = finetune(ss["train"], ss["validation"], config=cfg, output_dir=tmp_path / "best")
    assert res.best_step < res.steps  # precondition: the best checkpoint is not the last step
    label2id = {v: k for k, v in res.id2label.items()}
    val, _ = prepare_split(ss["validation"], "token-classification", label2id, "validation",
                           max_length=1024, length_policy="error")
    model = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path / "best").eval()
    collate = make_collator("token-classification", 1024)
    total = count = 0.0
    with torch.no_grad():
        for batch in TokenBudgetBatchSampler(val.lengths, 2 * cfg.batch_tokens, shuffle=False):
            loss = model(**collate([val[i] for i in batch])).loss
            total, count = total + float(loss) * len(batch), count + len(batch)
    assert total / count == pytest.approx(res.validation["loss"], rel=1e-4)


def test_gradient_checkpointing_and_eager_attention_run(ss, tmp_path):
    import transformers

    cfg = _config("token-classification", max_steps=2, eval_steps=2, gradient_checkpointing=True,
                  attn_implementation="eager", class_weights=(1.0, 2.0, 1.0))
    res = finetune(ss["train"], ss["validation"], config=cfg, output_dir=tmp_path / "gc")
    assert res.steps == 2 and 0 <= res.validation["q3"] <= 1
    saved = transformers.AutoConfig.from_pretrained(tmp_path / "gc")
    assert saved.protein_lm_task == "token-classification"


def test_cli_run_removes_stale_temp_dirs_follows_umask_and_writes_int_counts(ss, small_model_dir,
                                                                            tmp_path, capsys):
    """F3, F8, F9: a killed run's hidden temp folder is removed by the next run; results are
    0644/0755 under umask 022 (not mkdtemp's 0600/0700); `n_residues` is an int in both splits."""
    from protein_lm.cli import main
    from protein_lm.data import write_table

    write_table(ss["train"], tmp_path / "train.csv")
    write_table(ss["validation"], tmp_path / "val.csv")
    write_table(ss["test"], tmp_path / "test.tsv")  # a tab-separated test file
    stale = tmp_path / ".run.k2j4h8sd.tmp"  # what a killed run leaves
    (stale / "checkpoints").mkdir(parents=True)
    old = os.umask(0o022)
    try:
        code = main(["finetune", "--task", "token-classification", "--model",
                     str(small_model_dir), "--train", str(tmp_path / "train.csv"),
                     "--validation", str(tmp_path / "val.csv"), "--test", str(tmp_path / "test.tsv"),
                     "--output-dir", str(tmp_path / "run"), "--max-steps", "2", "--eval-steps", "2",
                     "--batch-tokens", "2000", "--device", "cpu", "--no-progress"])
    finally:
        os.umask(old)
    assert code == 0 and "validation q3" in capsys.readouterr().out
    assert not stale.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    out = tmp_path / "run"
    assert oct(out.stat().st_mode & 0o777) == oct(0o755)
    assert oct((out / "model.safetensors").stat().st_mode & 0o777) == oct(0o644)
    assert all(p.stat().st_mode & 0o777 == (0o755 if p.is_dir() else 0o644) for p in out.rglob("*"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert type(metrics["validation"]["n_residues"]) is int
    assert type(metrics["test"]["n_residues"]) is int
    # what `protein-lm finetune` writes (moved from test_cli's round trip, which now predicts with
    # the session's fine-tuned model instead of training its own)
    assert {"validation", "test"} <= set(metrics) and metrics["test"]["q3"] > 0
    with open(out / "training_log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["split"] for r in rows} >= {"train", "validation"}
    assert (out / "training_curves.png").stat().st_size > 1000
