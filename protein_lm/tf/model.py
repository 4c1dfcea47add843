"""ESM-2 in Keras 3 (TensorFlow backend): the encoder and the three task heads.

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

Weights come from, and go back to, transformers checkpoints: see `protein_lm.tf.checkpoint`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from protein_lm.errors import InvalidInputError, require

if TYPE_CHECKING:
    from transformers import EsmConfig

__all__ = ["TF_TASKS", "EsmTaskModel", "build_tf_model", "inference_function", "keras_tf"]

TF_TASKS = ("sequence-classification", "token-classification", "regression")
_MASK_RATIO_TRAIN = 0.15 * 0.8  # hard-coded in ESM-2 training, and so in transformers
log = logging.getLogger(__name__)


@contextlib.contextmanager
def _quiet_fd2() -> Iterator[None]:
    """Send the process's stderr (file descriptor 2) to a temporary file for a block, then log
    what was written at DEBUG.

    TensorFlow's C++ start-up writes "All log messages before absl::InitializeLog()", the oneDNN
    notice, "Could not find cuda drivers" (twice each) and, on the first device query, "failed
    call to cuInit" straight to fd 2, past `TF_CPP_MIN_LOG_LEVEL` and past `sys.stderr` (Jupyter
    shows them in red under the cell). Python-level errors still raise normally.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace").strip()
            if text:
                log.debug("TensorFlow start-up messages:\n%s", text)


def keras_tf() -> ModuleType:
    """Import keras on the TensorFlow backend, quietly (TF log level and backend set first).

    Both are environment defaults, so a user's own `TF_CPP_MIN_LOG_LEVEL`/`KERAS_BACKEND` win.
    TensorFlow's start-up lines written to fd 2 are logged at DEBUG instead (`_quiet_fd2`), and
    `TF_FORCE_GPU_ALLOW_GROWTH` defaults to true: TensorFlow would otherwise reserve most of a GPU
    that torch (ESMFold, a PyTorch model) shares in the same process.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    if "tensorflow" not in sys.modules:
        with _quiet_fd2():
            tf = require("tensorflow", "tf")
            tf.config.list_physical_devices()  # the device probe (cuInit) happens here, quietly
    keras = require("keras", "tf")
    if keras.backend.backend() != "tensorflow":
        raise InvalidInputError(
            f"protein_lm's TF path needs the Keras TensorFlow backend, but Keras runs on "
            f"{keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow before importing keras"
        )
    return keras


# The backend must be chosen before keras is first imported, and a missing extra must name it
# (`MissingExtraError`): so the checked import runs first and the plain imports follow.
keras_tf()
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers, ops  # noqa: E402

# Weights are overwritten from a checkpoint (or seeded numpy) right after building, so layers
# start at zeros: Keras' default random initialisers would draw seeds from the global `random`.
_ZEROS = "zeros"


def _rotate_half(x: tf.Tensor) -> tf.Tensor:
    half = ops.shape(x)[-1] // 2
    return ops.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def _gelu(x: tf.Tensor) -> tf.Tensor:  # exact erf GELU, as ESM (tanh approximation differs ~1e-3)
    return x * 0.5 * (1.0 + ops.erf(x * 0.7071067811865476))


def _dense(units: int, dtype: str | None) -> layers.Dense:
    return layers.Dense(units, dtype=dtype, kernel_initializer=_ZEROS)


class EsmSelfAttention(layers.Layer):
    """Pre-LN multi-head self-attention with rotary q/k and a residual connection."""

    def __init__(self, cfg: EsmConfig, dtype: str | None = None) -> None:
        super().__init__(dtype=dtype)
        self._convert_input_args = False  # keep rotary cos/sin float32 under mixed precision
        d = cfg.hidden_size
        self.heads = cfg.num_attention_heads
        self.head_dim = d // self.heads
        self.layer_norm = layers.LayerNormalization(epsilon=cfg.layer_norm_eps, dtype=dtype)
        self.query, self.key, self.value = (_dense(d, dtype) for _ in range(3))
        self.dense = _dense(d, dtype)
        self.attn_dropout = layers.Dropout(cfg.attention_probs_dropout_prob, dtype=dtype)
        self.out_dropout = layers.Dropout(cfg.hidden_dropout_prob, dtype=dtype)

    def call(
        self,
        x: tf.Tensor,
        key_mask: tf.Tensor,
        cos: tf.Tensor,
        sin: tf.Tensor,
        training: bool = False,
    ) -> tf.Tensor:
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        h = self.layer_norm(x)

        def heads(y: tf.Tensor) -> tf.Tensor:  # (B, T, D) -> (B, H, T, Dh)
            return ops.transpose(ops.reshape(y, (b, t, self.heads, self.head_dim)), (0, 2, 1, 3))

        q = heads(self.query(h)) * (self.head_dim**-0.5)  # ESM scales q before rotary
        k, v = heads(self.key(h)), heads(self.value(h))
        q32, k32 = ops.cast(q, "float32"), ops.cast(k, "float32")  # rotary in float32
        q = ops.cast(q32 * cos + _rotate_half(q32) * sin, v.dtype)
        k = ops.cast(k32 * cos + _rotate_half(k32) * sin, v.dtype)
        scores = ops.cast(ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))), "float32")  # (B,H,T,T)
        scores = ops.where(key_mask[:, None, None, :], scores, -1e9)  # padded keys: 0 weight
        probs = self.attn_dropout(ops.softmax(scores, axis=-1), training=training)
        out = ops.matmul(ops.cast(probs, v.dtype), v)  # (B, H, T, Dh)
        out = ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (b, t, self.heads * self.head_dim))
        return x + self.out_dropout(self.dense(out), training=training)


class EsmLayer(layers.Layer):
    """One transformer block: attention, then pre-LN feed-forward with exact GELU."""

    def __init__(self, cfg: EsmConfig, dtype: str | None = None) -> None:
        super().__init__(dtype=dtype)
        self._convert_input_args = False  # keep rotary cos/sin float32 under mixed precision
        self.attention = EsmSelfAttention(cfg, dtype=dtype)
        self.layer_norm = layers.LayerNormalization(epsilon=cfg.layer_norm_eps, dtype=dtype)
        self.intermediate = _dense(cfg.intermediate_size, dtype)
        self.output_dense = _dense(cfg.hidden_size, dtype)
        self.dropout = layers.Dropout(cfg.hidden_dropout_prob, dtype=dtype)

    def call(
        self,
        x: tf.Tensor,
        key_mask: tf.Tensor,
        cos: tf.Tensor,
        sin: tf.Tensor,
        training: bool = False,
    ) -> tf.Tensor:
        a = self.attention(x, key_mask, cos, sin, training=training)
        h = self.output_dense(_gelu(self.intermediate(self.layer_norm(a))))
        return a + self.dropout(h, training=training)


class EsmEncoder(layers.Layer):
    """Embeddings (with token-dropout rescaling), the blocks, and `emb_layer_norm_after`."""

    def __init__(self, cfg: EsmConfig, dtype: str | None = None) -> None:
        super().__init__(dtype=dtype)
        self.cfg = cfg
        self.word_embeddings = layers.Embedding(
            cfg.vocab_size, cfg.hidden_size, dtype=dtype, embeddings_initializer=_ZEROS
        )
        self.layer_norm_before = (
            layers.LayerNormalization(epsilon=cfg.layer_norm_eps, dtype=dtype)
            if cfg.emb_layer_norm_before
            else None
        )
        self.blocks = [EsmLayer(cfg, dtype=dtype) for _ in range(cfg.num_hidden_layers)]
        self.final_layer_norm = layers.LayerNormalization(epsilon=cfg.layer_norm_eps, dtype=dtype)
        head_dim = cfg.hidden_size // cfg.num_attention_heads
        self.inv_freq = self.add_weight(
            shape=(head_dim // 2,),
            initializer="zeros",
            trainable=False,
            dtype="float32",
            name="inv_freq",
            autocast=False,  # rotary angles stay float32 under mixed precision
        )

    def call(
        self, input_ids: tf.Tensor, attention_mask: tf.Tensor, training: bool = False
    ) -> tf.Tensor:
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

    Attributes
    ----------
    hf_config : transformers.EsmConfig
        The config saved with the model (architecture, labels, `protein_lm_*` stamps).
    task : str
        One of `TF_TASKS`.
    new_head : list of str
        Names of head weights initialised fresh rather than read from a checkpoint (set by
        `protein_lm.tf.checkpoint.load_tf_model`; empty for a fully read checkpoint).
    passthrough : dict of str to ndarray
        Checkpoint weights no head uses (the contact head), written back unchanged on save.
    """

    def __init__(self, hf_config: EsmConfig, task: str, dtype: str | None = None) -> None:
        super().__init__(dtype=dtype)
        self.hf_config, self.task = hf_config, task
        self.new_head: list[str] = []
        self.passthrough: dict[str, np.ndarray] = {}
        self.num_labels = hf_config.num_labels
        self.esm = EsmEncoder(hf_config, dtype=dtype)
        self.head_dropout = layers.Dropout(hf_config.hidden_dropout_prob, dtype=dtype)
        if task == "token-classification":
            self.classifier = _dense(self.num_labels, dtype)
        else:
            self.classifier_dense = _dense(hf_config.hidden_size, dtype)
            self.out_proj = _dense(self.num_labels, dtype)

    def call(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        h = self.esm(inputs["input_ids"], inputs["attention_mask"], training=training)
        if self.task == "token-classification":
            logits = self.classifier(self.head_dropout(h, training=training))
        else:
            x = self.head_dropout(h[:, 0, :], training=training)  # <cls> token
            x = ops.tanh(self.classifier_dense(x))
            logits = self.out_proj(self.head_dropout(x, training=training))
        return ops.cast(logits, "float32")  # loss in float32 under mixed precision


def _check_config(cfg: EsmConfig) -> None:
    if getattr(cfg, "is_folding_model", False):
        raise InvalidInputError(
            "This is an ESMFold checkpoint; the TF path fine-tunes ESM-2 encoders"
        )
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


def build_tf_model(hf_config: EsmConfig, task: str, *, dtype: str = "float32") -> EsmTaskModel:
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
    model = EsmTaskModel(hf_config, task, dtype=dtype)
    dummy = {
        "input_ids": np.array([[0, 5, 2]], "int32"),
        "attention_mask": np.ones((1, 3), "int32"),
    }
    model(dummy)  # build every variable
    return model


def inference_function(
    model: keras.Model, *, jit_compile: bool | None = None
) -> Callable[[dict[str, np.ndarray]], tf.Tensor]:
    """`model(x, training=False)` as one `tf.function` over int32 `(B, T)` id and mask arrays.

    The input signature has unknown batch and length, so batches of any shape share one graph
    (XLA, when `jit_compile`, still compiles per shape).
    """
    spec = tf.TensorSpec((None, None), tf.int32)
    return tf.function(
        lambda x: model(x, training=False),
        jit_compile=jit_compile,
        input_signature=[{"input_ids": spec, "attention_mask": spec}],
    )
