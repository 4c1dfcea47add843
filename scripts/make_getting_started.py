"""Write notebooks/getting_started.ipynb (outputs stripped). Run from the repo root."""

from notebook_common import badge, code, md, setup_code, write

NAME = "getting_started.ipynb"

cells = [
    md(f"""# Getting started with protein_lm

{badge(NAME)}

This notebook validates a FASTA file, tokenises it exactly as ESM-2 expects, loads the bundled real data
sets and plots their length and label distributions. It needs no model and no network.

> 🧬 **Proteins for ML readers.** A protein is a chain of amino acids: 20 standard kinds, each written as
> one letter (`A` alanine, `C` cysteine, ... `Y` tyrosine), so a protein is a string such as
> `MKTAYIAKQR...`. Each position is a **residue**. Sequences are exchanged as **FASTA** files: a header
> line `>id description`, then the letters. The chain folds into a 3D shape that decides its function.
>
> 🤖 **Protein language models for biologists.** ESM-2 reads a sequence the way a text model reads a
> sentence: each residue becomes a **token** (an integer id), and the model was *pretrained* on millions of
> natural proteins to guess hidden residues from their context. What it learns along the way (which
> residues interact, what is conserved) can then be *transferred* to new tasks with little labelled data:
> the other notebooks fine-tune it, fold with it, and score mutations with it."""),
    code(setup_code("small subsets, CPU, seconds") + """
import protein_lm
from protein_lm import data
print("protein_lm", protein_lm.__version__, "| smoke mode:", SMOKE)"""),
    md("""## 1. Validate a FASTA file

`read_fasta` handles multi-line records, blank lines and Windows line endings, and reports duplicate ids and
empty records with their line numbers. Every sequence goes through `validate`: lowercase is upper-cased,
whitespace and digits are removed, a terminal `*` is stripped, gaps are removed, and any other character is an
error that names the record and the position."""),
    code("""from protein_lm import read_fasta, validate, InvalidSequenceError

records = read_fasta(data.data_path("some_proteins.fasta"))
print(len(records), "records; first:", records[0].id, len(records[0].sequence), "aa")
print(validate("mkt ayi akq*"))
try:
    validate("MKTJAYI", "my_protein")
except InvalidSequenceError as err:
    print("error:", err)"""),
    md("""## 2. Tokenise

ESM-2 has 33 tokens: `<cls>`=0, `<pad>`=1, `<eos>`=2, `<unk>`=3, `<mask>`=32. A sequence of L residues becomes
L+2 tokens, so **residue i sits at token i+1** — per-residue labels must be shifted accordingly.
`protein_lm.encode` gives the same ids as transformers' `EsmTokenizer` and fair-esm, over 100x faster."""),
    code("""from protein_lm import encode

batch = encode([r.sequence for r in records[:3]])
print(batch["input_ids"].shape)
print(batch["input_ids"][:, :10])
print(batch["attention_mask"].sum(axis=1), [len(r.sequence) + 2 for r in records[:3]])
assert (batch["attention_mask"].sum(axis=1) == [len(r.sequence) + 2 for r in records[:3]]).all()"""),
    md("""## 3. The bundled real data sets

* **DeepLoc** subcellular localisation (10 compartments of the cell, e.g. nucleus, mitochondrion,
  extracellular) and membrane-bound vs soluble;
* **FLIP** 3-state secondary structure (H helix, E strand, C coil: the local shape of the chain at each
  residue, read from solved 3D structures) with a mask of residues not resolved in the experiment;
* the **BLAT** beta-lactamase deep mutational scan (4,996 single mutants with measured fitness)."""),
    code("""loc = data.load_deeploc()
ss = data.load_secondary_structure()
blat = data.load_blat()
print(loc)
print({k: len(v) for k, v in ss.items()})
print(len(blat.data), "BLAT mutants; first:", blat.data[0])"""),
    md("""## 4. Length and label distributions

ESM-2 reads at most 1,022 residues (1,024 tokens with `<cls>` and `<eos>`); longer sequences need an explicit policy (error, truncation with a warning,
or sliding windows). The label plots show the class balance that a majority-class baseline would exploit.

> 🤖 A **majority-class baseline** always predicts the most common class. Any model must beat it to have
> learned something; on unbalanced data plain accuracy can look high while the model learned nothing,
> which is why the fine-tuning notebooks also report macro-F1 and MCC."""),
    code("""# NBVAL_IGNORE_OUTPUT
from collections import Counter
import matplotlib.pyplot as plt
import numpy as np

fig, axes = plt.subplots(1, 3, figsize=(15, 3.5))
from protein_lm.limits import MAX_RESIDUES  # 1,022: the one place this limit is written
bins = np.geomspace(10, 20000, 50)  # log-spaced: a few very long proteins would squash a linear axis
axes[0].hist([len(s) for s in loc["train"]["sequence"]], bins=bins, alpha=0.6, label="DeepLoc train")
axes[0].hist([len(s) for s in ss["train"]["sequence"]], bins=bins, alpha=0.6, label="FLIP SS3 train")
axes[0].axvline(MAX_RESIDUES, color="k", ls="--", label=f"ESM-2 limit ({MAX_RESIDUES:,} residues)")
axes[0].set(xscale="log", xlabel="length (residues, log scale)", ylabel="sequences", title="Sequence lengths")
axes[0].legend()
counts = Counter(loc["train"]["label"])
axes[1].barh(list(counts), list(counts.values()))
axes[1].set(title="DeepLoc train: localisation", xlabel="sequences")
res = Counter(c for lab, m in zip(ss["test"]["label"], ss["test"]["mask"]) for c, k in zip(lab, m) if k == "1")
axes[2].bar(list(res), list(res.values()))
axes[2].set(title="FLIP SS3 test: labelled residues", ylabel="residues")
plt.tight_layout()
plt.show()
total = sum(res.values())
print("majority-class Q3 on the test split:", round(max(res.values()) / total, 3))"""),
]
write(cells, NAME)
