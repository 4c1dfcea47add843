"""transformers ESM-2 checkpoints <-> the Keras model of `protein_lm.tf.model`.

A checkpoint is a transformers model directory (`config.json` + `model.safetensors`), a hub id, or
`tiny`. Weights are read and written with `safetensors.numpy`, so the TF path never needs torch.
Names follow transformers' `EsmForSequenceClassification` (head `classifier.dense`,
`classifier.out_proj`; regression = the same head with one output and `problem_type="regression"`)
and `EsmForTokenClassification` (head `classifier`). Reading accepts the spellings transformers v4
and v5 write (`LayerNorm.gamma`/`beta`, per-layer or shared rotary `inv_freq`) and bare `EsmModel`
checkpoints; the contact head is carried through unchanged so a saved directory is complete.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from protein_lm.errors import InvalidInputError, ModelNotFoundError, require
from protein_lm.files import staged_files
from protein_lm.models import TASK_ARCHITECTURES

if TYPE_CHECKING:  # protein_lm.tf.model imports keras: loaded in `load_tf_model`, on first use
    import keras
    from transformers import EsmConfig

    from protein_lm.tf.model import EsmTaskModel

__all__ = ["load_tf_model", "save_tf_model", "tf_state_dict"]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ weight names (transformers)
def _weight_map(model: EsmTaskModel) -> dict[str, tuple[keras.Variable, bool]]:
    """transformers state-dict name -> (Keras variable, transpose?); torch Linear is (out, in)."""
    out: dict[str, tuple[keras.Variable, bool]] = {}

    def dense(name: str, layer: keras.layers.Dense) -> None:
        out[f"{name}.weight"], out[f"{name}.bias"] = (layer.kernel, True), (layer.bias, False)

    def norm(name: str, layer: keras.layers.LayerNormalization) -> None:
        out[f"{name}.weight"], out[f"{name}.bias"] = (layer.gamma, False), (layer.beta, False)

    enc = model.esm
    out["esm.embeddings.word_embeddings.weight"] = (enc.word_embeddings.embeddings, False)
    if enc.layer_norm_before is not None:
        norm("esm.embeddings.layer_norm", enc.layer_norm_before)
    for i, block in enumerate(enc.blocks):
        p, att = f"esm.encoder.layer.{i}.", block.attention
        for part in ("query", "key", "value"):
            dense(f"{p}attention.self.{part}", getattr(att, part))
        dense(f"{p}attention.output.dense", att.dense)
        norm(f"{p}attention.LayerNorm", att.layer_norm)
        dense(f"{p}intermediate.dense", block.intermediate)
        dense(f"{p}output.dense", block.output_dense)
        norm(f"{p}LayerNorm", block.layer_norm)
    norm("esm.encoder.emb_layer_norm_after", enc.final_layer_norm)
    if model.task == "token-classification":
        dense("classifier", model.classifier)
    else:
        dense("classifier.dense", model.classifier_dense)
        dense("classifier.out_proj", model.out_proj)
    return out


_INV_FREQ = "esm.rotary_embeddings.inv_freq"


def _normalise_keys(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Map the spellings transformers v4/v5 and bare `EsmModel` checkpoints use onto one."""
    out: dict[str, np.ndarray] = {}
    bare = not any(k.startswith("esm.") for k in state)
    for key, value in state.items():
        if bare and not key.startswith(("classifier", "lm_head")):
            key = f"esm.{key}"
        if key.endswith("rotary_embeddings.inv_freq"):
            key = _INV_FREQ  # v4: one copy per layer, v5 saves 'layer.*.': all equal
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
            "LayerNorm.beta", "LayerNorm.bias"
        )
        out[key] = value
    return out


def tf_state_dict(model: EsmTaskModel) -> dict[str, np.ndarray]:
    """The model's weights as a float32 numpy dict with transformers' names (torch layout)."""
    state = {
        k: np.ascontiguousarray(v.numpy().T if t else v.numpy()).astype(np.float32)
        for k, (v, t) in _weight_map(model).items()
    }
    state[_INV_FREQ] = model.esm.inv_freq.numpy().astype(np.float32)
    state.update(model.passthrough)
    return state


def _default_inv_freq(cfg: EsmConfig) -> np.ndarray:
    dim = cfg.hidden_size // cfg.num_attention_heads
    rope = getattr(cfg, "rope_parameters", None) or {}
    base = float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))
    return (1.0 / base ** (np.arange(0, dim, 2, dtype=np.float32) / dim)).astype(np.float32)


def _random_state(model: EsmTaskModel, seed: int) -> dict[str, np.ndarray]:
    """transformers' initialisation: N(0, initializer_range) weights, zero biases, unit norms."""
    rng = np.random.default_rng(seed)
    std = float(getattr(model.hf_config, "initializer_range", 0.02))
    state: dict[str, np.ndarray] = {}
    for name, (var, transpose) in _weight_map(model).items():
        shape = tuple(var.shape)[::-1] if transpose else tuple(var.shape)
        if name.endswith(("LayerNorm.weight", "layer_norm.weight", "emb_layer_norm_after.weight")):
            state[name] = np.ones(shape, np.float32)
        elif name.endswith(".bias"):
            state[name] = np.zeros(shape, np.float32)
        else:
            state[name] = rng.normal(0.0, std, shape).astype(np.float32)
    pad = model.hf_config.pad_token_id
    state["esm.embeddings.word_embeddings.weight"][pad] = 0.0  # padding_idx row, as nn.Embedding
    # The contact head is unused here but part of every transformers ESM checkpoint.
    n_attn = model.hf_config.num_hidden_layers * model.hf_config.num_attention_heads
    state["esm.contact_head.regression.weight"] = rng.normal(0.0, std, (1, n_attn)).astype(
        np.float32
    )
    state["esm.contact_head.regression.bias"] = np.zeros((1,), np.float32)
    return state


def _assign(
    model: EsmTaskModel, state: dict[str, np.ndarray], source: str, seed: int
) -> list[str]:
    """Copy `state` into the model; head weights missing from `state` start fresh (seeded)."""
    state = _normalise_keys(state)
    fresh = _random_state(model, seed)
    missing: list[str] = []
    for name, (var, transpose) in _weight_map(model).items():
        value = state.get(name)
        expected = tuple(var.shape)[::-1] if transpose else tuple(var.shape)
        if value is not None and tuple(value.shape) != expected:
            if name.startswith("classifier"):
                value = None  # head with another label count: start a new one, like transformers
            else:
                raise InvalidInputError(
                    f"Checkpoint {source}: weight {name} has shape {tuple(value.shape)}, "
                    "the config "
                    f"implies {expected}; config.json and model.safetensors do not belong together"
                )
        if value is None:
            if not name.startswith("classifier"):
                raise InvalidInputError(
                    f"Checkpoint {source} has no weight {name}; is it an ESM-2 model?"
                )
            missing.append(name)
            value = fresh[name]
        var.assign(value.T if transpose else value)
    inv = state.get(_INV_FREQ)
    model.esm.inv_freq.assign(
        inv.astype(np.float32) if inv is not None else _default_inv_freq(model.hf_config)
    )
    # Weights the heads do not use (contact head) travel unchanged: a saved directory is complete.
    used = set(_weight_map(model)) | {_INV_FREQ}
    model.passthrough = {k: v for k, v in state.items() if k.startswith("esm.") and k not in used}
    return missing


# ------------------------------------------------------------------ loading and saving
def _checkpoint_files(name_or_path: str) -> tuple[dict[str, Any], list[Path]]:
    """config.json (as a dict) and safetensors files of a local directory or a hub id.

    The name is resolved by `models.resolve_model`, as for PyTorch: same rules, same messages.
    """
    from protein_lm.models import check_safetensors, resolve_model  # light: no torch

    source = resolve_model(name_or_path)
    if source.local:
        path = Path(source.name)
        config = json.loads((path / "config.json").read_text())
        # The files PyTorch loads, validated, and no others: a stray *.safetensors beside
        # model.safetensors would otherwise overwrite its weights (TF predicting unlike PT).
        return config, check_safetensors(path)
    hub = require("huggingface_hub", "tf")
    try:
        cfg = hub.hf_hub_download(
            source.name, "config.json", local_files_only=source.local_files_only
        )
        weights = hub.hf_hub_download(
            source.name, "model.safetensors", local_files_only=source.local_files_only
        )
    except Exception as exc:  # any hub failure: say what to do
        raise ModelNotFoundError(
            f"Could not get model.safetensors of {source.name!r} ({exc}); download it once while "
            f"online (`hf download {source.name}`) or pass a local model directory"
        ) from exc
    return json.loads(Path(cfg).read_text()), [Path(weights)]


def _hf_config(
    config: dict[str, Any] | EsmConfig,
    task: str,
    num_labels: int | None,
    id2label: dict[int, str] | None,
) -> tuple[EsmConfig, bool]:
    """An `EsmConfig` for `task`; second value: True when the labels changed (new head)."""
    transformers = require("transformers", "tf")
    from protein_lm.models import label_config_kwargs

    cfg = (
        config
        if not isinstance(config, dict)
        else transformers.EsmConfig(
            **{
                k: v
                for k, v in config.items()
                if k not in ("architectures", "transformers_version")
            }
        )
    )
    label_kw = label_config_kwargs(task, num_labels, id2label)
    old = (cfg.num_labels, dict(cfg.id2label))
    for key, value in label_kw.items():
        setattr(cfg, key, value)
    if task == "token-classification":
        cfg.problem_type = None
    cfg.architectures = [TASK_ARCHITECTURES[task]]
    return cfg, (cfg.num_labels, dict(cfg.id2label)) != old


def load_tf_model(
    name_or_path: str,
    task: str,
    *,
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
    dtype: str = "float32",
    seed: int = 0,
    config_overrides: dict[str, Any] | None = None,
) -> EsmTaskModel:
    """Load an ESM-2 checkpoint (hub id, local transformers directory or `tiny`) into Keras.

    Parameters
    ----------
    name_or_path : str
        Same names as `protein_lm.models.load_model`: a hub id, a preset key, a directory written
        by PyTorch or TF (`config.json` + `model.safetensors`), or `tiny` (random, seeded).
    task : {"sequence-classification", "token-classification", "regression"}
    num_labels, id2label : int, dict
        Labels of a new head; a directory that already holds a head for `task` keeps its labels.
    dtype : str
        Keras dtype policy ("float32", "mixed_bfloat16", "mixed_float16").
    seed : int
        Seed of randomly initialised weights (`tiny`, new heads).
    config_overrides : dict, optional
        Architecture changes for `tiny` (e.g. `{"num_hidden_layers": 2}`).

    Returns
    -------
    EsmTaskModel
        A `keras.Model`, called as `model({"input_ids": (B, T) int, "attention_mask": (B, T)
        int})`. Attributes: `hf_config` (the `EsmConfig` saved with it), `task`, `new_head`
        (names of head weights initialised fresh rather than read from the checkpoint).
    """
    from protein_lm.tf.model import TF_TASKS, build_tf_model  # keras: missing extra named here

    if task not in TF_TASKS:
        raise ValueError(f"`task` must be one of {TF_TASKS}, got {task!r}")
    if name_or_path == "tiny":
        from protein_lm.models import tiny_config

        cfg, _ = _hf_config(tiny_config(**(config_overrides or {})), task, num_labels, id2label)
        model = build_tf_model(cfg, task, dtype=dtype)
        state = _random_state(model, seed)
        state[_INV_FREQ] = _default_inv_freq(cfg)
        model.new_head = _assign(model, state, "tiny", seed)
        return model
    config, files = _checkpoint_files(name_or_path)
    from protein_lm.models import check_head, label_config_kwargs

    check_head(config, task, label_config_kwargs(task, num_labels, id2label), name_or_path)
    safetensors_numpy = require("safetensors.numpy", "tf")
    state = {}
    for file in files:
        state.update(safetensors_numpy.load_file(str(file)))
    cfg, relabelled = _hf_config(config, task, num_labels, id2label)
    model = build_tf_model(cfg, task, dtype=dtype)
    if relabelled:  # labels differ from the checkpoint's: its head (if any) does not apply
        state = {k: v for k, v in state.items() if not k.startswith("classifier")}
    missing = model.new_head = _assign(model, state, name_or_path, seed)
    if missing:
        log.info("New %s head initialised (seed %d): %s", task, seed, ", ".join(missing))
    return model


def save_tf_model(model: Any, directory: str | os.PathLike[str]) -> Path:
    """Write `config.json`, `model.safetensors` and tokenizer files loadable by transformers.

    Files are written to a temporary folder first and moved into `directory` one by one, so a
    failure leaves no half-written checkpoint.
    """
    safetensors_numpy = require("safetensors.numpy", "tf")
    from protein_lm.tokenization import hf_tokenizer

    with staged_files(directory) as tmp:
        cfg = model.hf_config
        cfg.architectures = [TASK_ARCHITECTURES[model.task]]
        cfg.save_pretrained(tmp)
        safetensors_numpy.save_file(
            tf_state_dict(model), str(tmp / "model.safetensors"), metadata={"format": "pt"}
        )
        hf_tokenizer().save_pretrained(tmp)
    return Path(directory)
