"""Resolve a model: a hub id, a local directory, or `tiny` (a small random ESM-2 for offline runs).

`load_model` never uses `trust_remote_code` and only reads safetensors. An uncached hub id while
offline fails within a few seconds with `ModelNotFoundError` (a socket probe with a 3 s timeout
replaces the hub client's retry loop), naming the two offline alternatives.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from protein_lm.errors import ModelNotFoundError, require
from protein_lm.sequences import ESM2_TOKENS, MASK_ID, PAD_ID

__all__ = [
    "ESM2_PRESETS",
    "TASKS",
    "Task",
    "tiny_config",
    "load_model",
    "load_config",
    "resolve_device",
]

# Presets are data: name -> hub id and architecture (layers, hidden size, heads, parameters).
ESM2_PRESETS: dict[str, dict[str, Any]] = {
    "esm2_t6_8M": {"hub_id": "facebook/esm2_t6_8M_UR50D", "layers": 6, "hidden": 320, "heads": 20, "params": "8M"},
    "esm2_t12_35M": {"hub_id": "facebook/esm2_t12_35M_UR50D", "layers": 12, "hidden": 480, "heads": 20, "params": "35M"},
    "esm2_t30_150M": {"hub_id": "facebook/esm2_t30_150M_UR50D", "layers": 30, "hidden": 640, "heads": 20, "params": "150M"},
    "esm2_t33_650M": {"hub_id": "facebook/esm2_t33_650M_UR50D", "layers": 33, "hidden": 1280, "heads": 20, "params": "650M"},
    "esm2_t36_3B": {"hub_id": "facebook/esm2_t36_3B_UR50D", "layers": 36, "hidden": 2560, "heads": 40, "params": "3B"},
    "esmfold_v1": {"hub_id": "facebook/esmfold_v1", "layers": 36, "hidden": 2560, "heads": 40, "params": "3.5B"},
}  # fmt: skip

Task = Literal[
    "masked-lm", "base", "sequence-classification", "token-classification", "regression", "folding"
]
TASKS: tuple[str, ...] = (
    "masked-lm", "base", "sequence-classification", "token-classification", "regression", "folding",
)  # fmt: skip

_AUTO_CLASSES = {
    "masked-lm": "EsmForMaskedLM",
    "base": "EsmModel",
    "sequence-classification": "EsmForSequenceClassification",
    "regression": "EsmForSequenceClassification",
    "token-classification": "EsmForTokenClassification",
    "folding": "EsmForProteinFolding",
}


def tiny_config(
    num_layers: int = 4,
    hidden_size: int = 128,
    num_heads: int = 8,
    **overrides: Any,
) -> Any:
    """An `EsmConfig` shaped like a released ESM-2 (rotary, token dropout, 33 tokens, dropout 0).

    Dropout is 0 as in every ESM-2 checkpoint: transformers' default of 0.1 also pushes sdpa onto a
    slow path in training (about 5x slower per step on 2 CPU cores, see DESIGN.md).
    """
    transformers = require("transformers", "torch")
    kwargs: dict[str, Any] = {
        "vocab_size": len(ESM2_TOKENS),
        "hidden_size": hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "intermediate_size": 4 * hidden_size,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "max_position_embeddings": 1026,
        "position_embedding_type": "rotary",
        "layer_norm_eps": 1e-5,
        "emb_layer_norm_before": False,
        "token_dropout": True,
        "pad_token_id": PAD_ID,
        "mask_token_id": MASK_ID,
        "vocab_list": list(ESM2_TOKENS),
        "is_folding_model": False,
        "esmfold_config": None,
    }
    kwargs.update(overrides)
    return transformers.EsmConfig(**kwargs)


def resolve_device(device: str | None = None) -> str:
    """`device` if given, else "cuda" when available, else "cpu"."""
    if device:
        return device
    torch = require("torch", "torch")
    return "cuda" if torch.cuda.is_available() else "cpu"


def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _label_kwargs(task: str, num_labels: int | None, id2label: dict[int, str] | None) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if task == "regression":
        kw.update(num_labels=1, problem_type="regression")
    elif task in ("sequence-classification", "token-classification"):
        if id2label is not None:
            id2label = {int(k): str(v) for k, v in id2label.items()}
            kw.update(num_labels=len(id2label), id2label=id2label,
                      label2id={v: k for k, v in id2label.items()})
        elif num_labels is not None:
            kw.update(num_labels=num_labels)
        if task == "sequence-classification":
            kw.update(problem_type="single_label_classification")
    return kw


def load_config(name_or_path: str) -> Any:
    """The `EsmConfig` of a hub id, local directory or `tiny`, with the same offline rules as `load_model`."""
    transformers = require("transformers", "torch")
    if name_or_path == "tiny":
        return tiny_config()
    source = _resolve_source(name_or_path)
    return transformers.AutoConfig.from_pretrained(source, local_files_only=not _is_remote(source))


def _is_remote(source: str) -> bool:
    return not Path(source).is_dir()


def _resolve_source(name_or_path: str) -> str:
    """A local directory, a cached hub id, or a reachable hub id; else `ModelNotFoundError`."""
    name = ESM2_PRESETS.get(name_or_path, {}).get("hub_id", name_or_path)
    if Path(name).is_dir():
        if not (Path(name) / "config.json").is_file():
            raise ModelNotFoundError(f"{name} is a directory but has no config.json; it is not a model directory")
        return name
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise ModelNotFoundError(f"Model directory {name!r} does not exist")
    hub = require("huggingface_hub", "torch")
    try:
        hub.hf_hub_download(name, "config.json", local_files_only=True)
        return name  # cached: transformers will load it offline
    except Exception:  # noqa: BLE001 - any cache miss means "not cached"
        pass
    if _hub_reachable():
        return name
    raise ModelNotFoundError(
        f"Model {name!r} is not in the local Hugging Face cache and the hub is unreachable (offline). "
        "Either pass a local model directory (a folder with config.json and model.safetensors, e.g. "
        "one saved by `protein-lm finetune` or `save_pretrained`), download it once while online "
        f"(`hf download {name}`), or use `tiny` for an offline smoke run with a small random ESM-2."
    )


def load_model(
    name_or_path: str,
    task: Task = "masked-lm",
    *,
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
    attn_implementation: Literal["eager", "sdpa"] = "sdpa",
    device: str | None = None,
    dtype: Any = None,
    seed: int = 0,
    config_overrides: dict[str, Any] | None = None,
) -> Any:
    """Load an ESM-2 (or ESMFold for `task="folding"`) model for `task` on `device`.

    Parameters
    ----------
    name_or_path : str
        A hub id (`facebook/esm2_t12_35M_UR50D`), a key of `ESM2_PRESETS`, a local directory, or
        `tiny` (random weights seeded by `seed`; for `task="folding"` a tiny ESMFold config).
    task : str
        One of `TASKS`. Classification heads are new (randomly initialised) unless the directory
        already holds that head; `regression` is a 1-output sequence head with MSE loss.
    attn_implementation : {"eager", "sdpa"}
        Attention backend passed to transformers; sdpa is the fast default.
    """
    if task not in TASKS:
        raise ValueError(f"`task` must be one of {TASKS}, got {task!r}")
    if attn_implementation not in ("eager", "sdpa"):
        raise ValueError(
            f"`attn_implementation` must be 'eager' or 'sdpa', got {attn_implementation!r}"
        )
    torch = require("torch", "torch")
    transformers = require("transformers", "torch")
    if task == "folding":
        # transformers' EsmForProteinFolding declares no sdpa support and raises on it.
        attn_implementation = "eager"
    cls = getattr(transformers, _AUTO_CLASSES[task])
    label_kw = _label_kwargs(task, num_labels, id2label)
    overrides = dict(config_overrides or {})
    if name_or_path == "tiny":
        if task == "folding":
            from protein_lm.folding.esmfold import tiny_folding_config  # lazy: folding extra

            config = tiny_folding_config(**overrides)
        else:
            config = tiny_config(**{**label_kw, **overrides})
        config._attn_implementation = attn_implementation
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(config).eval()  # eval mode, as from_pretrained returns it
    else:
        source = _resolve_source(name_or_path)
        model = cls.from_pretrained(
            source,
            use_safetensors=True,
            attn_implementation=attn_implementation,
            local_files_only=not _is_remote(source) or not _hub_reachable(),
            **({"dtype": dtype} if dtype is not None else {}),
            **label_kw,
            **overrides,
        )
    if dtype is not None:
        model = model.to(dtype)
    return model.to(resolve_device(device))
