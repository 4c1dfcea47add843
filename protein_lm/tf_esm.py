"""ESM-2 in Keras 3 (TensorFlow backend): encoder, task heads, and transformers checkpoints.

The encoder is written here rather than taken from KerasHub's `ESMBackbone`: KerasHub has no
token-classification head, its tokenizer wants space-separated residues, it is one more heavy
dependency, and in the project's trials its logits drifted ~5e-2 from transformers on padded
batches. This file follows `transformers/models/esm/modeling_esm.py` (v5) operation by operation,
so a checkpoint gives the same logits in both frameworks (tested to <= 1e-4 in float32):

- token dropout: `<mask>` embeddings are zeroed and all embeddings scaled by
  `(1 - 0.15 * 0.8) / (1 - n_mask / n_real_tokens)`, in eval mode too (ESM-2 trained that way);
- the query is scaled by `head_dim ** -0.5` *before* the rotary embedding (as ESM, not BERT);
- rotary embeddings use positions `0..T-1` and are applied in float32;
- pre-LayerNorm blocks, exact (erf) GELU, a final `emb_layer_norm_after`;
- padded keys are masked; padded positions of the embedding output are zeroed;
- the sequence head reads token 0 (`<cls>`): dense -> tanh -> out_proj.

Checkpoints are the transformers directory format (`config.json` + `model.safetensors`), read and
written with `safetensors.numpy`, so the TF path never needs torch.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from protein_lm.errors import InvalidInputError, ModelNotFoundError, require

__all__ = [
    "TF_TASKS",
    "build_tf_model",
    "load_tf_model",
    "save_tf_model",
    "tf_state_dict",
]

log = logging.getLogger(__name__)

TF_TASKS = ("sequence-classification", "token-classification", "regression")
_MASK_RATIO_TRAIN = 0.15 * 0.8  # hard-coded in ESM-2 training, and so in transformers
_ARCH = {
    "sequence-classification": "EsmForSequenceClassification",
    "regression": "EsmForSequenceClassification",
    "token-classification": "EsmForTokenClassification",
}


def _keras() -> Any:
    """Import keras on the TensorFlow backend, quietly (log level set here, not at import)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    require("tensorflow", "tf")
    keras = require("keras", "tf")
    if keras.backend.backend() != "tensorflow":
        raise InvalidInputError(
            f"protein_lm's TF path needs the Keras TensorFlow backend, but Keras runs on "
            f"{keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow before importing keras"
        )
    return keras


@functools.cache
def _classes() -> Any:
    """Define the Keras layers once, on first use (keras is imported lazily)."""
    keras = _keras()
    ops = keras.ops
    L = keras.layers

    def rotate_half(x: Any) -> Any:
        half = ops.shape(x)[-1] // 2
        return ops.concatenate([-x[..., half:], x[..., :half]], axis=-1)

    def gelu(x: Any) -> Any:  # exact erf GELU, as ESM (tanh approximation differs ~1e-3)
        return x * 0.5 * (1.0 + ops.erf(x * 0.7071067811865476))

    class EsmSelfAttention(L.Layer):
        """Pre-LN multi-head self-attention with rotary q/k and a residual connection."""

        def __init__(self, cfg: Any, **kw: Any) -> None:
            super().__init__(**kw)
            self._convert_input_args = False  # keep rotary cos/sin float32 under mixed precision
            d, pol = cfg.hidden_size, kw.get("dtype")
            self.heads = cfg.num_attention_heads
            self.head_dim = d // self.heads
            self.layer_norm = L.LayerNormalization(epsilon=cfg.layer_norm_eps, dtype=pol)
            self.query, self.key, self.value = (L.Dense(d, dtype=pol) for _ in range(3))
            self.dense = L.Dense(d, dtype=pol)
            self.attn_dropout = L.Dropout(cfg.attention_probs_dropout_prob, dtype=pol)
            self.out_dropout = L.Dropout(cfg.hidden_dropout_prob, dtype=pol)

        def call(self, x: Any, key_mask: Any, cos: Any, sin: Any, training: bool = False) -> Any:
            b, t = ops.shape(x)[0], ops.shape(x)[1]
            h = self.layer_norm(x)

            def heads(y: Any) -> Any:  # (B, T, D) -> (B, H, T, Dh)
                return ops.transpose(ops.reshape(y, (b, t, self.heads, self.head_dim)), (0, 2, 1, 3))

            q = heads(self.query(h)) * (self.head_dim**-0.5)  # ESM scales q before rotary
            k, v = heads(self.key(h)), heads(self.value(h))
            q32, k32 = ops.cast(q, "float32"), ops.cast(k, "float32")  # rotary in float32
            q = ops.cast(q32 * cos + rotate_half(q32) * sin, v.dtype)
            k = ops.cast(k32 * cos + rotate_half(k32) * sin, v.dtype)
            scores = ops.cast(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))), "float32")  # (B,H,T,T)
            scores = ops.where(key_mask[:, None, None, :], scores, -1e9)  # padded keys get 0 weight
            probs = self.attn_dropout(ops.softmax(scores, axis=-1), training=training)
            out = ops.matmul(ops.cast(probs, v.dtype), v)  # (B, H, T, Dh)
            out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (b, t, self.heads * self.head_dim))
            return x + self.out_dropout(self.dense(out), training=training)

    class EsmLayer(L.Layer):
        """One transformer block: attention, then pre-LN feed-forward with exact GELU."""

        def __init__(self, cfg: Any, **kw: Any) -> None:
            super().__init__(**kw)
            self._convert_input_args = False  # keep rotary cos/sin float32 under mixed precision
            pol = kw.get("dtype")
            self.attention = EsmSelfAttention(cfg, dtype=pol)
            self.layer_norm = L.LayerNormalization(epsilon=cfg.layer_norm_eps, dtype=pol)
            self.intermediate = L.Dense(cfg.intermediate_size, dtype=pol)
            self.output_dense = L.Dense(cfg.hidden_size, dtype=pol)
            self.dropout = L.Dropout(cfg.hidden_dropout_prob, dtype=pol)

        def call(self, x: Any, key_mask: Any, cos: Any, sin: Any, training: bool = False) -> Any:
            a = self.attention(x, key_mask, cos, sin, training=training)
            h = self.output_dense(gelu(self.intermediate(self.layer_norm(a))))
            return a + self.dropout(h, training=training)

    class EsmEncoder(L.Layer):
        """Embeddings (with token-dropout rescaling), the blocks, and `emb_layer_norm_after`."""

        def __init__(self, cfg: Any, **kw: Any) -> None:
            super().__init__(**kw)
            pol = kw.get("dtype")
            self.cfg = cfg
            self.word_embeddings = L.Embedding(cfg.vocab_size, cfg.hidden_size, dtype=pol)
            self.layer_norm_before = (
                L.LayerNormalization(epsilon=cfg.layer_norm_eps, dtype=pol)
                if cfg.emb_layer_norm_before else None
            )
            self.blocks = [EsmLayer(cfg, dtype=pol) for _ in range(cfg.num_hidden_layers)]
            self.final_layer_norm = L.LayerNormalization(epsilon=cfg.layer_norm_eps, dtype=pol)
            head_dim = cfg.hidden_size // cfg.num_attention_heads
            self.inv_freq = self.add_weight(
                shape=(head_dim // 2,), initializer="zeros", trainable=False, dtype="float32",
                name="inv_freq", autocast=False,  # rotary angles stay float32 under mixed precision
            )

        def call(self, input_ids: Any, attention_mask: Any, training: bool = False) -> Any:
            cfg = self.cfg
            real = ops.cast(attention_mask, "float32")  # (B, T)
            x = self.word_embeddings(input_ids)  # (B, T, D)
            if cfg.token_dropout:
                is_mask = ops.equal(input_ids, cfg.mask_token_id)
                x = ops.where(is_mask[..., None], ops.zeros_like(x), x)
                observed = ops.sum(ops.cast(is_mask, "float32"), -1) / ops.sum(real, -1)  # (B,)
                scale = (1.0 - _MASK_RATIO_TRAIN) / (1.0 - observed)
                x = x * ops.cast(scale[:, None, None], x.dtype)
            if self.layer_norm_before is not None:
                x = self.layer_norm_before(x)
            x = x * ops.cast(real[..., None], x.dtype)
            pos = ops.cast(ops.arange(ops.shape(input_ids)[1]), "float32")
            freqs = pos[:, None] * self.inv_freq[None, :]  # (T, Dh/2)
            emb = ops.concatenate([freqs, freqs], axis=-1)  # (T, Dh)
            cos, sin = ops.cos(emb)[None, None], ops.sin(emb)[None, None]  # (1, 1, T, Dh)
            key_mask = ops.greater(real, 0.0)
            for block in self.blocks:
                x = block(x, key_mask, cos, sin, training=training)
            return self.final_layer_norm(x)

    class EsmTaskModel(keras.Model):
        """ESM-2 encoder + one head; `call({"input_ids", "attention_mask"})` -> float32 logits.

        Logits are `(B, num_labels)` (sequence), `(B, T, num_labels)` (token) or `(B, 1)`
        (regression), as transformers' `EsmForSequenceClassification`/`EsmForTokenClassification`.
        """

        def __init__(self, hf_config: Any, task: str, **kw: Any) -> None:
            super().__init__(**kw)
            pol = kw.get("dtype")
            self.hf_config, self.task = hf_config, task
            self.num_labels = hf_config.num_labels
            self.esm = EsmEncoder(hf_config, dtype=pol)
            self.head_dropout = L.Dropout(hf_config.hidden_dropout_prob, dtype=pol)
            if task == "token-classification":
                self.classifier = L.Dense(self.num_labels, dtype=pol)
            else:
                self.classifier_dense = L.Dense(hf_config.hidden_size, dtype=pol)
                self.out_proj = L.Dense(self.num_labels, dtype=pol)

        def call(self, inputs: Any, training: bool = False) -> Any:
            h = self.esm(inputs["input_ids"], inputs["attention_mask"], training=training)
            if self.task == "token-classification":
                logits = self.classifier(self.head_dropout(h, training=training))
            else:
                x = self.head_dropout(h[:, 0, :], training=training)  # <cls> token
                x = ops.tanh(self.classifier_dense(x))
                logits = self.out_proj(self.head_dropout(x, training=training))
            return ops.cast(logits, "float32")  # loss in float32 under mixed precision

    return EsmTaskModel


def _check_config(cfg: Any) -> None:
    if getattr(cfg, "is_folding_model", False):
        raise InvalidInputError("This is an ESMFold checkpoint; the TF path fine-tunes ESM-2 encoders")
    if getattr(cfg, "position_embedding_type", "rotary") != "rotary":
        raise InvalidInputError(
            f"The TF path supports rotary ESM-2 checkpoints only, got position_embedding_type="
            f"{cfg.position_embedding_type!r} (ESM-1b style); fine-tune it with --framework pt"
        )
    if cfg.hidden_size % cfg.num_attention_heads:
        raise InvalidInputError(
            f"hidden_size {cfg.hidden_size} is not a multiple of num_attention_heads "
            f"{cfg.num_attention_heads}"
        )


def build_tf_model(hf_config: Any, task: str, *, dtype: str = "float32") -> Any:
    """An unweighted (built, zero-initialised) Keras ESM-2 model for `task` from an `EsmConfig`.

    Parameters
    ----------
    hf_config : transformers.EsmConfig
        Architecture and labels (`num_labels`, `id2label`).
    task : {"sequence-classification", "token-classification", "regression"}
    dtype : str
        Keras dtype policy: "float32", or "mixed_bfloat16"/"mixed_float16" on GPU.
    """
    if task not in TF_TASKS:
        raise ValueError(f"`task` must be one of {TF_TASKS}, got {task!r}")
    _check_config(hf_config)
    model = _classes()(hf_config, task, dtype=dtype)
    dummy = {"input_ids": np.array([[0, 5, 2]], "int32"), "attention_mask": np.ones((1, 3), "int32")}
    model(dummy)  # build every variable
    return model


# ------------------------------------------------------------------ weight names (transformers)
def _weight_map(model: Any) -> dict[str, tuple[Any, bool]]:
    """transformers state-dict name -> (Keras variable, transpose?); torch Linear is (out, in)."""
    out: dict[str, tuple[Any, bool]] = {}

    def dense(name: str, layer: Any) -> None:
        out[f"{name}.weight"], out[f"{name}.bias"] = (layer.kernel, True), (layer.bias, False)

    def norm(name: str, layer: Any) -> None:
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
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[key] = value
    return out


def tf_state_dict(model: Any) -> dict[str, np.ndarray]:
    """The model's weights as a float32 numpy dict with transformers' names (torch layout)."""
    state = {k: np.ascontiguousarray(v.numpy().T if t else v.numpy()).astype(np.float32)
             for k, (v, t) in _weight_map(model).items()}
    state[_INV_FREQ] = model.esm.inv_freq.numpy().astype(np.float32)
    state.update(getattr(model, "passthrough", {}))
    return state


def _default_inv_freq(cfg: Any) -> np.ndarray:
    dim = cfg.hidden_size // cfg.num_attention_heads
    rope = getattr(cfg, "rope_parameters", None) or {}
    base = float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))
    return (1.0 / base ** (np.arange(0, dim, 2, dtype=np.float32) / dim)).astype(np.float32)


def _random_state(model: Any, seed: int) -> dict[str, np.ndarray]:
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
    state["esm.contact_head.regression.weight"] = rng.normal(0.0, std, (1, n_attn)).astype(np.float32)
    state["esm.contact_head.regression.bias"] = np.zeros((1,), np.float32)
    return state


def _assign(model: Any, state: dict[str, np.ndarray], source: str, seed: int) -> list[str]:
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
                    f"Checkpoint {source}: weight {name} has shape {tuple(value.shape)}, the config "
                    f"implies {expected}; config.json and model.safetensors do not belong together"
                )
        if value is None:
            if not name.startswith("classifier"):
                raise InvalidInputError(f"Checkpoint {source} has no weight {name}; is it an ESM-2 model?")
            missing.append(name)
            value = fresh[name]
        var.assign(value.T if transpose else value)
    inv = state.get(_INV_FREQ)
    model.esm.inv_freq.assign(inv.astype(np.float32) if inv is not None else _default_inv_freq(model.hf_config))
    # Weights the heads do not use (contact head) travel unchanged, so a saved directory is complete.
    used = set(_weight_map(model)) | {_INV_FREQ}
    model.passthrough = {k: v for k, v in state.items()
                         if k.startswith("esm.") and k not in used}
    return missing


# ------------------------------------------------------------------ loading and saving
def _checkpoint_files(name_or_path: str) -> tuple[dict[str, Any], list[Path]]:
    """config.json (as a dict) and safetensors files of a local directory or a hub id."""
    from protein_lm.models import ESM2_PRESETS  # light: no torch

    name = ESM2_PRESETS.get(name_or_path, {}).get("hub_id", name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if not (path / "config.json").is_file() or not files:
            raise ModelNotFoundError(
                f"{path} is not a model directory: it needs config.json and model.safetensors "
                "(as written by `protein-lm finetune` or `save_pretrained`)"
            )
        return json.loads((path / "config.json").read_text()), files
    from protein_lm.models import load_config  # offline/uncached hub id -> ModelNotFoundError

    load_config(name)
    hub = require("huggingface_hub", "tf")
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    try:
        cfg = hub.hf_hub_download(name, "config.json", local_files_only=offline)
        weights = hub.hf_hub_download(name, "model.safetensors", local_files_only=offline)
    except Exception as exc:  # noqa: BLE001 - any hub failure: say what to do
        raise ModelNotFoundError(
            f"Could not get model.safetensors of {name!r} ({exc}); download it once while online "
            f"(`hf download {name}`) or pass a local model directory"
        ) from exc
    return json.loads(Path(cfg).read_text()), [Path(weights)]


def _hf_config(config: dict[str, Any] | Any, task: str, num_labels: int | None,
               id2label: dict[int, str] | None) -> tuple[Any, bool]:
    """An `EsmConfig` for `task`; second value: True when the labels changed (new head)."""
    transformers = require("transformers", "tf")
    from protein_lm.models import _label_kwargs

    cfg = config if not isinstance(config, dict) else transformers.EsmConfig(**{
        k: v for k, v in config.items() if k not in ("architectures", "transformers_version")})
    label_kw = _label_kwargs(task, num_labels, id2label)
    old = (cfg.num_labels, dict(cfg.id2label))
    for key, value in label_kw.items():
        setattr(cfg, key, value)
    if task == "token-classification":
        cfg.problem_type = None
    cfg.architectures = [_ARCH[task]]
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
) -> Any:
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
    keras.Model
        Called as `model({"input_ids": (B, T) int, "attention_mask": (B, T) int})`. Attributes:
        `hf_config` (the `EsmConfig` saved with it), `task`, `new_head` (names of head weights
        initialised fresh rather than read from the checkpoint).
    """
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
    safetensors_numpy = require("safetensors.numpy", "tf")
    state: dict[str, np.ndarray] = {}
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

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".tmp-save-") as tmp:
        cfg = model.hf_config
        cfg.architectures = [_ARCH[model.task]]
        cfg.save_pretrained(tmp)
        safetensors_numpy.save_file(tf_state_dict(model), str(Path(tmp) / "model.safetensors"),
                                    metadata={"format": "pt"})
        hf_tokenizer().save_pretrained(tmp)
        for file in Path(tmp).iterdir():
            os.replace(file, out / file.name)
    return out
