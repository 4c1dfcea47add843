"""Vectorised ESM-2 tokenizer with ids identical to transformers' `EsmTokenizer` and fair-esm.

`encode` maps ASCII bytes through a 256-entry lookup table and scatters all residues of a batch
into one padded array in a handful of numpy calls; no Python loop runs per residue. For a batch
of protein sequences it returns the same `input_ids` / `attention_mask` as
`EsmTokenizer(seqs, padding=True)` and, for `input_ids`, as fair-esm's
`Alphabet.get_batch_converter()` (which has no attention mask; padding is `<pad>`=1 in both).

Where the reference tokenizers differ from each other and from us (all on input that is not a
protein sequence):

- truncation: `EsmTokenizer(max_length=N, truncation=True)` keeps N-2 residues; fair-esm's
  `truncation_seq_length=N` keeps N residues. `encode(max_length=N)` follows transformers.
- unknown characters (lowercase, `J`, whitespace...): both references split on whitespace and map
  a *run* of unknown characters to one `<unk>`, which silently shifts every per-residue label after
  it. We raise `InvalidSequenceError` by default (`on_unknown="error"`), or map each character to
  its own `<unk>` (`on_unknown="unk"`, same as `hf_tokenizer()`). Run `sequences.validate` first.
- `<mask>`, `<unk>`, `<cls>`, `<eos>`, `<pad>` written in a sequence are single tokens in all
  three.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from protein_lm.errors import InvalidSequenceError, require
from protein_lm.limits import MAX_TOKENS
from protein_lm.sequences import CLS_ID, EOS_ID, ESM2_TOKENS, PAD_ID, UNK_ID

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = ["encode", "decode", "hf_tokenizer", "write_vocab", "MAX_TOKENS"]

ReturnTensors = Literal["np", "pt", "tf"] | None

# Special tokens written inside a sequence are replaced by one control byte each before lookup.
_SPECIAL_BYTES = {
    "<cls>": "\x01",
    "<pad>": "\x02",
    "<eos>": "\x03",
    "<unk>": "\x04",
    "<mask>": "\x05",
}
_SPECIAL_RE = re.compile("|".join(re.escape(t) for t in _SPECIAL_BYTES))

_LUT = np.full(256, -1, dtype=np.int64)
for _i, _tok in enumerate(ESM2_TOKENS):
    if len(_tok) == 1:
        _LUT[ord(_tok)] = _i
for _tok, _b in _SPECIAL_BYTES.items():
    _LUT[ord(_b)] = ESM2_TOKENS.index(_tok)


def _raise_unknown(seqs: Sequence[str], flat_pos: int, starts: np.ndarray) -> None:
    row = int(np.searchsorted(starts, flat_pos, side="right") - 1)
    col = flat_pos - int(starts[row])
    ch = seqs[row][col] if "<" not in seqs[row] else "?"
    raise InvalidSequenceError(
        f"Unknown character {ch!r} at position {col + 1} of sequence {row} (0-based); the ESM-2 "
        "vocabulary has 20 standard amino acids, X B Z U O, '-', '.', and <mask>. Clean it with "
        "protein_lm.sequences.validate() or pass on_unknown='unk'."
    )


def encode(
    sequences: str | Sequence[str],
    *,
    add_special_tokens: bool = True,
    padding: bool | Literal["longest", "max_length"] = True,
    truncation: bool = False,
    max_length: int | None = None,
    pad_to_multiple_of: int | None = None,
    on_unknown: Literal["error", "unk"] = "error",
    return_tensors: ReturnTensors = "np",
) -> dict[str, Any]:
    """Tokenise protein sequences into `input_ids` and `attention_mask`.

    Parameters
    ----------
    sequences : str or sequence of str
        Upper-case protein sequences (validate them first with `sequences.validate`).
    padding : bool or {"longest", "max_length"}
        `True`/"longest" pads to the longest sequence; "max_length" to `max_length`; `False`
        returns lists of unequal length (`return_tensors=None` only).
    truncation, max_length : bool, int
        With `truncation=True`, keep at most `max_length` tokens including `<cls>`/`<eos>` (as
        `EsmTokenizer`). Without truncation, a longer sequence raises `ValueError`.
    return_tensors : {"np", "pt", "tf", None}
        Output type; arrays are int64 `(B, T)` ids and `(B, T)` masks.

    Examples
    --------
    >>> encode(["MKT", "A"])["input_ids"].tolist()
    [[0, 20, 15, 11, 2], [0, 5, 2, 1, 1]]
    """
    single = isinstance(sequences, str)
    seqs = [sequences] if isinstance(sequences, str) else list(sequences)
    n = len(seqs)
    if padding is False and return_tensors is not None:
        raise ValueError("padding=False gives ragged output; use return_tensors=None")
    if padding == "max_length" and max_length is None:
        raise ValueError("padding='max_length' needs max_length")
    if on_unknown not in ("error", "unk"):
        raise ValueError(f"`on_unknown` must be 'error' or 'unk', got {on_unknown!r}")
    specials = 2 if add_special_tokens else 0
    codes, lens = _codes(seqs, on_unknown)

    if max_length is not None and (lens + specials > max_length).any():
        if not truncation:
            row = int(np.argmax(lens + specials > max_length))
            raise ValueError(
                f"Sequence {row} has {lens[row]} residues (+{specials} special tokens) > "
                f"max_length={max_length}; pass truncation=True or split it "
                f"(ESM-2 allows {MAX_TOKENS} tokens)"
            )
        codes, lens = _truncate(codes, lens, max(max_length - specials, 0))

    total = lens + specials
    if padding is False:
        out_ids, out_mask, pos = [], [], 0
        for ln in lens.tolist():
            row = codes[pos : pos + ln].tolist()
            pos += ln
            out_ids.append([CLS_ID, *row, EOS_ID] if add_special_tokens else row)
            out_mask.append([1] * len(out_ids[-1]))
        res: dict[str, Any] = {"input_ids": out_ids, "attention_mask": out_mask}
        return {k: v[0] for k, v in res.items()} if single else res

    # max_length is never None with padding="max_length" (refused above)
    width = (
        int(max_length)
        if padding == "max_length" and max_length is not None
        else int(total.max(initial=0))
    )
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    ids = np.full((n, width), PAD_ID, dtype=np.int64)
    first = 1 if add_special_tokens else 0
    cols = np.arange(width)[None, :]
    # Residue slots in row-major order are exactly the concatenation order of `codes`.
    ids[(cols >= first) & (cols < (lens + first)[:, None])] = codes
    if add_special_tokens:
        ids[:, 0] = CLS_ID
        ids[np.arange(n), lens + 1] = EOS_ID
    mask = (cols < total[:, None]).astype(np.int64)
    return _to_tensors({"input_ids": ids, "attention_mask": mask}, return_tensors, single)


def _codes(seqs: list[str], on_unknown: str) -> tuple[np.ndarray, np.ndarray]:
    """The token ids of all residues of `seqs`, concatenated, and the length of each sequence."""
    # Replace written special tokens by one byte each so every token is one byte.
    if any("<" in s for s in seqs):
        seqs_b = [_SPECIAL_RE.sub(lambda m: _SPECIAL_BYTES[m.group(0)], s) for s in seqs]
    else:
        seqs_b = seqs
    lens = np.fromiter(map(len, seqs_b), dtype=np.int64, count=len(seqs_b))
    try:
        buf = "".join(seqs_b).encode("ascii")
    except UnicodeEncodeError as exc:
        if on_unknown == "error":
            raise InvalidSequenceError(f"Non-ASCII character in sequences: {exc}") from None
        buf = "".join(seqs_b).encode("ascii", errors="replace")
    codes = _LUT[np.frombuffer(buf, dtype=np.uint8)]
    bad = codes < 0
    if bad.any():
        if on_unknown == "error":
            _raise_unknown(seqs, int(np.argmax(bad)), np.cumsum(lens) - lens)
        codes = np.where(bad, UNK_ID, codes)
    return codes, lens


def _truncate(codes: np.ndarray, lens: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop the residues past `keep` in each sequence of the flat code array."""
    starts = np.cumsum(lens) - lens
    offs = np.arange(codes.size) - np.repeat(starts, lens)
    return codes[offs < np.repeat(np.minimum(lens, keep), lens)], np.minimum(lens, keep)


def _to_tensors(
    arrays: dict[str, np.ndarray], kind: ReturnTensors, single: bool
) -> dict[str, Any]:
    if kind == "pt":
        torch = require("torch", "torch")
        return {k: torch.from_numpy(v) for k, v in arrays.items()}
    if kind == "tf":
        tf = require("tensorflow", "tf")
        return {k: tf.constant(v) for k, v in arrays.items()}
    if kind == "np":
        return arrays
    if kind is None:
        lists = {
            k: [r[m.astype(bool)].tolist() for r, m in zip(v, arrays["attention_mask"])]
            for k, v in arrays.items()
        }
        return {k: v[0] for k, v in lists.items()} if single else lists
    raise ValueError(f"`return_tensors` must be 'np', 'pt', 'tf' or None, got {kind!r}")


def decode(ids: Sequence[int] | np.ndarray, *, skip_special_tokens: bool = True) -> str:
    """Turn token ids back into a sequence string (special tokens dropped by default)."""
    special = {CLS_ID, PAD_ID, EOS_ID} if skip_special_tokens else set()
    out = []
    for i in np.asarray(ids).reshape(-1).tolist():
        if i in special:
            continue
        out.append(ESM2_TOKENS[i])
    return "".join(out)


def write_vocab(directory: str | os.PathLike[str]) -> Path:
    """Write the ESM-2 `vocab.txt` (one token per line, id order) that `EsmTokenizer` reads."""
    path = Path(directory) / "vocab.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(ESM2_TOKENS), encoding="utf-8")
    return path


def hf_tokenizer(model_max_length: int = MAX_TOKENS) -> PreTrainedTokenizerFast:
    """A transformers `PreTrainedTokenizerFast` (Rust `tokenizers`) with ESM-2 ids.

    Usable as `Trainer(processing_class=...)`, in pipelines and with `save_pretrained`; gives the
    same ids as `EsmTokenizer` on protein sequences, one `<unk>` per unknown character.
    """
    tk = require("tokenizers", "torch")
    transformers = require("transformers", "torch")
    from tokenizers import Regex, models, pre_tokenizers, processors

    vocab = {tok: i for i, tok in enumerate(ESM2_TOKENS)}
    tok = tk.Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # Whitespace is dropped (as EsmTokenizer does), then every character is its own token.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
    )
    tok.add_special_tokens(["<cls>", "<pad>", "<eos>", "<unk>", "<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<cls> $A <eos>",
        pair="<cls> $A <eos> $B <eos>",
        special_tokens=[("<cls>", CLS_ID), ("<eos>", EOS_ID)],
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        cls_token="<cls>",
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        mask_token="<mask>",
        model_input_names=["input_ids", "attention_mask"],
        model_max_length=model_max_length,
    )
