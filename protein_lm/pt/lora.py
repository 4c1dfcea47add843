"""LoRA adapters (peft) on an ESM-2 classifier: wrap a model, recognise a wrapped one.

Kept apart from `protein_lm.pt.trainer` (which imports torch and transformers at the top) so that
`protein_lm.pt.training` can re-export `is_peft_model` and still import without the torch extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from protein_lm.errors import require

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel

__all__ = ["is_peft_model", "wrap_lora"]


def is_peft_model(model: object) -> bool:
    """True for a peft (LoRA) wrapper."""
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def wrap_lora(model: PreTrainedModel, task: str, rank: int) -> PeftModel:
    """`model` with rank-`rank` LoRA adapters; peft is an optional dependency."""
    peft = require("peft", "torch")
    token = task == "token-classification"
    task_type = peft.TaskType.TOKEN_CLS if token else peft.TaskType.SEQ_CLS
    # Adapters on attention and feed-forward projections; the new head is fully trained (peft's
    # SEQ_CLS/TOKEN_CLS task types mark `classifier` as modules_to_save).
    lora = peft.LoraConfig(
        task_type=task_type,
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.0,
        target_modules=["query", "key", "value", "dense"],
    )
    return peft.get_peft_model(model, lora)
