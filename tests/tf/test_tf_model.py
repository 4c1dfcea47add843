"""Keras ESM-2 vs transformers: logits parity on padded batches, mixed precision, optional deps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")

from protein_lm.errors import InvalidInputError  # noqa: E402
from protein_lm.models import load_model  # noqa: E402
from protein_lm.tf.checkpoint import load_tf_model  # noqa: E402
from protein_lm.tokenization import encode  # noqa: E402
from pt_reference import SEQS, TASKS, pt_logits, pt_model  # noqa: E402

ESM2_8M = {"num_layers": 6, "hidden_size": 320, "num_heads": 20}  # esm2_t6_8M_UR50D shape


@pytest.mark.parametrize("size", [{}, ESM2_8M], ids=["tiny", "esm2_t6_8M-shape"])
@pytest.mark.parametrize("task", TASKS)
def test_logits_match_transformers_on_padded_batch(task: str, size: dict, tmp_path: Path) -> None:
    pt = pt_model(task, size)
    pt.save_pretrained(tmp_path)
    batch = encode(SEQS)
    assert batch["attention_mask"].min() == 0  # the batch really is padded
    tf_model = load_tf_model(str(tmp_path), task)
    assert tf_model.new_head == []  # the fine-tuned head was read, not re-initialised
    ref, out = pt_logits(pt, batch), np.asarray(tf_model(batch))
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-4  # all positions, padded ones included


def test_padding_does_not_change_logits() -> None:
    model = load_tf_model("tiny", "token-classification", num_labels=3, seed=2)
    alone = np.asarray(model(encode(SEQS[:1])))
    padded = np.asarray(model(encode(SEQS)))[:1, : alone.shape[1]]
    assert np.abs(alone - padded).max() <= 1e-5


def test_mixed_bfloat16_policy_runs_close_to_float32() -> None:
    f32 = load_tf_model("tiny", "sequence-classification", num_labels=3, seed=5)
    bf16 = load_tf_model(
        "tiny", "sequence-classification", num_labels=3, seed=5, dtype="mixed_bfloat16"
    )
    assert bf16.esm.blocks[0].attention.query.kernel.dtype == "float32"  # master weights
    out32, out16 = np.asarray(f32(encode(SEQS))), np.asarray(bf16(encode(SEQS)))
    assert out16.dtype == np.float32 and np.abs(out16 - out32).max() < 0.1


def test_absolute_position_checkpoints_are_refused(tmp_path: Path) -> None:
    load_model(
        "tiny", "regression", config_overrides={"position_embedding_type": "absolute"}
    ).save_pretrained(tmp_path)
    with pytest.raises(InvalidInputError, match="rotary ESM-2 checkpoints only"):
        load_tf_model(str(tmp_path), "regression")


def test_unknown_task_is_refused() -> None:
    with pytest.raises(ValueError, match="`task` must be one of"):
        load_tf_model("tiny", "folding")


# -------------------------------------------------------------------------- optional deps
# Hide installed packages from the import system (as if not installed): find_spec returns None.
_BLOCK = """import sys, importlib.machinery as _m
class _Hide(_m.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split('.')[0] in {mods}:
            return None
        return _m.PathFinder.find_spec(name, path, target)
sys.meta_path = [_Hide if f is _m.PathFinder else f for f in sys.meta_path]
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def test_pytorch_path_works_without_tensorflow() -> None:
    code = _BLOCK.format(mods=["tensorflow", "keras"]) + (
        "import protein_lm, protein_lm.tf.training\n"
        "from protein_lm.models import load_model\n"
        "from protein_lm.tokenization import encode\n"
        "import torch\n"
        "m = load_model('tiny', 'token-classification', num_labels=3)\n"
        "b = {k: torch.from_numpy(v) for k, v in encode(['MKT']).items()}\n"
        "print(tuple(m(**b).logits.shape))\n"
        "from protein_lm.errors import MissingExtraError\n"
        "try:\n    protein_lm.tf.training.load_tf_model('tiny', 'regression')\n"
        "except MissingExtraError as e:\n    print('MISSING', e)\n"
    )
    res = _run(code)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "(1, 5, 3)" in res.stdout and "MISSING" in res.stdout and "protein_lm[tf]" in res.stdout


def test_tf_path_works_without_torch(tmp_path: Path) -> None:
    code = _BLOCK.format(mods=["torch", "torchvision", "torchaudio"]) + (
        "from protein_lm.tf.checkpoint import load_tf_model, save_tf_model\n"
        "from protein_lm.tf.predict import predict\n"
        "m = load_tf_model('tiny', 'token-classification', id2label={0: 'H', 1: 'E', 2: 'C'})\n"
        "m.hf_config.protein_lm_task = 'token-classification'\n"
        f"save_tf_model(m, {str(tmp_path)!r})\n"
        f"print(predict({str(tmp_path)!r}, ['MKTAYIAK']).predictions)\n"
        "print('TORCH' if sys.modules.get('torch') else 'NO_TORCH')\n"
    )
    res = _run(code)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "NO_TORCH" in res.stdout and "('" in res.stdout
