"""ESM-2 length limits and the one window planner for sequences longer than them.

What the numbers mean (written here once, so no two comments in the package can disagree):

- ``max_position_embeddings = 1026`` is what every ESM-2 ``config.json`` declares. It is inherited
  from ESM-1b, whose learned position table held 1,024 positions plus an offset of
  ``padding_idx + 1`` = 2. ESM-2 uses rotary positions and has no such table, so 1026 is not a
  hard wall for the model; it is the largest token count accepted here (`MAX_TOKENS`, used by the
  tokenizer, the fine-tuning `max_length` check and `models.tiny_config`).
- ESM-2 was trained on crops of 1,024 tokens *including* ``<cls>`` and ``<eos>``
  (`TRAINING_TOKENS`), i.e. 1,022 residues (`MAX_RESIDUES`). Quality past the crop is untested,
  so embedding and variant scoring refuse or window longer sequences at `MAX_RESIDUES`, and
  fine-tuning and prediction default to `TRAINING_TOKENS` tokens.
- Folding budgets are a different concept, in residues, not tokens: `FOLD_MAX_RESIDUES` is the
  default longest record to fold (residues + linkers; memory grows with length^2-3), close to but
  not the same as the ESM-2 crop, and `FOLD_BATCH_RESIDUES` is the default residues per folding
  batch, padding included.

Longer sequences are covered by `windows` (per-residue tasks): windows of `window` residues,
stride half a window, the last one flush with the end, so every residue is covered.
"""

from __future__ import annotations

__all__ = [
    "MAX_TOKENS",
    "TRAINING_TOKENS",
    "MAX_RESIDUES",
    "FOLD_MAX_RESIDUES",
    "FOLD_BATCH_RESIDUES",
    "window_starts",
    "windows",
]

MAX_TOKENS = 1026  # ESM-2 config max_position_embeddings (ESM-1b legacy; see module doc)
MAX_RESIDUES = 1022  # ESM-2 training crop in residues
TRAINING_TOKENS = MAX_RESIDUES + 2  # the crop in tokens: residues + <cls> + <eos> = 1,024
FOLD_MAX_RESIDUES = 1024  # default longest folded record (residues + linkers)
FOLD_BATCH_RESIDUES = 1024  # default residues per folding batch, padding included


def window_starts(length: int, window: int = MAX_RESIDUES) -> list[int]:
    """Start offsets of windows of `window` residues covering `length`, stride `window // 2`.

    Examples
    --------
    >>> window_starts(10, 4)
    [0, 2, 4, 6]
    >>> window_starts(1500)
    [0, 478]
    """
    if length <= window:
        return [0]
    starts = list(range(0, length - window, max(window // 2, 1)))
    return [*starts, length - window]


def windows(sequence: str, window: int = MAX_RESIDUES) -> list[tuple[int, str]]:
    """(start, sub-sequence) of each window covering `sequence` (see `window_starts`).

    Examples
    --------
    A sequence of at most `window` residues is one window, itself. Ubiquitin (76 residues) in
    windows of 32:

    >>> ubiquitin = ("MQIFVKTLTGKTITLEVEPSDTIENVKAKIQDKEGIPPDQQRLIFAGKQLEDGRTLSDYNIQKESTLHLV"
    ...              "LRLRGG")
    >>> [(start, len(sub)) for start, sub in windows(ubiquitin, 32)]
    [(0, 32), (16, 32), (32, 32), (44, 32)]
    >>> windows(ubiquitin, 32)[-1][1] == ubiquitin[-32:]
    True
    >>> windows("MQIFVKTLTG")
    [(0, 'MQIFVKTLTG')]
    """
    return [(s, sequence[s : s + window]) for s in window_starts(len(sequence), window)]
