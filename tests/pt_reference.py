"""PyTorch reference models shared by the Keras parity and checkpoint tests (needs torch)."""

from __future__ import annotations

import numpy as np
import torch

from protein_lm.models import load_model

TASKS = ["sequence-classification", "token-classification", "regression"]
# Mixed lengths (padding up to 69 tokens), a <mask> token (token-dropout rescaling) and a
# one-residue sequence.
SEQS = ["MKTAYIAKQRQISFVKSHFSRQ", "MA<mask>LLGKV", "GSHMKVLAAGIVGLLLAAQPAMA" * 3, "W"]


def pt_model(task: str, size: dict, seed: int = 0) -> object:
    """A seeded tiny (or `size`-shaped) transformers ESM-2 with perturbed norms and biases."""
    labels = None if task == "regression" else {0: "H", 1: "E", 2: "C"}
    overrides = (
        {
            "num_hidden_layers": size["num_layers"],
            "hidden_size": size["hidden_size"],
            "num_attention_heads": size["num_heads"],
            "intermediate_size": 4 * size["hidden_size"],
        }
        if size
        else None
    )
    model = load_model("tiny", task, id2label=labels, seed=seed, config_overrides=overrides).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # non-trivial norms and biases, so a mis-mapped one shows
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
    return model


def pt_logits(model: object, batch: dict) -> np.ndarray:
    """Logits of `model` on a numpy batch, as numpy."""
    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
