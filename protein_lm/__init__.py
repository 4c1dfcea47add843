"""protein_lm: fine-tune ESM protein language models, fold with ESMFold, embed and score variants.

`import protein_lm` needs only numpy: torch, tensorflow, transformers and biotite are imported by
the modules that use them, and a missing one raises `MissingExtraError` naming the pip extra.
"""

from protein_lm.errors import (
    DataNotFoundError,
    InvalidInputError,
    InvalidSequenceError,
    MissingExtraError,
    ModelNotFoundError,
    ProteinLMError,
)
from protein_lm.sequences import FastaRecord, read_fasta, validate, write_fasta
from protein_lm.tokenization import decode, encode

__all__ = [
    "__version__",
    "DataNotFoundError",
    "InvalidInputError",
    "InvalidSequenceError",
    "MissingExtraError",
    "ModelNotFoundError",
    "ProteinLMError",
    "FastaRecord",
    "read_fasta",
    "validate",
    "write_fasta",
    "encode",
    "decode",
]

__version__ = "0.1.0"

# Heavier entry points, imported on first attribute access so `import protein_lm` stays light
# (no torch, tensorflow, transformers or datasets until one of these is used).
_LAZY = {
    "load_model": "protein_lm.models",
    "load_deeploc": "protein_lm.data",
    "load_secondary_structure": "protein_lm.data",
    "load_blat": "protein_lm.data",
    "FinetuneConfig": "protein_lm.pt.training",
    "finetune": "protein_lm.pt.training",
    "predict": "protein_lm.pt.predict",
    "fold": "protein_lm.folding.esmfold",
    "FoldOptions": "protein_lm.folding.options",
    "load_folding_model": "protein_lm.folding.esmfold",
    "embed": "protein_lm.embeddings",
    "score_mutations": "protein_lm.variants",
    "evaluate_dms": "protein_lm.variants",
}
__all__ += list(_LAZY)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'protein_lm' has no attribute {name!r}")
