"""Convert ESM-2 checkpoints between fair-esm (`esm.ESM2`, `.pt`) and transformers
(`EsmForMaskedLM`).

The two implementations compute the same function; only parameter names differ. The mapping
(fair-esm -> transformers, `N` = layer index):

=========================================  =====================================================
fair-esm                                   transformers `EsmForMaskedLM`
=========================================  =====================================================
embed_tokens.weight                        esm.embeddings.word_embeddings.weight
layers.N.self_attn.{q,k,v}_proj            esm.encoder.layer.N.attention.self.{query,key,value}
layers.N.self_attn.out_proj                esm.encoder.layer.N.attention.output.dense
layers.N.self_attn.rot_emb.inv_freq        esm.rotary_embeddings.inv_freq (shared by all layers)
layers.N.self_attn_layer_norm              esm.encoder.layer.N.attention.LayerNorm
layers.N.fc1 / layers.N.fc2                esm.encoder.layer.N.intermediate.dense / output.dense
layers.N.final_layer_norm                  esm.encoder.layer.N.LayerNorm
emb_layer_norm_after                       esm.encoder.emb_layer_norm_after
lm_head.weight (tied to embed_tokens)      lm_head.decoder.weight (tied to word_embeddings)
lm_head.{bias,dense,layer_norm}            lm_head.{bias,dense,layer_norm}
contact_head.regression                    esm.contact_head.regression
=========================================  =====================================================

Any parameter that is not in this table makes the conversion fail with the list of names, so a
checkpoint of another architecture (ESM-1b with learned positions, MSA Transformer) is never
converted half-way. `.pt` files are pickles: they are read with `torch.load(weights_only=True)`
(plus `argparse.Namespace`, which fair-esm stores as config) unless you pass `weights_only=False`
for a file you trust.
"""

from __future__ import annotations

import argparse
import os
import re
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from protein_lm.errors import InvalidInputError, ModelNotFoundError, require
from protein_lm.files import atomic_file, staged_files
from protein_lm.sequences import ESM2_TOKENS

if TYPE_CHECKING:
    import esm
    import torch
    from transformers import EsmForMaskedLM, PreTrainedModel

__all__ = [
    "fairesm_to_transformers",
    "transformers_to_fairesm",
    "load_fairesm",
    "save_fairesm",
    "fairesm_state_dict_to_transformers",
    "transformers_state_dict_to_fairesm",
]

# Per-layer module names: fair-esm suffix -> transformers suffix.
_LAYER_MAP = {
    "self_attn.q_proj": "attention.self.query",
    "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value",
    "self_attn.out_proj": "attention.output.dense",
    "self_attn_layer_norm": "attention.LayerNorm",
    "fc1": "intermediate.dense",
    "fc2": "output.dense",
    "final_layer_norm": "LayerNorm",
}
_TOP_MAP = {
    "embed_tokens.weight": "esm.embeddings.word_embeddings.weight",
    "emb_layer_norm_after.weight": "esm.encoder.emb_layer_norm_after.weight",
    "emb_layer_norm_after.bias": "esm.encoder.emb_layer_norm_after.bias",
    "lm_head.weight": "lm_head.decoder.weight",
    "lm_head.bias": "lm_head.bias",
    "lm_head.dense.weight": "lm_head.dense.weight",
    "lm_head.dense.bias": "lm_head.dense.bias",
    "lm_head.layer_norm.weight": "lm_head.layer_norm.weight",
    "lm_head.layer_norm.bias": "lm_head.layer_norm.bias",
    "contact_head.regression.weight": "esm.contact_head.regression.weight",
    "contact_head.regression.bias": "esm.contact_head.regression.bias",
}
_INV_FREQ_FE = re.compile(r"^layers\.(\d+)\.self_attn\.rot_emb\.inv_freq$")
_LAYER_FE = re.compile(r"^layers\.(\d+)\.(.+)\.(weight|bias)$")
_LAYER_HF = re.compile(r"^esm\.encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
_HF_INV_FREQ = "esm.rotary_embeddings.inv_freq"
# fair-esm checkpoints store the encoder under these prefixes (see esm.pretrained).
_FE_PREFIX = re.compile(r"^(encoder\.sentence_encoder\.|encoder\.)")


def fairesm_state_dict_to_transformers(
    state_dict: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Rename a fair-esm ESM-2 state dict to `EsmForMaskedLM` names (tensors are shared)."""
    out: dict[str, torch.Tensor] = {}
    unknown = []
    rev_layer = _LAYER_MAP
    for name, value in state_dict.items():
        name = _FE_PREFIX.sub("", name)
        if name in _TOP_MAP:
            out[_TOP_MAP[name]] = value
        elif m := _INV_FREQ_FE.match(name):
            out.setdefault(_HF_INV_FREQ, value)  # identical in every layer
        elif (m := _LAYER_FE.match(name)) and m.group(2) in rev_layer:
            out[f"esm.encoder.layer.{m.group(1)}.{rev_layer[m.group(2)]}.{m.group(3)}"] = value
        else:
            unknown.append(name)
    if unknown:
        raise InvalidInputError(
            f"Not an ESM-2 fair-esm state dict: no transformers name for {sorted(unknown)}; only "
            "ESM-2 checkpoints (rotary positions, `esm.ESM2`) can be converted"
        )
    return out


def transformers_state_dict_to_fairesm(
    state_dict: dict[str, torch.Tensor], num_layers: int
) -> dict[str, torch.Tensor]:
    """Rename an `EsmForMaskedLM` (ESM-2) state dict to fair-esm `esm.ESM2` names."""
    top = {v: k for k, v in _TOP_MAP.items()}
    layer = {v: k for k, v in _LAYER_MAP.items()}
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for name, value in state_dict.items():
        if name in top:
            out[top[name]] = value
        elif name == _HF_INV_FREQ:
            for i in range(num_layers):
                out[f"layers.{i}.self_attn.rot_emb.inv_freq"] = value
        elif (m := _LAYER_HF.match(name)) and m.group(2) in layer:
            out[f"layers.{m.group(1)}.{layer[m.group(2)]}.{m.group(3)}"] = value
        elif name == "esm.embeddings.position_ids":
            continue  # a non-persistent arange buffer in some transformers versions
        else:
            unknown.append(name)
    if unknown:
        raise InvalidInputError(
            f"Not an ESM-2 EsmForMaskedLM state dict: no fair-esm name for {sorted(unknown)}; "
            "convert a masked-LM ESM-2 (rotary positions, no classification head)"
        )
    return out


def load_fairesm(path: str | os.PathLike[str], *, weights_only: bool = True) -> esm.ESM2:
    """Load a fair-esm ESM-2 `.pt` checkpoint (and `<stem>-contact-regression.pt` beside it).

    Returns an `esm.ESM2` in eval mode. Missing contact-regression weights only warn (contacts
    will be wrong), as in `esm.pretrained`.
    """
    torch = require("torch", "torch")
    esm = require("esm", "fairesm")
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"fair-esm checkpoint not found: {path}")
    data = _torch_load(torch, path, weights_only)
    if not isinstance(data, dict) or "model" not in data:
        raise InvalidInputError(f"{path} is not a fair-esm checkpoint (no 'model' state dict)")
    cfg = (data.get("cfg") or {}).get("model")
    if cfg is None or not hasattr(cfg, "encoder_layers"):
        raise InvalidInputError(
            f"{path} has no ESM-2 config (cfg.model.encoder_layers); "
            "only ESM-2 checkpoints are supported"
        )
    state = {_FE_PREFIX.sub("", k): v for k, v in data["model"].items()}
    reg_path = path.with_name(path.stem + "-contact-regression.pt")
    if reg_path.is_file():
        state.update(_torch_load(torch, reg_path, weights_only)["model"])
    model = esm.ESM2(
        num_layers=cfg.encoder_layers,
        embed_dim=cfg.encoder_embed_dim,
        attention_heads=cfg.encoder_attention_heads,
        alphabet=esm.Alphabet.from_architecture("ESM-1b"),
        token_dropout=getattr(cfg, "token_dropout", True),
    )
    missing, unexpected = model.load_state_dict(state, strict=False)
    head = {"contact_head.regression.weight", "contact_head.regression.bias"}
    if set(missing) - head or unexpected:
        raise InvalidInputError(
            f"{path}: missing parameters {sorted(set(missing) - head)}, "
            f"unexpected {sorted(unexpected)}"
        )
    if set(missing) & head:
        warnings.warn(
            f"{reg_path.name} not found beside {path.name}: contact maps will be wrong",
            stacklevel=2,
        )
    return model.eval()


def save_fairesm(model: esm.ESM2, path: str | os.PathLike[str]) -> Path:
    """Write an `esm.ESM2` as fair-esm does: `<name>.pt` plus `<name>-contact-regression.pt`.

    fair-esm's own `esm.pretrained.load_model_and_alphabet_local` picks its ESM-2 loader by the
    file name, so name the file `esm2_*.pt` if it will read it.
    """
    torch = require("torch", "torch")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    head = {k: state.pop(k) for k in list(state) if k.startswith("contact_head.")}
    cfg = argparse.Namespace(
        encoder_layers=model.num_layers,
        encoder_embed_dim=model.embed_dim,
        encoder_attention_heads=model.attention_heads,
        token_dropout=model.token_dropout,
    )
    with atomic_file(path) as tmp:
        torch.save({"model": state, "cfg": {"model": cfg}}, tmp)
    with atomic_file(path.with_name(path.stem + "-contact-regression.pt")) as tmp:
        torch.save({"model": head}, tmp)
    return path


def fairesm_to_transformers(
    model_or_path: esm.ESM2 | str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    weights_only: bool = True,
) -> EsmForMaskedLM:
    """Convert a fair-esm ESM-2 (`esm.ESM2` or `.pt` path) to a transformers `EsmForMaskedLM`.

    With `out_dir`, also save it there as a standard model directory (safetensors, config and our
    tokenizer), loadable by `protein_lm.models.load_model(out_dir)` and
    `AutoModel...from_pretrained`.
    """
    torch = require("torch", "torch")
    transformers = require("transformers", "torch")
    from protein_lm.models import tiny_config

    fe = (
        load_fairesm(model_or_path, weights_only=weights_only)
        if isinstance(model_or_path, (str, os.PathLike))
        else model_or_path
    )
    toks = list(getattr(fe.alphabet, "all_toks", []))
    if toks != list(ESM2_TOKENS):
        raise InvalidInputError(
            f"fair-esm model alphabet {toks[:6]}... is not the ESM-2 alphabet; only ESM-2 converts"
        )
    config = tiny_config(
        num_layers=fe.num_layers,
        hidden_size=fe.embed_dim,
        num_heads=fe.attention_heads,
        token_dropout=bool(fe.token_dropout),
        architectures=["EsmForMaskedLM"],
    )
    with torch.device("cpu"):
        hf = transformers.EsmForMaskedLM(config)
    state = fairesm_state_dict_to_transformers(fe.state_dict())
    # inv_freq depends only on the head size; keep fair-esm's values (they may be fp16-rounded).
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in ("esm.embeddings.position_ids",)]
    if missing or unexpected:
        raise InvalidInputError(
            f"Conversion left missing {missing} / unexpected {unexpected} parameters"
        )
    hf = hf.to(next(fe.parameters()).dtype).eval()
    if out_dir is not None:
        _save_hf(hf, out_dir)
    return hf


def transformers_to_fairesm(
    model_or_path: PreTrainedModel | str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
) -> esm.ESM2:
    """Convert a transformers ESM-2 (`EsmForMaskedLM` or model directory/hub id) to `esm.ESM2`.

    With `out_path` (`esm2_*.pt`), also save it as fair-esm checkpoint files (`save_fairesm`).
    """
    require("torch", "torch")
    esm = require("esm", "fairesm")
    if isinstance(model_or_path, (str, os.PathLike)):
        from protein_lm.models import load_model

        hf = load_model(str(model_or_path), "masked-lm", device="cpu")
    else:
        hf = model_or_path
    cfg = hf.config
    if getattr(cfg, "position_embedding_type", "") != "rotary" or cfg.emb_layer_norm_before:
        raise InvalidInputError(
            "Only ESM-2 models convert to fair-esm (rotary positions, no embedding layer norm); "
            "got "
            f"position_embedding_type={cfg.position_embedding_type!r}, "
            f"emb_layer_norm_before={cfg.emb_layer_norm_before}"
        )
    if cfg.vocab_size != len(ESM2_TOKENS) or cfg.intermediate_size != 4 * cfg.hidden_size:
        raise InvalidInputError(
            f"fair-esm ESM2 needs vocab_size={len(ESM2_TOKENS)} and "
            "intermediate_size=4*hidden_size; "
            f"got {cfg.vocab_size} and {cfg.intermediate_size}"
        )
    fe = esm.ESM2(
        num_layers=cfg.num_hidden_layers,
        embed_dim=cfg.hidden_size,
        attention_heads=cfg.num_attention_heads,
        alphabet=esm.Alphabet.from_architecture("ESM-1b"),
        token_dropout=bool(cfg.token_dropout),
    )
    state = transformers_state_dict_to_fairesm(hf.state_dict(), cfg.num_hidden_layers)
    fe.load_state_dict({k: v.detach().cpu().float() for k, v in state.items()}, strict=True)
    fe = fe.eval()
    if out_path is not None:
        save_fairesm(fe, out_path)
    return fe


def _save_hf(model: PreTrainedModel, out_dir: str | os.PathLike[str]) -> None:
    from protein_lm.tokenization import hf_tokenizer

    with staged_files(out_dir) as tmp:  # each file complete before it appears in `out_dir`
        model.save_pretrained(tmp)
        hf_tokenizer().save_pretrained(tmp)


def _torch_load(torch: ModuleType, path: Path, weights_only: bool) -> Any:  # whatever was pickled
    if not weights_only:
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidInputError(
            f"Could not read {path} with torch.load(weights_only=True): {exc}. If you trust the "
            "file, pass weights_only=False (it is a pickle and can run code)"
        ) from exc
