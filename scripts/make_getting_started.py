import nbformat as nbf

cells = [
    nbf.v4.new_markdown_cell("""# Getting started with protein_lm

This notebook validates a FASTA file, tokenises it exactly as ESM-2 expects, loads the bundled real data
sets and plots their length and label distributions. It needs no model and no network."""),
    nbf.v4.new_code_cell("""# Setup: in Colab install the package; SMOKE (set by CI) = small subsets, CPU, seconds.
import os, sys
if "google.colab" in sys.modules:
    get_ipython().run_line_magic("pip", "install -q 'protein_lm[notebooks] @ git+https://github.com/protein-lm/protein_lm'")
SMOKE = os.environ.get("PROTEIN_LM_SMOKE", "0") == "1"
import protein_lm
from protein_lm import data
print("protein_lm", protein_lm.__version__, "| smoke mode:", SMOKE)"""),
    nbf.v4.new_markdown_cell("""## 1. Validate a FASTA file

`read_fasta` handles multi-line records, blank lines and Windows line endings, and reports duplicate ids and
empty records with their line numbers. Every sequence goes through `validate`: lowercase is upper-cased,
whitespace and digits are removed, a terminal `*` is stripped, gaps are removed, and any other character is an
error that names the record and the position."""),
    nbf.v4.new_code_cell("""from protein_lm import read_fasta, validate, InvalidSequenceError

records = read_fasta(data.data_path("some_proteins.fasta"))
print(len(records), "records; first:", records[0].id, len(records[0].sequence), "aa")
print(validate("mkt ayi akq*"))
try:
    validate("MKTJAYI", "my_protein")
except InvalidSequenceError as err:
    print("error:", err)"""),
    nbf.v4.new_markdown_cell("""## 2. Tokenise

ESM-2 has 33 tokens: `<cls>`=0, `<pad>`=1, `<eos>`=2, `<unk>`=3, `<mask>`=32. A sequence of L residues becomes
L+2 tokens, so **residue i sits at token i+1** — per-residue labels must be shifted accordingly.
`protein_lm.encode` gives the same ids as transformers' `EsmTokenizer` and fair-esm, over 100x faster."""),
    nbf.v4.new_code_cell("""from protein_lm import encode

batch = encode([r.sequence for r in records[:3]])
print(batch["input_ids"].shape)
print(batch["input_ids"][:, :10])
print(batch["attention_mask"].sum(axis=1), [len(r.sequence) + 2 for r in records[:3]])
assert (batch["attention_mask"].sum(axis=1) == [len(r.sequence) + 2 for r in records[:3]]).all()"""),
    nbf.v4.new_markdown_cell("""## 3. The bundled real data sets

* **DeepLoc** subcellular localisation (10 classes) and membrane vs soluble;
* **FLIP** 3-state secondary structure (H helix, E strand, C coil) with a mask of unresolved residues;
* the **BLAT** beta-lactamase deep mutational scan (4,996 single mutants with measured fitness)."""),
    nbf.v4.new_code_cell("""loc = data.load_deeploc()
ss = data.load_secondary_structure()
blat = data.load_blat()
print(loc)
print({k: len(v) for k, v in ss.items()})
print(len(blat.data), "BLAT mutants; first:", blat.data[0])"""),
    nbf.v4.new_markdown_cell("""## 4. Length and label distributions

ESM-2 reads at most 1,024 residues; longer sequences need an explicit policy (error, truncation with a warning,
or sliding windows). The label plots show the class balance that a majority-class baseline would exploit."""),
    nbf.v4.new_code_cell("""# NBVAL_IGNORE_OUTPUT
from collections import Counter
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 3, figsize=(15, 3.5))
axes[0].hist([len(s) for s in loc["train"]["sequence"]], bins=50, alpha=0.6, label="DeepLoc train")
axes[0].hist([len(s) for s in ss["train"]["sequence"]], bins=50, alpha=0.6, label="FLIP SS3 train")
axes[0].axvline(1024, color="k", ls="--", label="ESM-2 limit")
axes[0].set(xlabel="length (residues)", ylabel="sequences", title="Sequence lengths")
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
nb = nbf.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}, "language_info": {"name": "python"}})
nbf.write(nb, "notebooks/getting_started.ipynb")
