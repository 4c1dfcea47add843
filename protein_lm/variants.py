"""Zero-shot variant effect scores from an ESM-2 masked language model, and DMS evaluation.

Mutations are written `<wt><position><mut>` (`A42G`); a multi-mutant joins them with `:`
(`A42G:L50P`). `offset` is the number of the first residue of the wild-type sequence (1 by
default; 24 for the BLAT scan), so position p is sequence index `p - offset`. Every mutation's
wild-type letter is checked against the sequence.

Strategies (Meier et al. 2021, "Language models enable zero-shot prediction of the effects of
mutations on protein function"); every score is a log-likelihood ratio in nats, higher =
more favourable, summed over the mutations of a multi-mutant (an additive model):

- ``"wt-marginals"``: log p(mut_i) - log p(wt_i) at position i, from one forward pass on the
  unmasked wild type.
- ``"masked-marginals"``: the same, with position i masked (one forward pass per mutated
  position, batched). The best of the three in the paper.
- ``"pseudo-ppl"``: PLL(mutant) - PLL(wild type), where the pseudo-log-likelihood PLL(s) sums
  log p(s_i | s with i masked) over all positions: L forward passes per distinct mutant, so use
  it for a few variants, not a whole scan.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from protein_lm.distributed import deal
from protein_lm.errors import InvalidInputError, require
from protein_lm.files import read_cells, read_text
from protein_lm.limits import MAX_RESIDUES
from protein_lm.precision import cpu_precision
from protein_lm.sequences import ESM2_TOKENS, MASK_ID, STANDARD_AA, validate

__all__ = [
    "STRATEGIES",
    "Mutation",
    "VariantScore",
    "DmsResult",
    "parse_mutant",
    "parse_mutants",
    "score_mutations",
    "pseudo_log_likelihood",
    "evaluate_dms",
    "score_dataframe",
    "read_mutations",
    "wild_type_from_mutated",
    "check_mutated_sequences",
]

log = logging.getLogger(__name__)

Strategy = Literal["wt-marginals", "masked-marginals", "pseudo-ppl"]
STRATEGIES: tuple[str, ...] = ("wt-marginals", "masked-marginals", "pseudo-ppl")
_ONE = re.compile(r"^([A-Za-z])(-?\d+)([A-Za-z])$")
_TOKEN = {t: i for i, t in enumerate(ESM2_TOKENS)}


@dataclass(frozen=True)
class Mutation:
    """One substitution: `wt` at residue number `position` (as written) becomes `mut`;
    `index` is the 0-based index into the wild-type sequence (`position - offset`)."""

    wt: str
    position: int
    mut: str
    index: int


@dataclass(frozen=True)
class VariantScore:
    """Score of one (multi-)mutant: a log-likelihood ratio in nats (higher = more favourable)."""

    mutant: str
    score: float
    strategy: str


@dataclass(frozen=True)
class DmsResult:
    """Zero-shot scores of a deep mutational scan against measured fitness.

    Attributes
    ----------
    spearman : dict strategy -> float
        Spearman rank correlation between scores and fitness over the scored rows.
    scores : dict strategy -> ndarray of float64, shape (n_rows,)
        Per-row scores in nats, NaN for skipped rows.
    n_scored : int
    skipped : tuple of (row, message)
        Rows skipped with `on_error="skip"` (0-based row numbers of the input).
    """

    name: str
    spearman: dict[str, float]
    scores: dict[str, np.ndarray] = field(repr=False)
    n_scored: int
    skipped: tuple[tuple[int, str], ...] = ()


def parse_mutant(
    text: str, wild_type: str, offset: int = 1, *, row: int | str | None = None
) -> tuple[Mutation, ...]:
    """Parse `A42G` or `A42G:L50P` against `wild_type`, checking every wild-type letter.

    Raises `InvalidInputError` naming the row (when given), the mutation and the fix.

    Examples
    --------
    >>> parse_mutant("K2A", "MKT")
    (Mutation(wt='K', position=2, mut='A', index=1),)
    """
    where = f"row {row} " if row is not None else ""
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(
            f"{where}has an empty mutation; expected e.g. 'A42G' or 'A42G:L50P'"
        )
    out: list[Mutation] = []
    seen: set[int] = set()
    for part in text.strip().split(":"):
        m = _ONE.match(part.strip())
        if not m:
            raise InvalidInputError(
                f"{where}({text!r}): malformed mutation {part!r}; expected <wild-type letter>"
                "<position><mutant letter>, e.g. 'A42G', joined by ':' for multi-mutants"
            )
        wt, pos, mut = m.group(1).upper(), int(m.group(2)), m.group(3).upper()
        if mut not in STANDARD_AA:
            raise InvalidInputError(
                f"{where}({text!r}): mutant letter {mut!r} is not one of the 20 amino acids "
                f"{STANDARD_AA}"
            )
        idx = pos - offset
        if not 0 <= idx < len(wild_type):
            raise InvalidInputError(
                f"{where}({text!r}): position {pos} is outside the sequence (residues {offset}.."
                f"{offset + len(wild_type) - 1} with offset={offset}); "
                "check the offset (the number "
                "of the first residue)"
            )
        if wild_type[idx] != wt:
            raise InvalidInputError(
                f"{where}({text!r}): wild-type letter {wt!r} at position {pos} does not match the "
                f"sequence, which has {wild_type[idx]!r} there (offset={offset}); check the "
                "sequence and the offset (the number of the first residue)"
            )
        if idx in seen:
            raise InvalidInputError(f"{where}({text!r}): position {pos} is mutated twice")
        seen.add(idx)
        out.append(Mutation(wt, pos, mut, idx))
    return tuple(out)


def parse_mutants(
    mutants: Iterable[str],
    wild_type: str,
    offset: int = 1,
    *,
    on_error: Literal["raise", "skip"] = "raise",
) -> tuple[list[tuple[Mutation, ...] | None], list[tuple[int, str]]]:
    """Parse many mutants; returns (parsed, skipped). Duplicates are errors too.

    With `on_error="skip"`, bad rows become None and are listed in `skipped` as (row, message);
    otherwise the first bad row raises `InvalidInputError` naming it (0-based).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"`on_error` must be 'raise' or 'skip', got {on_error!r}")
    parsed: list[tuple[Mutation, ...] | None] = []
    skipped: list[tuple[int, str]] = []
    first_row: dict[tuple[tuple[int, str], ...], int] = {}
    for row, text in enumerate(mutants):
        try:
            muts = parse_mutant(text, wild_type, offset, row=row)
            key = tuple(sorted((m.index, m.mut) for m in muts))
            if key in first_row:
                raise InvalidInputError(
                    f"row {row} ({text!r}): duplicate of row {first_row[key]}; each mutant once"
                )
            first_row[key] = row
        except InvalidInputError as exc:
            if on_error == "raise":
                raise
            skipped.append((row, str(exc)))
            parsed.append(None)
            continue
        parsed.append(muts)
    return parsed, skipped


def score_mutations(
    model: Any,
    wild_type: str,
    mutants: Sequence[str | tuple[Mutation, ...]],
    *,
    strategy: Strategy = "masked-marginals",
    offset: int = 1,
    max_tokens: int = 8192,
    progress: bool = False,
    precision: str = "auto",
) -> list[VariantScore]:
    """Score mutants of `wild_type` with a masked-LM ESM-2 (`EsmForMaskedLM`); see module doc.

    `mutants` are strings (parsed and checked with `offset`) or already parsed tuples.
    """
    wt = _check_wild_type(wild_type)
    parsed: list[tuple[Mutation, ...]] = [
        parse_mutant(m, wt, offset, row=i) if isinstance(m, str) else m
        for i, m in enumerate(mutants)
    ]
    scores = _score(model, wt, parsed, strategy, max_tokens, progress, precision)
    names = [
        m if isinstance(m, str) else ":".join(f"{x.wt}{x.position}{x.mut}" for x in m)
        for m in mutants
    ]
    return [VariantScore(n, float(s), strategy) for n, s in zip(names, scores)]


def pseudo_log_likelihood(
    model: Any, sequence: str, *, max_tokens: int = 8192, precision: str = "auto"
) -> float:
    """Sum over positions i of log p(s_i | s with position i masked), in nats."""
    seq = _check_wild_type(sequence)
    with cpu_precision(_lm(model), precision) as run:
        return _pll(run, seq, max_tokens)


def _pll(model: Any, seq: str, max_tokens: int) -> float:
    """`pseudo_log_likelihood` of a checked sequence, in whatever precision the caller set."""
    lp = _masked_logprobs(model, seq, list(range(len(seq))), max_tokens, False)
    return float(sum(lp[i][_TOKEN[a]] for i, a in enumerate(seq)))


def evaluate_dms(
    model: Any,
    dms: Any,
    *,
    strategies: Sequence[str] = ("masked-marginals",),
    on_error: Literal["raise", "skip"] = "raise",
    max_tokens: int = 8192,
    progress: bool = False,
    precision: str = "auto",
) -> DmsResult:
    """Score a deep mutational scan and correlate with fitness (Spearman).

    `dms` is a `protein_lm.data.DmsData` (e.g. `load_blat()`): `wild_type`, `offset`, and `data`
    with columns `mutant` and `label` (the fitness). Bad rows raise, or with `on_error="skip"`
    are reported (logged and in `DmsResult.skipped`) and left out.
    """
    scipy_stats = require("scipy.stats", "torch")
    wt = _check_wild_type(dms.wild_type)
    mutants, fitness = list(dms.data["mutant"]), np.asarray(dms.data["label"], dtype=np.float64)
    parsed, skipped = parse_mutants(mutants, wt, dms.offset, on_error=on_error)
    for _row, msg in skipped:
        log.warning("skipped %s", msg)
    ok = np.array([p is not None for p in parsed]) & np.isfinite(fitness)
    keep = [p for p, k in zip(parsed, ok) if k]
    spearman, scores = {}, {}
    for strategy in strategies:
        s = np.full(len(parsed), np.nan)
        s[ok] = _score(model, wt, keep, strategy, max_tokens, progress, precision)  # type: ignore[arg-type]
        scores[strategy] = s
        spearman[strategy] = float(scipy_stats.spearmanr(s[ok], fitness[ok]).statistic)
    return DmsResult(getattr(dms, "name", "dms"), spearman, scores, int(ok.sum()), tuple(skipped))


def score_dataframe(
    model: Any,
    wild_type: str,
    table: Any,
    *,
    strategies: Sequence[str] = ("masked-marginals",),
    offset: int = 1,
    on_error: Literal["raise", "skip"] = "raise",
    column: str = "mutant",
    source: str = "table",
    max_tokens: int = 8192,
    progress: bool = False,
    precision: str = "auto",
    shard: tuple[int, int] = (0, 1),
) -> tuple[Any, list[tuple[int, str]]]:
    """Return a copy of the pandas `table` with one `score_<strategy>` column per strategy.

    Bad rows raise `InvalidInputError` naming `source` and the row (0-based data row, header
    excluded), or with `on_error="skip"` get empty scores and are returned as (row, message).
    `progress` shows a bar over the masked forward passes. `shard=(i, n)` scores only shard i's
    valid rows (`protein_lm.distributed.deal`; the others get NaN; every row is still checked):
    rows masking the same positions stay together, and shards get similar numbers of forward
    passes. n processes each score one shard; the shards' non-NaN scores together are the whole.
    """
    if column not in table.columns:
        raise InvalidInputError(
            f"{source} has no {column!r} column; columns: {list(table.columns)}"
        )
    wt = _check_wild_type(wild_type)
    try:
        parsed, skipped = parse_mutants(
            table[column].astype(str).tolist(), wt, offset, on_error=on_error
        )
    except InvalidInputError as exc:
        raise InvalidInputError(f"{source}: {exc} (rows are 0-based, header excluded)") from None
    # Rows masking the same positions share their forward passes, so they go to one shard
    # together, weighted by those passes (and by L per row for pseudo-ppl).
    groups: dict[tuple[int, ...], list[int]] = {}
    for k, p in enumerate(parsed):
        if p is not None:
            groups.setdefault(tuple(sorted({m.index for m in p})), []).append(k)
    per_row = len(wt) if "pseudo-ppl" in strategies else 0
    costs = [len(key) + per_row * len(ks) for key, ks in groups.items()]
    rows = list(groups.values())
    mine = sorted(k for g in deal(costs, shard) for k in rows[g])
    out = table.copy()
    for strategy in strategies:
        s = np.full(len(parsed), np.nan)
        if mine:
            s[mine] = _score(
                model,
                wt,
                [parsed[k] for k in mine],  # type: ignore[misc]
                strategy,
                max_tokens,
                progress,
                precision,
            )
        out[f"score_{strategy}"] = s
    return out, [(row, f"{source}: {msg}") for row, msg in skipped]


def wild_type_from_mutated(mutant: str, mutated_sequence: str, offset: int = 1) -> str:
    """The wild type behind a ProteinGym row: `mutated_sequence` with `mutant` (`A42G:L50P`,
    positions from `offset`) undone, each mutant letter checked.

    Examples
    --------
    >>> wild_type_from_mutated("K2A", "MAT")
    'MKT'
    """
    seq = list(mutated_sequence.strip())
    for part in str(mutant).strip().split(":"):
        m = _ONE.match(part.strip())
        if not m:
            raise InvalidInputError(
                f"malformed mutation {part!r} in {mutant!r}; expected e.g. A42G"
            )
        wt, pos, mut = m.group(1).upper(), int(m.group(2)), m.group(3).upper()
        idx = pos - offset
        if not 0 <= idx < len(seq) or seq[idx] != mut:
            raise InvalidInputError(
                f"{mutant!r}: mutated_sequence has no {mut!r} at position {pos} (offset={offset})"
            )
        seq[idx] = wt
    return "".join(seq)


def check_mutated_sequences(
    table: Any,
    wild_type: str,
    *,
    offset: int = 1,
    column: str = "mutant",
    source: str = "table",
    sequence_column: str = "mutated_sequence",
) -> int:
    """Check a ProteinGym-style `sequence_column` against `wild_type`: every row's mutant applied
    to the wild type must give its mutated sequence. Rows whose mutant does not parse are left to
    the scorer (which raises or skips them). Returns the number of rows checked; a mismatch raises
    `InvalidInputError` naming the row (0-based, header excluded) and the first difference."""
    wt = _check_wild_type(wild_type)
    checked = 0
    for row, (text, given) in enumerate(zip(table[column], table[sequence_column])):
        try:
            muts = parse_mutant(str(text), wt, offset, row=row)
        except InvalidInputError:
            continue
        expected = _mutated(wt, muts)
        given = str(given).strip().upper()
        if given != expected:
            where = next(
                (k for k, (a, b) in enumerate(zip(given, expected)) if a != b),
                min(len(given), len(expected)),
            )
            raise InvalidInputError(
                f"{source}, row {row} ({text!r}): {sequence_column} is not the wild type with "
                f"this mutation (first difference at residue {where + offset}, length "
                f"{len(given)} vs {len(expected)}); check the wild type and the offset"
            )
        checked += 1
    return checked


def read_mutations(path: str | os.PathLike[str], *, column: str = "mutant") -> Any:
    """Read a UTF-8 CSV/TSV mutation table with a `column` of mutants (`files.sniff_delimiter`).

    Returns a pandas DataFrame of strings with every column and header as written (other
    columns, e.g. measured fitness, pass through verbatim: `007`, `NA` and empty cells are kept;
    `files.read_cells`). A missing or empty file, non-UTF-8 bytes, a malformed table or a missing
    (or repeated) `column` raise `InvalidInputError` naming the file (and the line if known).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: mutation file not found")
    text = read_text(path)
    if not text.strip():
        raise InvalidInputError(
            f"{path}: file is empty; expected a CSV with a {column!r} "
            "column (e.g. 'K2A' or 'K2A:T3G' per row)"
        )
    header, rows = read_cells(path, text)
    if column not in header:
        raise InvalidInputError(
            f"{path}: no {column!r} column; columns: {header} (pass column=...; CLI: --column)"
        )
    if header.count(column) > 1:
        raise InvalidInputError(
            f"{path}: {header.count(column)} columns named {column!r}; rename all but one"
        )
    if not rows:
        raise InvalidInputError(f"{path}: no data rows under the header")
    # object dtype of str: pandas must not turn `007` into 7 or `NA` into NaN on the way out.
    return pd.DataFrame(rows, columns=header, dtype=object)


# ---------------------------------------------------------------------------------- internals
def _check_wild_type(seq: str) -> str:
    wt = validate(seq, "wild type")
    if len(wt) > MAX_RESIDUES:
        raise InvalidInputError(
            f"Wild type has {len(wt)} residues > {MAX_RESIDUES} (the ESM-2 limit); score a "
            f"window of at most {MAX_RESIDUES:,} residues around the mutated region (and shift "
            "the offset)"
        )
    return wt


def _score(
    model: Any,
    wt: str,
    parsed: list[tuple[Mutation, ...]],
    strategy: str,
    max_tokens: int,
    progress: bool,
    precision: str = "auto",
) -> np.ndarray:
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {strategy!r}")
    with cpu_precision(_lm(model), precision) as run:  # CPU numerics: protein_lm.precision
        return _score_in(run, wt, parsed, strategy, max_tokens, progress)


def _score_in(
    model: Any,
    wt: str,
    parsed: list[tuple[Mutation, ...]],
    strategy: str,
    max_tokens: int,
    progress: bool,
) -> np.ndarray:
    if strategy == "pseudo-ppl":
        ref = _pll(model, wt, max_tokens)
        cache: dict[str, float] = {}
        out = []
        for muts in parsed:
            key = _mutated(wt, muts)
            if key not in cache:
                cache[key] = _pll(model, key, max_tokens)
            out.append(cache[key] - ref)
        return np.asarray(out, dtype=np.float64)
    positions = sorted({m.index for muts in parsed for m in muts})
    # position index -> log-probabilities over the vocabulary (a (L, V) array is indexed alike)
    lp: np.ndarray | dict[int, np.ndarray]
    if strategy == "wt-marginals":
        lp = _wt_logprobs(model, wt)
    else:
        lp = _masked_logprobs(model, wt, positions, max_tokens, progress)
    return np.asarray(
        [
            sum(lp[m.index][_TOKEN[m.mut]] - lp[m.index][_TOKEN[m.wt]] for m in muts)
            for muts in parsed
        ],
        dtype=np.float64,
    )


def _mutated(wt: str, muts: tuple[Mutation, ...]) -> str:
    """`wt` with every mutation of one variant applied."""
    seq = list(wt)
    for m in muts:
        seq[m.index] = m.mut
    return "".join(seq)


def _lm(model: Any) -> Any:
    if not hasattr(model, "lm_head"):
        raise InvalidInputError(
            f"Variant scoring needs a masked-LM head; got {type(model).__name__}. Load the model "
            "with protein_lm.models.load_model(name, task='masked-lm')"
        )
    if model.training:
        warnings.warn(
            "variant scoring: the model is in training mode (dropout is active); call "
            "model.eval()",
            stacklevel=3,
        )
    return model


def _wt_logprobs(model: Any, wt: str) -> np.ndarray:
    torch = require("torch", "torch")
    from protein_lm.embeddings import thread_limit  # same CPU-thread policy as embed()
    from protein_lm.tokenization import encode

    model = _lm(model)
    device = next(model.parameters()).device
    with thread_limit(device), torch.inference_mode():
        ids = encode([wt], return_tensors="pt")["input_ids"].to(device)
        logits = model(ids).logits[0, 1 : len(wt) + 1].float()  # (L, V)
        return torch.log_softmax(logits, -1).cpu().numpy()


def _masked_logprobs(
    model: Any, wt: str, positions: list[int], max_tokens: int, progress: bool
) -> dict[int, np.ndarray]:
    """log p(. | wt with position i masked) for each i in `positions` (0-based residue index)."""
    torch = require("torch", "torch")
    from protein_lm.embeddings import thread_limit  # same CPU-thread policy as embed()
    from protein_lm.tokenization import encode

    model = _lm(model)
    device = next(model.parameters()).device
    base = encode([wt], return_tensors="pt")["input_ids"][0]  # (L+2,)
    # One masked copy of the wild type per distinct mutated position, shared by every variant
    # there (as esm's and ProteinGym's masked-marginal scorers do), batched by token budget.
    log.info("masked-marginals: %d masked passes (distinct mutated positions)", len(positions))
    bs = max(1, max_tokens // base.numel())
    out: dict[int, np.ndarray] = {}
    tqdm = require("tqdm", "torch").tqdm
    with thread_limit(device), torch.inference_mode():
        for start in tqdm(range(0, len(positions), bs), disable=not progress, desc="masked"):
            chunk = torch.tensor(positions[start : start + bs])
            ids = base.repeat(len(chunk), 1)  # (B, L+2), identical lengths: no padding, no mask
            ids[torch.arange(len(chunk)), chunk + 1] = MASK_ID  # residue i is token i+1
            logits = model(ids.to(device)).logits  # (B, L+2, V)
            rows = torch.arange(len(chunk), device=device)
            sel = logits[rows, (chunk + 1).to(device)].float()  # (B, V)
            lp = torch.log_softmax(sel, -1).cpu().numpy()
            out.update({int(p): lp[j] for j, p in enumerate(chunk.tolist())})
    return out
