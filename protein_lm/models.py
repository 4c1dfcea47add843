"""Resolve a model: a hub id, a local directory, or `tiny` (a small random ESM-2 for offline runs).

`resolve_model` is the one lookup of a name (preset, hub id, local directory) for every loader,
PyTorch and Keras alike. `load_model` never uses `trust_remote_code` and only reads
safetensors. An uncached hub id while
offline fails within a few seconds with `ModelNotFoundError` (a socket probe with a 3 s timeout
replaces the hub client's retry loop), naming the two offline alternatives.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from protein_lm.errors import InvalidInputError, ModelNotFoundError, require
from protein_lm.limits import MAX_TOKENS
from protein_lm.sequences import ESM2_TOKENS, MASK_ID, PAD_ID

if TYPE_CHECKING:
    import torch
    from transformers import EsmConfig, PretrainedConfig, PreTrainedModel

log = logging.getLogger(__name__)

__all__ = [
    "canonical_device",
    "check_head",
    "ESM2_PRESETS",
    "TASKS",
    "TASK_ARCHITECTURES",
    "Task",
    "tiny_config",
    "load_model",
    "load_config",
    "resolve_device",
    "check_device",
    "check_safetensors",
    "resolve_model",
    "ModelSource",
    "label_config_kwargs",
]

# Presets are data: name -> hub id and architecture (layers, hidden size, heads, parameters).
ESM2_PRESETS: dict[str, dict[str, Any]] = {
    "esm2_t6_8M": {
        "hub_id": "facebook/esm2_t6_8M_UR50D",
        "layers": 6,
        "hidden": 320,
        "heads": 20,
        "params": "8M",
    },
    "esm2_t12_35M": {
        "hub_id": "facebook/esm2_t12_35M_UR50D",
        "layers": 12,
        "hidden": 480,
        "heads": 20,
        "params": "35M",
    },
    "esm2_t30_150M": {
        "hub_id": "facebook/esm2_t30_150M_UR50D",
        "layers": 30,
        "hidden": 640,
        "heads": 20,
        "params": "150M",
    },
    "esm2_t33_650M": {
        "hub_id": "facebook/esm2_t33_650M_UR50D",
        "layers": 33,
        "hidden": 1280,
        "heads": 20,
        "params": "650M",
    },
    "esm2_t36_3B": {
        "hub_id": "facebook/esm2_t36_3B_UR50D",
        "layers": 36,
        "hidden": 2560,
        "heads": 40,
        "params": "3B",
    },
    "esmfold_v1": {
        "hub_id": "facebook/esmfold_v1",
        "layers": 36,
        "hidden": 2560,
        "heads": 40,
        "params": "3.5B",
    },
}

Task = Literal[
    "masked-lm", "base", "sequence-classification", "token-classification", "regression", "folding"
]
TASKS: tuple[str, ...] = (
    "masked-lm",
    "base",
    "sequence-classification",
    "token-classification",
    "regression",
    "folding",
)

# Task -> transformers class: the class `load_model` builds and the `architectures` entry every
# saved config.json names (the Keras path writes the same, see protein_lm.tf.checkpoint).
TASK_ARCHITECTURES: dict[str, str] = {
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
) -> EsmConfig:
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
        "max_position_embeddings": MAX_TOKENS,
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
    """`device` if given (checked by `check_device`), else "cuda" when available, else "cpu"."""
    if device:
        check_device(device)
        return device
    torch = require("torch", "torch")
    return "cuda" if torch.cuda.is_available() else "cpu"


def canonical_device(device: str | torch.device) -> str:
    """The one spelling of a device, as its tensors report it: "cpu" for any CPU index, and
    "cuda:N" (the current CUDA device) for a bare "cuda". Compare devices with this: "cuda" and
    "cuda:0", or "cpu:0" and "cpu", are the same device but different strings."""
    torch = require("torch", "torch")
    dev = torch.device(device)
    if dev.type == "cpu":
        return "cpu"
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        return f"cuda:{torch.cuda.current_device()}"
    return str(dev)


def check_device(device: str | torch.device | None, option: str = "device") -> None:
    """Raise `InvalidInputError` if `device` names a device this machine does not have.

    The one availability check (the CLI calls it with `option="--device"` before any file is
    made; `resolve_device`, hence every loader, calls it too). `None` and "cpu" always pass, and
    torch is imported only for other devices.
    """
    if not device or device == "cpu":
        return
    torch = require("torch", "torch")
    kind, _, index = str(device).partition(":")  # a torch.device works too
    # "--device cuda ... use --device cpu" on the command line, "device='cuda'" in Python
    flag = option.startswith("--")
    name, cpu = (
        (f"{option} {device}", f"{option} cpu")
        if flag
        else (f"{option}={device!r}", f"{option}='cpu'")
    )
    if kind == "cuda":
        backend, fix = torch.cuda, "torch.cuda.is_available() is False"
    elif kind == "xpu" and hasattr(torch, "xpu"):
        backend, fix = torch.xpu, "torch.xpu.is_available() is False"
    elif kind == "mps":
        if not torch.backends.mps.is_available():
            raise InvalidInputError(
                f"{name}: MPS is not available on this machine "
                f"(torch.backends.mps.is_available() is False); use {cpu}"
            )
        return
    else:  # meta and other kinds the CLI never passes: torch itself judges them
        return
    label = kind.upper()
    if not backend.is_available():
        raise InvalidInputError(
            f"{name}: {label} is not available on this machine ({fix}); use {cpu}"
        )
    count = backend.device_count()
    if index.isdigit() and int(index) >= count:
        raise InvalidInputError(
            f"{name}: this machine has {count} {label} device(s), {kind}:0 to "
            f"{kind}:{count - 1}; use one of those or {cpu}"
        )


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


def label_config_kwargs(
    task: str, num_labels: int | None, id2label: dict[int, str] | None
) -> dict[str, Any]:
    """Config fields of the head for `task`: `num_labels`, `id2label`/`label2id`, `problem_type`.

    Shared by the PyTorch loader and `protein_lm.tf.checkpoint`, so both build the same config.
    """
    kw: dict[str, Any] = {}
    if task == "regression":
        kw.update(num_labels=1, problem_type="regression")
    elif task in ("sequence-classification", "token-classification"):
        if id2label is not None:
            id2label = {int(k): str(v) for k, v in id2label.items()}
            kw.update(
                num_labels=len(id2label),
                id2label=id2label,
                label2id={v: k for k, v in id2label.items()},
            )
        elif num_labels is not None:
            kw.update(num_labels=num_labels)
        if task == "sequence-classification":
            kw.update(problem_type="single_label_classification")
    return kw


def check_head(
    config: PretrainedConfig | dict[str, Any], task: str, label_kw: dict[str, Any], name: str
) -> None:
    """Refuse (one line) to load a checkpoint whose `task` head was trained for other labels.

    `label_kw` is `label_config_kwargs(...)` of the run. A folder saved with a head for `task`
    (its `architectures`) keeps that head only for the same labels: transformers would raise a
    size-mismatch traceback for another class count and silently reuse the head under new names
    for other label names; regression and classification share one architecture but not a head.
    Shared by the PyTorch loader and `protein_lm.tf.checkpoint`.
    """
    get = (
        config.get
        if isinstance(config, dict)
        else lambda key, default=None: getattr(config, key, default)
    )
    if not label_kw or TASK_ARCHITECTURES[task] not in (get("architectures") or []):
        return
    old_labels = {int(k): str(v) for k, v in (get("id2label") or {}).items()}
    old_n = len(old_labels) or int(get("num_labels", 2) or 2)
    old_regression = get("problem_type") == "regression"
    new_labels = label_kw.get("id2label")
    differs = (
        (label_kw.get("num_labels") not in (None, old_n))
        or (new_labels is not None and new_labels != old_labels)
        or (task == "regression") != old_regression
    )
    if differs:
        old = "regression" if old_regression else f"{old_n}-class {sorted(old_labels.values())}"
        new = (
            "regression"
            if task == "regression"
            else f"{label_kw.get('num_labels')}-class {sorted((new_labels or {}).values())}"
        )
        raise InvalidInputError(
            f"Model folder {name!r} holds a {old} {task} head, but this run has {new} labels; "
            "fine-tune from the base model it was trained from (its finetune_config.json names "
            "it), or use the same labels"
        )


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from, as decided by `resolve_model`.

    `name` is a local directory (`local=True`) or a hub id; `local_files_only` is True when it
    must be read without the network (a local directory, or a cached hub id while offline).
    """

    name: str
    local: bool
    local_files_only: bool


# Weight files transformers or torch may have written that are pickles: refused, never loaded.
_PICKLED = (
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.ckpt",
)
SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
_FIX = "re-save or re-download the model"
# Bytes per element of each safetensors dtype (the format's own list); an unknown dtype
# skips only the size check of its tensor.
_ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
_MAX_HEADER = 100_000_000  # the safetensors library refuses larger headers too


def check_safetensors(folder: str | os.PathLike[str]) -> list[Path]:
    """The weight files of a local model folder, each validated before any loader opens it.

    Exactly `model.safetensors`, else the shards named by `model.safetensors.index.json` (as
    transformers picks them); any other `*.safetensors` is ignored with a warning naming it.
    Each file's header is checked as the safetensors library would: the 8-byte little-endian
    length, a JSON header, and tensors that tile the data exactly (no gap, nothing past the end
    of the file). Raises `ModelNotFoundError` when there are no safetensors weights (pickles are
    never opened) and `InvalidInputError` (one line: the file and the fix) for a damaged one.
    """
    path = Path(folder)
    if (path / SAFE_WEIGHTS).is_file():
        files = [path / SAFE_WEIGHTS]
    elif (path / SAFE_INDEX).is_file():
        files = _index_files(path / SAFE_INDEX)
    else:
        others = sorted(f.name for f in path.glob("*.safetensors"))
        pickled = sorted({f.name for pat in _PICKLED for f in path.glob(pat)})
        found = f"it has only {', '.join(others + pickled)}; " if others + pickled else ""
        raise ModelNotFoundError(
            f"Model folder {str(path)!r} has no model.safetensors (nor {SAFE_INDEX}); {found}"
            "pickled weights (pytorch_model.bin, *.pt) are refused on purpose because loading a "
            "pickle can run code; re-save the model with "
            "`save_pretrained(..., safe_serialization=True)`"
        )
    ignored = sorted(set(path.glob("*.safetensors")) - set(files))
    if ignored:
        log.warning(
            "%s: ignoring %s (not %s nor named by %s)",
            path,
            ", ".join(f.name for f in ignored),
            SAFE_WEIGHTS,
            SAFE_INDEX,
        )
    for f in files:
        _check_safetensors_file(f)
    return files


def _index_files(index: Path) -> list[Path]:
    """The shard files `model.safetensors.index.json` names (each present), in name order."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidInputError(
            f"{index}: not a valid safetensors index ({exc}); {_FIX}"
        ) from None
    files = []
    for name in names:
        shard = index.parent / str(name)
        if not isinstance(name, str) or Path(name).name != name or not shard.is_file():
            raise InvalidInputError(
                f"{index} names {name!r}, which is not a file in {index.parent}; {_FIX}"
            )
        files.append(shard)
    return files


def _check_safetensors_file(path: Path) -> None:
    """Raise `InvalidInputError` if `path` is not a complete safetensors file."""
    problem = _safetensors_problem(path)
    if problem:
        raise InvalidInputError(f"{path}: damaged safetensors file ({problem}); {_FIX}")


def _safetensors_problem(path: Path) -> str | None:
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            return f"{size} bytes, shorter than the 8-byte header length"
        n = int.from_bytes(head, "little")
        if n > _MAX_HEADER or 8 + n > size:
            return f"header length {n} but the file has {size} bytes"
        try:
            header = json.loads(fh.read(n))
        except (ValueError, UnicodeDecodeError):
            return "the header is not JSON"
    if not isinstance(header, dict):
        return "the header is not a JSON object"
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, end = (int(x) for x in info["data_offsets"])
            numel = math.prod(int(d) for d in info["shape"])
            dtype = str(info["dtype"])
        except (KeyError, TypeError, ValueError):
            return f"tensor {name!r} has no valid dtype, shape and data_offsets"
        if dtype in _ITEMSIZE and end - begin != numel * _ITEMSIZE[dtype]:
            return f"tensor {name!r} spans {end - begin} bytes, its shape needs more or fewer"
        spans.append((begin, end, name))
    at, data = 0, size - 8 - n
    for begin, end, name in sorted(spans):
        if begin != at or end < begin:
            return f"tensor {name!r} starts at byte {begin} of the data, expected {at}"
        at = end
    if at != data:
        return f"the tensors need {at} bytes of data, the file holds {data}"
    return None


def _looks_like_path(name: str) -> bool:
    """True when `name` can only be a local path, never a hub id.

    A hub id is `name` or `owner/name`: at most one '/', no leading '.', '/' or '~' and no
    backslash. So a value starting with '.', '/' or '~', containing a backslash (or the OS
    separator when it is not '/'), or with two or more '/' is a path. `runs/model` (one '/') is
    ambiguous: it is tried as a hub id, and the error then says that no local folder of that
    name exists either.
    """
    return (
        name.startswith((".", "/", "~"))
        or "\\" in name
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
    )


def resolve_model(name_or_path: str, *, weights: bool = True) -> ModelSource:
    """Resolve a preset key, hub id or local directory; the one lookup every loader uses.

    A local directory must hold `config.json` and (with `weights=True`) safetensors weights
    (`model.safetensors` or shards, validated by `check_safetensors`). Pickled weights
    (`pytorch_model.bin`, `*.pt`) are refused
    on purpose and never opened: unpickling can run arbitrary code. A path-like value (see
    `_looks_like_path`) that does not exist is reported as a missing folder; a hub id must be
    cached or the hub reachable. Anything else raises `ModelNotFoundError` with a one-line
    message naming the fix. `tiny` is not resolved here (callers build it).
    """
    name = ESM2_PRESETS.get(name_or_path, {}).get("hub_id", name_or_path)
    path = Path(name).expanduser()
    if name == "tiny" and not path.is_dir():  # the callers that take `tiny` build it themselves
        raise ModelNotFoundError(
            "'tiny' is an untrained random ESM-2 and cannot be used here; pass a model directory "
            "(e.g. one written by `protein-lm finetune --model tiny ...`) or a hub id"
        )
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"Model folder {str(path)!r} has no config.json; it is not a model directory "
                "(pass a folder written by `protein-lm finetune` or `save_pretrained`)"
            )
        if weights:
            check_safetensors(path)  # the weight files, validated before any loader opens them
        return ModelSource(str(path), local=True, local_files_only=True)
    if path.exists():
        raise ModelNotFoundError(f"Model {name!r} is a file, not a model directory")
    if _looks_like_path(name):
        raise ModelNotFoundError(f"Model folder {name!r} does not exist")
    hub = require("huggingface_hub", "torch")
    try:
        hub.hf_hub_download(name, "config.json", local_files_only=True)
        cached = True
    except Exception:
        cached = False
    online = _hub_reachable()
    if cached or online:
        return ModelSource(name, local=False, local_files_only=not online)
    raise ModelNotFoundError(
        f"Model {name!r} is not a local folder, not in the local Hugging Face cache, and the hub "
        "is unreachable (offline). Either pass a local model directory (a folder with config.json "
        "and model.safetensors, e.g. one saved by `protein-lm finetune` or `save_pretrained`), "
        f"download it once while online (`hf download {name}`), or use `tiny` for an offline "
        "smoke run with a small random ESM-2."
    )


def load_config(name_or_path: str) -> PretrainedConfig:
    """The `EsmConfig` of a hub id, local directory or `tiny` (same rules as `load_model`)."""
    transformers = require("transformers", "torch")
    if name_or_path == "tiny":
        return tiny_config()
    source = resolve_model(name_or_path, weights=False)
    return transformers.AutoConfig.from_pretrained(
        source.name, local_files_only=source.local_files_only
    )


def load_model(
    name_or_path: str,
    task: Task = "masked-lm",
    *,
    num_labels: int | None = None,
    id2label: dict[int, str] | None = None,
    attn_implementation: Literal["eager", "sdpa"] = "sdpa",
    device: str | None = None,
    dtype: torch.dtype | None = None,
    seed: int = 0,
    config_overrides: dict[str, Any] | None = None,
) -> PreTrainedModel:
    """Load an ESM-2 (or ESMFold for `task="folding"`) model for `task` on `device`.

    Parameters
    ----------
    name_or_path : str
        A hub id (`facebook/esm2_t12_35M_UR50D`), a key of `ESM2_PRESETS`, a local directory, or
        `tiny` (random weights seeded by `seed`; not for `task="folding"`: see
        `protein_lm.folding.esmfold.load_folding_model`).
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
    cls = getattr(transformers, TASK_ARCHITECTURES[task])
    label_kw = label_config_kwargs(task, num_labels, id2label)
    overrides = dict(config_overrides or {})
    if name_or_path == "tiny":
        if task == "folding":  # the core knows no folding configs; the tiny ESMFold is there
            raise ValueError(
                "load_model('tiny', task='folding') is not available; use "
                "protein_lm.folding.esmfold.load_folding_model('tiny') for a tiny random ESMFold"
            )
        config = tiny_config(**{**label_kw, **overrides})
        config._attn_implementation = attn_implementation
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(config).eval()  # eval mode, as from_pretrained returns it
    else:
        source = resolve_model(name_or_path)
        if label_kw:
            check_head(load_config(name_or_path), task, label_kw, name_or_path)
        model = cls.from_pretrained(
            source.name,
            use_safetensors=True,
            attn_implementation=attn_implementation,
            local_files_only=source.local_files_only,
            **({"dtype": dtype} if dtype is not None else {}),
            **label_kw,
            **overrides,
        )
    if dtype is not None:
        model = model.to(dtype)
    return model.to(resolve_device(device))
