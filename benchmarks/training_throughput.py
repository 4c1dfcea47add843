"""Training throughput: token-budget, length-grouped batches vs the seed tutorial's batching.

Seed recipe: random batches of 8 sequences, each padded to its longest member. Ours: the
`TokenBudgetBatchSampler` that `protein_lm.pt.training` uses (sequences grouped by length
within shuffled pools, batches sized by a padded-token budget). Both train the same model
(`tiny`, 4 layers x 128, dropout 0, from the same seed) on the same data (FLIP secondary
structure training split) with the same optimiser, on CPU unless --device says otherwise.

Throughput counts real residues per second of forward + backward + AdamW step; padding is work
but not progress. Rounds alternate between the two recipes so a noisy (shared) machine affects
both alike; the median of per-round ratios is printed too, as it resists bursts of load from other
processes. Usage:

    python benchmarks/training_throughput.py [--seconds 60] [--rounds 3] [--batch-tokens 8000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _batches(kind: str, lengths: np.ndarray, batch_tokens: int, seed: int) -> list[list[int]]:
    from protein_lm.batching import TokenBudgetBatchSampler

    if kind == "seed":
        order = np.random.default_rng(seed).permutation(len(lengths))
        return [order[i : i + 8].tolist() for i in range(0, len(order), 8)]
    return list(TokenBudgetBatchSampler(lengths, batch_tokens, shuffle=True, seed=seed))


def _run(kind: str, model, opt, data, lengths, batch_tokens: int, seconds: float, seed: int,
         device: str) -> tuple[int, int, float]:
    """Train for about `seconds`; return (residues, padding tokens, elapsed seconds)."""
    from protein_lm.batching import Collator

    collate = Collator("token-classification", max_length=1024, return_tensors="pt")
    residues = padded = 0
    start = time.perf_counter()
    for batch in _batches(kind, lengths, batch_tokens, seed):
        enc = collate([data[i] for i in batch])
        enc = {k: v.to(device) for k, v in enc.items()}
        model(**enc).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        real = int(enc["attention_mask"].sum())
        residues += real - 2 * len(batch)  # minus <cls>/<eos>
        padded += int(enc["input_ids"].numel()) - real
        if time.perf_counter() - start > seconds:
            break
    return residues, padded, time.perf_counter() - start


def main() -> None:
    """Run the comparison and print tokens/s side by side and their ratio."""
    import torch

    from protein_lm.data import encode_labels, load_secondary_structure
    from protein_lm.models import load_model

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds per recipe per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-tokens", type=int, default=8000)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    train, _ = encode_labels(load_secondary_structure()["train"], "token-classification")
    data = [{"sequence": s, "labels": lab} for s, lab in zip(train["sequence"], train["labels"])]
    lengths = np.array([len(s) for s in train["sequence"]])
    totals = {k: [0, 0, 0.0] for k in ("seed", "budget")}
    models = {}
    for kind in totals:
        model = load_model("tiny", "token-classification", num_labels=3, device=args.device, seed=0)
        models[kind] = (model.train(), torch.optim.AdamW(model.parameters(), lr=1e-3))
        _run(kind, *models[kind], data, lengths, args.batch_tokens, 3.0, 99, args.device)  # warm-up
    round_ratios = []
    for r in range(args.rounds):
        rates = {}
        for kind in totals:
            res, pad, sec = _run(kind, *models[kind], data, lengths, args.batch_tokens,
                                 args.seconds, r, args.device)
            totals[kind] = [totals[kind][0] + res, totals[kind][1] + pad, totals[kind][2] + sec]
            rates[kind] = res / sec
            print(f"round {r + 1} {kind:6s}: {res / sec:8.0f} residues/s", flush=True)
        round_ratios.append(rates["budget"] / rates["seed"])
    rate = {k: v[0] / v[2] for k, v in totals.items()}
    print(f"\n{'recipe':34s} {'residues/s':>10s} {'padding share':>14s}")
    names = {"seed": "seed: random batches of 8, padded",
             "budget": f"ours: token budget {args.batch_tokens}"}
    for kind, (res, pad, _sec) in totals.items():
        print(f"{names[kind]:34s} {rate[kind]:10.0f} {pad / max(pad + res, 1):14.1%}")
    print(f"ratio (ours / seed): {rate['budget'] / rate['seed']:.2f}x over all rounds, median of "
          f"per-round ratios {float(np.median(round_ratios)):.2f}x  "
          f"[device {args.device}, torch threads {torch.get_num_threads()}]")


if __name__ == "__main__":
    main()
