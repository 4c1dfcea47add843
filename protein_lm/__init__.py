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
