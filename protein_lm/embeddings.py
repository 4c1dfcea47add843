"""Per-residue and mean embeddings and contact maps from an ESM-2 model, for many sequences.

Batching strategy (`strategy=`), chosen per device because the fastest one differs:

- ``"padded"``: token-budget batches of length-sorted sequences with an attention mask
  (`batching.token_budget_batches`). Fast on a GPU, where a batch fills the device.
- ``"exact"``: batches of sequences with *identical* length only, no padding and no mask, so
  sdpa runs its unmasked kernel and no compute is spent on padding. On CPU, padded batches were
  not faster than a per-sequence loop (masks and padding cost more than batching saves; see
  `benchmarks/embedding_throughput.py`), while exact batches never do extra work.
- ``"auto"`` (default): "padded" on CUDA, "exact" elsewhere.

Mean embeddings average residues 1..L only: `<cls>`, `<eos>` and padding are excluded. Layer 0 is
the token embedding (after ESM-2's token-dropout scaling), layer i the output of block i, and the
last layer has the final layer norm applied, as fair-esm's `repr_layers`.

Long sequences: ESM-2 was trained on crops of 1,022 residues (+ `<cls>`/`<eos>`). Longer ones
follow `long_policy`: ``"error"`` (default) raises, naming the record; ``"window"`` embeds
windows of 1,022 residues overlapping by half (`limits.windows`) and averages, per residue, every
window that covers it (the mean embedding is the mean of those averages). Windowed contact maps
average every window holding both residues; pairs never in one window are NaN.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Literal, cast

import numpy as np

from protein_lm.errors import InvalidInputError, InvalidSequenceError, require
from protein_lm.limits import MAX_RESIDUES, windows
from protein_lm.precision import cpu_has_bf16, cpu_precision
from protein_lm.sequences import FastaRecord, as_records

if TYPE_CHECKING:
    import torch
    from tqdm import tqdm
    from transformers import PretrainedConfig, PreTrainedModel

__all__ = [
    "MAX_RESIDUES",
    "Embeddings",
    "embed",
    "batch_plan",
    "mean_pool",
    "check_records",
    "thread_limit",
]

log = logging.getLogger(__name__)

Strategy = Literal["auto", "padded", "exact"]
LongPolicy = Literal["error", "window"]
_CONTACT_BYTES = 1 << 30  # cap on the fp32 attention maps one contact batch may hold (1 GiB)


@dataclass(frozen=True)
class Embeddings:
    """Embeddings of N sequences.

    Attributes
    ----------
    ids : tuple of str, length N
    lengths : ndarray of int64, shape (N,)
        Residues per sequence.
    layers : tuple of int
        Absolute layer indices (0 = token embedding, num_layers = last, layer-normed).
    mean : dict int -> ndarray of float32, shape (N, D)
        Mean over residues (no special tokens, no padding), per layer. NaN rows: failed ids.
    per_residue : dict int -> list of ndarray of float32, shape (L_i, D), or None
    contacts : list of ndarray of float32, shape (L_i, L_i), or None
        Contact probabilities (0-1) from the model's contact head.
    failed : tuple of str
        Ids skipped because the device ran out of memory even for that sequence alone.
    """

    ids: tuple[str, ...]
    lengths: np.ndarray
    layers: tuple[int, ...]
    mean: dict[int, np.ndarray]
    per_residue: dict[int, list[np.ndarray]] | None = None
    contacts: list[np.ndarray] | None = None
    failed: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.ids)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of `hidden` (B, T, D) over residue tokens: the mask minus `<cls>` (first) and `<eos>`
    (last).

    `attention_mask` (B, T) marks `<cls>` + residues + `<eos>`; padding is 0.
    """
    m = attention_mask.clone()
    m[:, 0] = 0
    last = attention_mask.sum(1) - 1  # index of <eos> in each row
    m[range(m.shape[0]), last] = 0
    m = m.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1)


def batch_plan(
    lengths: Sequence[int] | np.ndarray, max_tokens: int, strategy: Literal["padded", "exact"]
) -> list[list[int]]:
    """Index batches for `strategy` (see module doc); each batch holds at most `max_tokens` tokens.

    A sequence longer than the budget gets a batch of its own.
    """
    from protein_lm.batching import token_budget_batches

    lengths = np.asarray(lengths, dtype=np.int64)
    if strategy == "padded":
        return token_budget_batches(lengths, max_tokens)
    if strategy != "exact":
        raise ValueError(f"`strategy` must be 'auto', 'padded' or 'exact', got {strategy!r}")
    batches: list[list[int]] = []
    order = np.argsort(lengths, kind="stable")
    for length in np.unique(lengths):
        same = order[lengths[order] == length].tolist()
        size = max(1, max_tokens // int(length + 2))
        batches.extend(same[i : i + size] for i in range(0, len(same), size))
    return batches


def embed(
    model: PreTrainedModel,
    sequences: str | Mapping[str, str] | Iterable[str | FastaRecord] | os.PathLike[str],
    *,
    layers: int | Sequence[int] = -1,
    per_residue: bool = False,
    contacts: bool = False,
    max_tokens: int = 4096,
    strategy: Strategy = "auto",
    long_policy: LongPolicy = "error",
    num_threads: int | Literal["auto"] | None = "auto",
    precision: str = "auto",
    progress: bool = True,
) -> Embeddings:
    """Embed protein sequences with an ESM-2 transformers model (any `Esm*` class).

    Parameters
    ----------
    model : transformers EsmModel / EsmForMaskedLM / Esm...Classification
        Runs on its own device and dtype (load it with
        `models.load_model(..., dtype=torch.float16)`
        for fp16 on GPU); outputs are float32. `contacts=True` switches it to eager attention for
        the call (sdpa returns no attention maps) and back.
    sequences : str, {id: seq}, iterable of str/FastaRecord, or FASTA path
        Ids must be unique.
    layers : int or sequence of int
        Layers to return; negative counts from the end (-1 = last).
    max_tokens : int
        Token budget per batch, padding included.
    strategy : {"auto", "padded", "exact"}
        Batching strategy (module doc).
    long_policy : {"error", "window"}
        What to do with sequences over `MAX_RESIDUES` residues (module doc).
    num_threads : int, "auto" or None
        CPU threads for this call (restored afterwards). "auto" uses fewer threads than torch's
        default when the machine is already busy (1-minute load average), because oversubscribed
        intra-op threads stall each other: on 2 shared cores a per-sequence forward of a 4-layer
        model took 13-20 s for 16 proteins with 2 threads and 0.8-1.0 s with 1. None: leave torch's
        setting. Ignored on CUDA and when `OMP_NUM_THREADS` is set.
    precision : {"auto", "float32", "bfloat16", "int8"}
        CPU numerics of a float32 model (`protein_lm.precision`): "auto" is bfloat16 autocast on
        CPUs with native bfloat16 (AVX512-BF16/AMX) for models of width >= 320, else float32.
        Ignored on CUDA (the model's own dtype). Outputs are float32 in every mode.
    """
    torch = require("torch", "torch")
    records = as_records(sequences)
    check_records(records, long_policy=long_policy)
    if max_tokens <= 0:
        raise ValueError(f"`max_tokens` must be > 0, got {max_tokens}")
    base = getattr(model, "esm", model)
    device = _checked_device(model)
    want = _resolve_layers(layers, base.config.num_hidden_layers)
    if strategy == "auto":
        strategy = "padded" if device.type == "cuda" else "exact"
    items = _expand(records)  # (record index, start, sub-sequence); long ones windowed
    lengths = np.array([len(s) for _, _, s in items], dtype=np.int64)
    plan = batch_plan(lengths, max_tokens, strategy)
    if contacts:
        plan = _split_for_contacts(plan, lengths, base.config)
    windowed = {i for i, (r, _, s) in enumerate(items) if len(s) < len(records[r].sequence)}
    out = _Outputs.empty(
        len(items),
        want,
        base.config.hidden_size,
        keep_res=per_residue or contacts or bool(windowed),
        contacts=contacts,
    )
    tqdm = require("tqdm", "torch").tqdm
    previous = base.config._attn_implementation
    if contacts and previous != "eager":
        model.set_attn_implementation("eager")
    bar = None
    try:
        with (
            thread_limit(device, num_threads),
            cpu_precision(model, precision) as run,  # logs its choice: before the bar starts
            torch.inference_mode(),
        ):
            bar = tqdm(total=int(lengths.sum()), unit="res", disable=not progress, desc="embed")
            names = [records[r].id for r, _, _ in items]
            _run_plan(
                torch,
                getattr(run, "esm", run),
                items,
                plan,
                out,
                names,
                bar,
                padded=strategy == "padded",
                device=device,
            )
    finally:
        if bar is not None:
            bar.close()
        if contacts and previous != "eager":
            model.set_attn_implementation(previous)
    return _assemble(
        records, items, want, out.mean, out.res, out.con, out.failed, per_residue, contacts
    )


def _checked_device(model: PreTrainedModel) -> torch.device:
    """The model's device; warns (at `embed`'s caller) of settings that cost accuracy or time."""
    if model.training:
        warnings.warn(
            "embed(): the model is in training mode (dropout is active); call "
            "model.eval() for deterministic embeddings",
            stacklevel=3,
        )
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    slow_half = str(dtype) == "torch.float16" or (
        str(dtype) == "torch.bfloat16" and not cpu_has_bf16()
    )
    if device.type == "cpu" and slow_half:
        # No native kernels for this dtype on this CPU: emulated, slower than float32.
        warnings.warn(
            f"embed(): a {dtype} model on this CPU is emulated and slower than float32; load "
            "it in float32 and use precision='auto' (bfloat16 autocast where the CPU has it)",
            stacklevel=3,
        )
    return device


@dataclass
class _Outputs:
    """Per-item results of `embed`'s forward passes (None / NaN until an item's batch ran)."""

    want: tuple[int, ...]
    keep_res: bool
    contacts: bool
    mean: dict[int, np.ndarray]
    res: dict[int, list[np.ndarray | None]]
    con: list[np.ndarray | None]
    failed: set[int]

    @classmethod
    def empty(
        cls, n: int, want: tuple[int, ...], hidden: int, *, keep_res: bool, contacts: bool
    ) -> _Outputs:
        return cls(
            want,
            keep_res,
            contacts,
            {l: np.full((n, hidden), np.nan, np.float32) for l in want},
            {l: [None] * n for l in want},
            [None] * n,
            set(),
        )

    def store(self, batch: list[int], result: _BatchResult) -> None:
        means, resid, cons = result
        for j, idx in enumerate(batch):
            for l in self.want:
                self.mean[l][idx] = means[l][j]
                if self.keep_res:
                    self.res[l][idx] = resid[l][j]
            if self.contacts:
                assert cons is not None  # `_forward` returns maps whenever contacts are asked for
                self.con[idx] = cons[j]


def _run_plan(
    torch: ModuleType,
    base: PreTrainedModel,
    items: list[tuple[int, int, str]],
    plan: list[list[int]],
    out: _Outputs,
    names: list[str],
    bar: tqdm,
    *,
    padded: bool,
    device: torch.device,
) -> None:
    """Run every batch of `plan` into `out`; a batch out of GPU memory is retried as two halves,
    and an item out of memory alone is marked failed."""
    queue = list(plan)
    while queue:
        batch = queue.pop(0)
        try:
            res = _forward(
                torch,
                base,
                [items[i][2] for i in batch],
                out.want,
                out.contacts,
                padded and len(batch) > 1,
                device,
                out.keep_res,
            )
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if len(batch) > 1:  # retry as two halves
                queue[:0] = [batch[: len(batch) // 2], batch[len(batch) // 2 :]]
                continue
            out.failed.add(batch[0])
            log.warning(
                "Out of memory on %s (%d residues) alone; skipped. Try the CPU, or "
                "long_policy='window'",
                names[batch[0]],
                len(items[batch[0]][2]),
            )
            continue
        out.store(batch, res)
        bar.update(sum(len(items[i][2]) for i in batch))


# Per-layer means, per-layer per-residue arrays and contact maps (None unless asked for).
_BatchResult = tuple[dict[int, np.ndarray], dict[int, list[np.ndarray]], list[np.ndarray] | None]


def _forward(
    torch: ModuleType,
    base: PreTrainedModel,
    seqs: list[str],
    want: tuple[int, ...],
    contacts: bool,
    padded: bool,
    device: torch.device,
    keep_res: bool,
) -> _BatchResult:
    from protein_lm.tokenization import encode

    enc = encode(seqs, return_tensors="pt")
    ids = enc["input_ids"].to(device)
    mask = enc["attention_mask"].to(device)
    n_layers = base.config.num_hidden_layers
    only_last = want == (n_layers,)
    # Exact-length batches carry no padding: passing no mask keeps sdpa on its unmasked kernel.
    out = base(
        ids,
        attention_mask=mask if padded else None,
        output_hidden_states=not only_last,
        output_attentions=contacts,
    )
    hidden = (
        {n_layers: out.last_hidden_state}
        if only_last
        else {l: (out.last_hidden_state if l == n_layers else out.hidden_states[l]) for l in want}
    )
    lens = [len(s) for s in seqs]
    means = {l: mean_pool(h.float(), mask).cpu().numpy() for l, h in hidden.items()}
    resid: dict[int, list[np.ndarray]] = {}
    if keep_res:
        for l, h in hidden.items():
            h = h.float().cpu().numpy()  # (B, T, D)
            resid[l] = [h[j, 1 : 1 + n] for j, n in enumerate(lens)]
    cons = None
    if contacts:
        att = torch.stack(out.attentions, dim=1)  # (B, layers, heads, T, T)
        # fair-esm zeroes attention to and from padding before the contact head; so do we.
        m = mask.to(att.dtype)
        att = att * m[:, None, None, :, None] * m[:, None, None, None, :]
        c = base.contact_head(ids, att).float().cpu().numpy()  # (B, T-2, T-2)
        cons = [c[j, :n, :n] for j, n in enumerate(lens)]
    return means, resid, cons


@contextlib.contextmanager
def thread_limit(
    device: torch.device | str, num_threads: int | str | None = "auto"
) -> Iterator[None]:
    """Set torch's CPU threads for a block and restore them afterwards.

    The CPU-thread policy of every inference loop here (`embed`, the variant scores).

    Parameters
    ----------
    device : torch.device or str
        Only a CPU device is limited; on CUDA (or anything else) nothing changes.
    num_threads : int, "auto" or None
        An int sets that many threads. "auto" uses fewer threads than torch's current setting
        when the machine is already busy (cores minus the 1-minute load average, at least 1),
        because oversubscribed intra-op threads stall each other; it leaves torch alone when
        `OMP_NUM_THREADS` is set. None leaves torch's setting.

    Examples
    --------
    >>> import torch
    >>> with thread_limit("cpu", 1):
    ...     torch.get_num_threads()
    1
    """
    torch = require("torch", "torch")
    before = torch.get_num_threads()
    n = _threads(before, num_threads) if getattr(device, "type", str(device)) == "cpu" else None
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)


def _threads(current: int, requested: int | str | None) -> int | None:
    if requested is None or (requested == "auto" and os.environ.get("OMP_NUM_THREADS")):
        return None
    if requested != "auto":
        if not isinstance(requested, int) or requested < 1:
            raise ValueError(
                f"`num_threads` must be a positive int, 'auto' or None, got {requested!r}"
            )
        return requested
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return min(current, max(1, int(cores - load)))


def _resolve_layers(layers: int | Sequence[int], n_layers: int) -> tuple[int, ...]:
    raw = [layers] if isinstance(layers, int) else list(layers)
    out = []
    for l in raw:
        a = l + n_layers + 1 if l < 0 else l
        if not 0 <= a <= n_layers:
            raise ValueError(
                f"Layer {l} does not exist: the model has layers 0..{n_layers} "
                f"(or -1..-{n_layers + 1})"
            )
        out.append(a)
    return tuple(dict.fromkeys(out))


def check_records(records: Sequence[FastaRecord], *, long_policy: LongPolicy = "error") -> None:
    """Check records before any work: unique ids, and no sequence over `MAX_RESIDUES` residues
    unless `long_policy="window"`. Raises `InvalidInputError` / `InvalidSequenceError` naming the
    record (and the CLI option that fixes it), the error `embed` would raise mid-run.
    """
    if long_policy not in ("error", "window"):
        raise ValueError(f"`long_policy` must be 'error' or 'window', got {long_policy!r}")
    _check_unique(records)
    if long_policy == "error":
        for rec in records:
            if len(rec.sequence) > MAX_RESIDUES:
                raise InvalidSequenceError(
                    f"Sequence {rec.id!r} has {len(rec.sequence)} residues > {MAX_RESIDUES} (the "
                    "ESM-2 limit); pass long_policy='window' (CLI: --long window) to average "
                    "overlapping windows, or split it"
                )


def _check_unique(records: Sequence[FastaRecord]) -> None:
    seen: dict[str, int] = {}
    for i, r in enumerate(records):
        if r.id in seen:
            raise InvalidInputError(
                f"Duplicate id {r.id!r} at records {seen[r.id]} and {i} (0-based); "
                "ids must be unique"
            )
        seen[r.id] = i


def _expand(records: list[FastaRecord]) -> list[tuple[int, int, str]]:
    """(record index, start, sub-sequence) per window; a short record is one window, itself."""
    return [(r_i, s, sub) for r_i, rec in enumerate(records) for s, sub in windows(rec.sequence)]


def _split_for_contacts(
    plan: list[list[int]], lengths: np.ndarray, config: PretrainedConfig
) -> list[list[int]]:
    per_map = config.num_hidden_layers * config.num_attention_heads * 4  # fp32 bytes per T*T
    out: list[list[int]] = []
    for batch in plan:
        t = int(lengths[batch].max()) + 2
        size = max(1, _CONTACT_BYTES // (per_map * t * t))
        out.extend(batch[i : i + size] for i in range(0, len(batch), size))
    return out


def _assemble(
    records: list[FastaRecord],
    items: list[tuple[int, int, str]],
    want: tuple[int, ...],
    out_mean: dict[int, np.ndarray],
    out_res: dict[int, list[np.ndarray | None]],
    out_con: list[np.ndarray | None],
    failed_items: set[int],
    per_residue: bool,
    contacts: bool,
) -> Embeddings:
    n, lengths = len(records), np.array([len(r.sequence) for r in records], dtype=np.int64)
    by_rec: dict[int, list[int]] = {}
    for i, (r_i, _, _) in enumerate(items):
        by_rec.setdefault(r_i, []).append(i)
    failed = {items[i][0] for i in failed_items}
    mean = {l: np.full((n, out_mean[l].shape[1]), np.nan, np.float32) for l in want}
    res: dict[int, list[np.ndarray]] = {l: [] for l in want}
    cons: list[np.ndarray] = []
    for r_i in range(n):
        parts = by_rec[r_i]
        L = int(lengths[r_i])
        if len(parts) == 1:  # not windowed: copy through (an item that ran is never None)
            i = parts[0]
            for l in want:
                mean[l][r_i] = out_mean[l][i]
                if per_residue:
                    res[l].append(
                        cast("np.ndarray", out_res[l][i])
                        if r_i not in failed
                        else np.full((L, 0), np.nan)
                    )
            if contacts:
                cons.append(
                    cast("np.ndarray", out_con[i])
                    if r_i not in failed
                    else np.full((L, L), np.nan, np.float32)
                )
            continue
        # Windowed: average each residue (pair) over the windows that cover it.
        cover = np.zeros(L, np.float32)
        for i in parts:
            s, w = items[i][1], len(items[i][2])
            cover[s : s + w] += 1
        for l in want:
            acc = np.zeros((L, out_mean[l].shape[1]), np.float32)
            for i in parts:
                s, w = items[i][1], len(items[i][2])
                part = out_res[l][i]
                if part is not None:
                    acc[s : s + w] += part
            avg = np.full_like(acc, np.nan) if r_i in failed else acc / cover[:, None]
            mean[l][r_i] = avg.mean(0)
            if per_residue:
                res[l].append(avg)
        if contacts:
            acc2, cnt = np.zeros((L, L), np.float32), np.zeros((L, L), np.float32)
            for i in parts:
                s, w = items[i][1], len(items[i][2])
                con = out_con[i]
                if con is not None:
                    acc2[s : s + w, s : s + w] += con
                    cnt[s : s + w, s : s + w] += 1
            with np.errstate(invalid="ignore", divide="ignore"):
                cons.append(np.where(cnt > 0, acc2 / cnt, np.nan).astype(np.float32))
    return Embeddings(
        ids=tuple(r.id for r in records),
        lengths=lengths,
        layers=want,
        mean=mean,
        per_residue=res if per_residue else None,
        contacts=cons if contacts else None,
        failed=tuple(records[r].id for r in sorted(failed)),
    )
