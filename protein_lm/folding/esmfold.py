"""ESMFold structure prediction on transformers' `EsmForProteinFolding`.

What `fold` adds to `model.infer`:

- **Confidence with units**: per-residue pLDDT on 0-100 (the CA atom's value; transformers
  returns 0-1 per atom), PAE in Angstrom, and pTM over the real residues only. transformers'
  `ptm` normalises by the padded length and takes one maximum over the whole batch, so it is
  recomputed per structure from `ptm_logits` restricted to real residues (no padding, no linker).
- **Multimers**: `"SEQA:SEQB"` (ColabFold syntax) is folded as one chain with a poly-G linker
  (25 G) and a residue-index jump (512) between chains, like fair-esm's ESMFold; the linker is
  removed from the output and chains get ids A, B, ...
- **Memory policy** (`protein_lm.folding.runtime`, applied to the loaded model): the language
  model runs in float16 on GPU and float32 on CPU (half on CPU is a known crash/slow path); the
  trunk chunk size is chosen from the length and free memory (`runtime.auto_chunk_size`); on
  `torch.cuda.OutOfMemoryError` a batch is split, then retried with halved chunks, then on CPU,
  then reported as a `FoldFailure` - never a crash mid-batch.
- Unknown residues (X, and B/Z/U/O, which ESMFold maps to X) are written as `UNK` with a CA only.

Loading lives here too: `load_folding_model` (hub id, local directory, or `tiny`: a small random
ESMFold built from `tiny_folding_config`). The result records are in `protein_lm.folding.results`
(re-exported here).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from protein_lm.errors import InvalidInputError, InvalidSequenceError, ModelNotFoundError, require
from protein_lm.folding.memory import check_host_memory
from protein_lm.folding.options import FoldOptions, fold_options
from protein_lm.folding.results import (
    DEFAULT_MODEL,
    MAX_LENGTH,
    FoldFailure,
    FoldingError,
    FoldInput,
    FoldResult,
    chain_id,
)
from protein_lm.folding.runtime import Folder, place
from protein_lm.limits import FOLD_BATCH_RESIDUES
from protein_lm.models import resolve_device, resolve_model, tiny_config
from protein_lm.sequences import FastaRecord, as_records, validate

if TYPE_CHECKING:
    import torch
    from transformers import EsmConfig, EsmForProteinFolding, PretrainedConfig


__all__ = [
    "DEFAULT_MODEL",
    "MAX_LENGTH",
    "FoldResult",
    "FoldFailure",
    "FoldInput",
    "FoldingError",
    "FoldOptions",
    "tiny_folding_config",
    "load_folding_model",
    "folding_config",
    "build_folder",
    "fold",
    "iter_fold",
    "prepare",
    "parse_chains",
]


def tiny_folding_config(**overrides: Any) -> EsmConfig:
    """A tiny random ESMFold `EsmConfig` (2-layer ESM-2 of width 32, one trunk block).

    Structures from it are meaningless; the plumbing (shapes, writers, chunking) is the real one.
    `overrides` update `EsmConfig` fields; an `esmfold_config` dict is merged into the default
    (nested `trunk`/`structure_module` dicts too).
    """
    esmfold: dict[str, Any] = {
        "fp16_esm": False,  # the dtype policy is applied by `load_folding_model`, not at __init__
        "lddt_head_hid_dim": 16,
        "trunk": {
            "num_blocks": 1, "sequence_state_dim": 32, "pairwise_state_dim": 16,
            "sequence_head_width": 8, "pairwise_head_width": 8, "max_recycles": 1,
            "chunk_size": None,
            "structure_module": {
                "sequence_dim": 32, "pairwise_dim": 16, "ipa_dim": 8, "resnet_dim": 16,
                "num_heads_ipa": 2, "num_qk_points": 2, "num_v_points": 2, "num_blocks": 2,
                "dropout_rate": 0.0,
            },
        },
    }  # fmt: skip
    _deep_update(esmfold, dict(overrides.pop("esmfold_config", None) or {}))
    kwargs = {"num_layers": 2, "hidden_size": 32, "num_heads": 4, **overrides}
    return tiny_config(is_folding_model=True, esmfold_config=esmfold, **kwargs)


def load_folding_model(
    name_or_path: str = DEFAULT_MODEL, *, device: str | None = None, seed: int = 0
) -> EsmForProteinFolding:
    """Load ESMFold (hub id, local dir or `tiny`): language model fp16 on GPU, fp32 on CPU.

    The trunk, heads and structure module stay in float32 on every device (as in fair-esm and
    transformers: half precision there overflows); only the ESM-2 language model is halved, and
    only on CUDA. `tiny` is a random ESMFold from `tiny_folding_config` (weights seeded by `seed`,
    eval mode like `from_pretrained`).

    Memory for `facebook/esmfold_v1` (3.53e9 parameters: ESM-2 3B language model 2.83e9, trunk,
    structure module and heads 0.69e9; counted on a meta-device build of its architecture):

    - **CUDA**: the weights are streamed from the safetensors file straight to the GPU
      (`from_pretrained(device_map=device)`), the language model already in float16, so the GPU
      holds 5.7 GB (LM, fp16) + 2.8 GB (rest, fp32) = 8.4 GB (7.9 GiB) of weights plus the
      activations (see `runtime.estimate_peak_bytes`), and host RAM never holds the model (the
      file is memory-mapped). Streaming needs `accelerate`; without it the model is loaded on the
      host first (8.4 GB of RAM) with a warning.
    - **CPU**: all float32, 14.1 GB (13.1 GiB) of RAM for the weights alone.
    """
    torch = require("torch", "torch")
    transformers = require("transformers", "torch")
    device = resolve_device(device)
    if name_or_path == "tiny":
        config = tiny_folding_config()
        config._attn_implementation = "eager"  # ESMFold declares no sdpa support
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = transformers.EsmForProteinFolding(config).eval()
        return place(model, device)
    source = resolve_model(str(name_or_path))
    config = folding_config(str(name_or_path))
    check_host_memory(config, device)  # a kernel killed for RAM says nothing: refuse first
    kwargs = _load_kwargs(device)
    if kwargs and importlib.util.find_spec("accelerate") is None:
        warnings.warn(
            f"`accelerate` is not installed, so ESMFold is loaded in host RAM before moving to "
            f"{device} (8.4 GB for esmfold_v1); `pip install accelerate` streams it to the GPU",
            stacklevel=2,
        )
        kwargs = {}
    if kwargs:  # build the LM in fp16, so its weights are loaded into fp16 tensors on the GPU
        config.esmfold_config.fp16_esm = True
    model = transformers.EsmForProteinFolding.from_pretrained(
        source.name,
        config=config,
        use_safetensors=True,
        attn_implementation="eager",  # ESMFold declares no sdpa support
        local_files_only=source.local_files_only,
        **kwargs,
    )
    return place(model, device)


def _load_kwargs(device: str) -> dict[str, torch.device]:
    """Extra `from_pretrained` arguments for `device`: CUDA streams the weights onto the device.

    Examples
    --------
    >>> _load_kwargs("cpu")
    {}
    >>> _load_kwargs("cuda:1")
    {'device_map': device(type='cuda', index=1)}
    """
    torch = require("torch", "torch")
    dev = torch.device(device)
    # A torch.device, not the string: transformers maps a bare "cuda" string to cuda:LOCAL_RANK,
    # while `place` (and torch) use the current device.
    return {"device_map": dev} if dev.type == "cuda" else {}


def folding_config(name_or_path: str) -> PretrainedConfig:
    """The config of an ESMFold hub id or local folder, refused (`ModelNotFoundError`, one line)
    when it describes another model, e.g. an ESM-2 language model or a fine-tuned classifier:
    transformers would fail later with an `AttributeError` on `esmfold_config`."""
    transformers = require("transformers", "torch")
    source = resolve_model(name_or_path, weights=False)
    config = transformers.AutoConfig.from_pretrained(
        source.name, local_files_only=source.local_files_only
    )
    if getattr(config, "esmfold_config", None) is None:
        architectures = ", ".join(getattr(config, "architectures", None) or ["unknown"])
        raise ModelNotFoundError(
            f"Model {name_or_path!r} is not an ESMFold model (its config describes "
            f"{architectures}, with no esmfold_config); fold with {DEFAULT_MODEL!r}, a folder "
            "saved from EsmForProteinFolding, or 'tiny'"
        )
    return config


def build_folder(
    model: EsmForProteinFolding | str | os.PathLike[str], options: FoldOptions | None = None
) -> Folder:
    """A `runtime.Folder` for a loaded model, or for a name loaded with `load_folding_model`."""
    options = FoldOptions() if options is None else options
    if not isinstance(options, FoldOptions):
        raise TypeError(
            f"build_folder takes a FoldOptions, got {options!r}; e.g. "
            "build_folder(model, FoldOptions(device='cpu', chunk_size=64))"
        )
    if isinstance(model, (str, os.PathLike)):
        model = load_folding_model(str(model), device=options.device)
    return Folder(model, options)


def parse_chains(sequence: str, record_id: str = "sequence") -> tuple[str, ...]:
    """Split `A:B` multimer syntax into validated chains (see `protein_lm.sequences.validate`).

    Examples
    --------
    >>> parse_chains("MKTAYIAKQR:GSHMLE")
    ('MKTAYIAKQR', 'GSHMLE')
    """
    if not isinstance(sequence, str):
        raise InvalidSequenceError(
            f"Sequence of {record_id!r} must be a str, got {type(sequence).__name__}"
        )
    parts = "".join(sequence.split()).split(":")
    if len(parts) > 1 and (not parts[0] or not parts[-1]):
        where = "start" if not parts[0] else "end"
        raise InvalidSequenceError(
            f"Chain separator ':' at the {where} of {record_id!r}; write chains as "
            "'SEQA:SEQB' with no leading or trailing ':'"
        )
    if len(parts) > 1 and not all(parts):
        raise InvalidSequenceError(f"Empty chain ('::') in {record_id!r}; remove the extra ':'")
    if len(parts) == 1:
        return (validate(parts[0], record_id),)
    return tuple(validate(p, f"{record_id}, chain {chain_id(k)}") for k, p in enumerate(parts))


def fold(
    sequences: str | Mapping[str, str] | Iterable[str | FastaRecord] | os.PathLike[str],
    model: EsmForProteinFolding | str | os.PathLike[str] = DEFAULT_MODEL,
    *,
    options: FoldOptions | None = None,
    device: str | None = None,
    chunk_size: int | Literal["auto"] | None = "auto",
    max_tokens: int = FOLD_BATCH_RESIDUES,
    num_recycles: int | None = None,
    max_length: int | None = MAX_LENGTH,
    linker_length: int = 25,
    residue_index_offset: int = 512,
    cpu_fallback: bool = True,
) -> list[FoldResult]:
    """Fold protein sequences with ESMFold; results in input order.

    Parameters
    ----------
    sequences : str, {id: sequence}, list of str/FastaRecord, or FASTA path/text
        `:` separates chains of a multimer. Bare strings get ids seq0, seq1, ...
    model : str or EsmForProteinFolding
        A hub id, local directory, `tiny`, or a loaded model (its language model is cast per the
        memory policy and it stays on its device unless `device` is given).
    options : FoldOptions or None
        device, chunk_size, max_tokens, num_recycles and cpu_fallback as one object; or pass
        them as keyword arguments (not both).
    chunk_size : int, "auto" or None
        Trunk chunk size; "auto" picks it from length and free memory, None disables chunking.
    max_tokens : int
        Batch budget in residues including padding (sorted by length; longer ones fold alone).
    max_length : int or None
        Longest allowed record (residues + linkers); None folds anything (ESM-2 saw <= 1,022).

    Raises
    ------
    InvalidSequenceError, InvalidInputError
        Naming the record, before any folding.
    FoldingError
        Naming the records that failed after every memory fallback.
    """
    options = fold_options(
        options,
        device=device,
        chunk_size=chunk_size,
        max_tokens=max_tokens,
        num_recycles=num_recycles,
        cpu_fallback=cpu_fallback,
    )
    records = as_records(sequences, validate_sequences=False, unique=True)
    items, failures = prepare(
        records,
        max_length=max_length,
        linker_length=linker_length,
        residue_index_offset=residue_index_offset,
    )
    if failures:
        exc = InvalidInputError if failures[0].reason == "too-long" else InvalidSequenceError
        raise exc(failures[0].message)
    folder = build_folder(model, options)
    by_id: dict[str, FoldResult] = {}
    bad: list[FoldFailure] = []
    for out in folder.iter(items):
        if isinstance(out, FoldFailure):
            bad.append(out)
        else:
            by_id[out.id] = out
    if bad:
        raise FoldingError("; ".join(f"{f.id!r}: {f.message}" for f in bad))
    return [by_id[it.id] for it in items]


def iter_fold(
    items: list[FoldInput],
    model: EsmForProteinFolding | str | os.PathLike[str],
    *,
    options: FoldOptions | None = None,
    device: str | None = None,
    chunk_size: int | str | None = "auto",
    max_tokens: int = FOLD_BATCH_RESIDUES,
    num_recycles: int | None = None,
    cpu_fallback: bool = True,
) -> Iterator[FoldResult | FoldFailure]:
    """Fold prepared items (see `prepare`) in length-sorted batches; yields results or failures.

    Folding settings come as `options` or as keyword arguments (see `fold`), not both.
    """
    options = fold_options(
        options,
        device=device,
        chunk_size=chunk_size,
        max_tokens=max_tokens,
        num_recycles=num_recycles,
        cpu_fallback=cpu_fallback,
    )
    yield from build_folder(model, options).iter(items)


def prepare(
    records: list[FastaRecord],
    *,
    max_length: int | None = MAX_LENGTH,
    linker_length: int = 25,
    residue_index_offset: int = 512,
) -> tuple[list[FoldInput], list[FoldFailure]]:
    """Parse and check records into model inputs; bad ones become `FoldFailure`s (with the fix)."""
    rc = require("transformers.models.esm.openfold_utils.residue_constants", "fold")
    if linker_length < 0 or residue_index_offset < 0:
        raise ValueError(
            f"`linker_length` and `residue_index_offset` must be >= 0, got "
            f"{linker_length} and {residue_index_offset}"
        )
    items, failures = [], []
    linker = "G" * linker_length
    for rec in records:
        try:
            chains = parse_chains(rec.sequence, rec.id)
        except InvalidSequenceError as exc:
            failures.append(FoldFailure(rec.id, rec.sequence, "invalid", str(exc)))
            continue
        joined = linker.join(chains)
        if max_length is not None and len(joined) > max_length:
            failures.append(
                FoldFailure(
                    rec.id,
                    rec.sequence,
                    "too-long",
                    (
                        f"Record {rec.id!r} has {len(joined)} residues (linkers included) > "
                        f"max_length {max_length}; split it, or allow it with max_length=None "
                        "(CLI: --max-length 0) - ESM-2 was trained on <= 1,022 residues and "
                        "memory "
                        "grows with length^2-3"
                    ),
                )
            )
            continue
        # fair-esm's scheme: chain k and the linker after it are numbered from start + k * offset.
        residx: list[int] = []
        real: list[bool] = []
        chain_index: list[int] = []
        start = 0
        for k, chain in enumerate(chains):
            n = len(chain) + (linker_length if k < len(chains) - 1 else 0)
            residx.extend(
                range(start + k * residue_index_offset, start + n + k * residue_index_offset)
            )
            real.extend([True] * len(chain) + [False] * (n - len(chain)))
            chain_index.extend([k] * len(chain))
            start += n
        aatype = np.array(
            [rc.restype_order_with_x.get(a, rc.restype_num) for a in joined], dtype=np.int64
        )
        items.append(
            FoldInput(
                rec.id,
                chains,
                aatype,
                np.asarray(residx, dtype=np.int64),
                np.asarray(real),
                np.asarray(chain_index, dtype=np.int64),
            )
        )
    return items, failures


def _deep_update(base: dict[str, Any], new: Mapping[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value
