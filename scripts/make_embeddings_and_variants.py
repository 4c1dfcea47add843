"""Write notebooks/embeddings_and_variants.ipynb (outputs stripped). Run from the repo root."""

from notebook_common import badge, code, md, setup_code, write

NAME = "embeddings_and_variants.ipynb"

cells = [
    md(f"""# Embeddings, contact maps and zero-shot variant effects

{badge(NAME)}

A protein language model is useful *without* fine-tuning:

1. **Embeddings** — the mean of the last layer's residue vectors is a fixed-size description of a protein.
   A linear probe (scikit-learn) on DeepLoc embeddings predicts the subcellular compartment.
2. **Zero-shot variant effects** — the masked-LM head scores a mutation by how much more (or less) likely
   the model finds the mutant letter than the wild-type one. We compare the scores with the measured
   fitness of 4,996 TEM-1 beta-lactamase mutants (BLAT deep mutational scan) by Spearman correlation.
3. **Contact maps** — ESM-2's contact head turns attention maps into residue-residue contact probabilities.

Smoke mode (CI, `PROTEIN_LM_SMOKE=1`) uses a tiny *random* ESM-2 on a small subset: it checks that the
pipeline runs, and its numbers mean little (a probe on random embeddings sees mostly amino-acid composition, which beats
the majority class a little; Spearman near 0; a contact map
of noise; with this random model, "contacts" above 0.5 are everywhere). Full mode uses `facebook/esm2_t33_650M_UR50D` (set `MODEL` to `facebook/esm2_t12_35M_UR50D` for a
faster, weaker run); a GPU makes it minutes.

## Primer

> 🤖 **Embeddings for biologists.** Inside the model every residue is a vector of a few hundred numbers
> (an *embedding*) that summarises what the model inferred about it from the whole sequence. Averaging
> them over the residues gives one vector per protein. A **linear probe** is the simplest classifier on
> top (here logistic regression): if it works, the information was already in the embedding.
>
> 🧬 **Variant effects for ML readers.** A *mutation* such as `H24C` replaces the residue `H` at
> position 24 by `C`. A **deep mutational scan** (DMS) measures the effect of thousands of such mutations on
> the protein's function (here: how well bacteria carrying each mutant of the TEM-1 enzyme survive an
> antibiotic). A language model scores a mutation *zero-shot* (no training on the scan) by how plausible
> it finds the new residue; the **Spearman** rank correlation with the measurements says how well those
> scores order the mutants. A **contact map** marks pairs of residues that are close in 3D."""),
    code(setup_code("tiny model, small subset, CPU, ~1 minute") + """

import torch
from protein_lm.models import load_model, resolve_device

MODEL = "facebook/esm2_t33_650M_UR50D"  # or facebook/esm2_t12_35M_UR50D, or a local model directory
if SMOKE:
    MODEL = "tiny"  # small random ESM-2 built from a config: offline, untrained
MODEL = MODEL_OVERRIDE or MODEL
DEVICE = resolve_device()  # "cuda" when a GPU is available (Colab: Runtime > Change runtime type > GPU)
DTYPE = torch.float16 if DEVICE == "cuda" else torch.float32  # explicit: never a silent .half()
model = load_model(MODEL, "masked-lm", device=DEVICE, dtype=DTYPE).eval()
print("model:", MODEL, "| device:", DEVICE, "| precision:", str(DTYPE).removeprefix("torch."),
      "| smoke mode:", SMOKE)"""),
    md("""## 1. Embed the DeepLoc proteins

`load_deeploc("localization")` gives `train` / `validation` / `test` splits with 10 compartments
(the 23 dual-location records are dropped). `embed` sorts sequences by length and batches them by a token
budget; on a GPU it pads batches, on CPU it batches only sequences of identical length (no padding work,
see `benchmarks/embedding_throughput.py`). The mean embedding averages residues only: `<cls>`, `<eos>` and
padding are excluded.

DeepLoc has proteins longer than ESM-2's 1,022-residue window. `long_policy="window"` embeds overlapping
windows and averages them per residue; the default, `"error"`, stops and names the record instead."""),
    code("""from collections import Counter
import numpy as np
from protein_lm import data
from protein_lm.embeddings import embed

deeploc = data.load_deeploc("localization")
if SMOKE:  # seeded samples of short proteins, every compartment in every split
    sizes = {"train": 120, "validation": 40, "test": 60}
    deeploc = {k: data.stratified_subset(deeploc[k], n, max_length=600) for k, n in sizes.items()}
for split, ds in deeploc.items():
    print(f"{split:10s} {len(ds):5d} proteins", dict(sorted(Counter(ds["label"]).items())))

X, y = {}, {}
for split, ds in deeploc.items():
    emb = embed(model, dict(zip(ds["id"], ds["sequence"])), long_policy="window",
                max_tokens=16384 if DEVICE == "cuda" else 4096, progress=not SMOKE)
    X[split], y[split] = emb.mean[emb.layers[0]], np.array(ds["label"])
    print(f"{split:10s} {X[split].shape[0]:5d} proteins x {X[split].shape[1]} dims")
print("most common in train:", Counter(y["train"].tolist()).most_common(3))"""),
    md("""For many thousands of sequences, write to disk instead: `embed_to_file` (CLI: `protein-lm embed`) cuts
the input into shards, writes each atomically and skips finished shards when rerun after an interruption.
The output can be `.npz`, `.npy`, `.parquet` or a folder of shards, read back with `load_embeddings`."""),
    code("""import tempfile
from protein_lm.embedding_store import embed_to_file, load_embeddings

records = dict(zip(deeploc["test"]["id"][:8], deeploc["test"]["sequence"][:8]))
path = embed_to_file(model, records, os.path.join(tempfile.mkdtemp(), "test8.npz"), shard_size=4,
                     long_policy="window", progress=False)
print(path.name, load_embeddings(path).mean[model.config.num_hidden_layers].shape)"""),
    md("""## 2. A linear probe on the embeddings

Standardise, then logistic regression; the regularisation strength is picked on the **validation** split,
and the **test** split is scored once. The majority class is the baseline to beat."""),
    code("""from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from protein_lm.metrics import classification_metrics

classes = sorted(set(y["train"]))
to_id = {c: i for i, c in enumerate(classes)}
enc = {k: np.array([to_id.get(v, -1) for v in vals]) for k, vals in y.items()}

best = None
for C in (0.01, 0.1, 1.0):
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    probe.fit(X["train"], enc["train"])
    val = classification_metrics(enc["validation"], probe.predict(X["validation"]))
    print(f"C={C:<5} validation accuracy {val['accuracy']:.3f}  macro-F1 {val['macro_f1']:.3f}")
    if best is None or val["accuracy"] > best[0]:
        best = (val["accuracy"], C, probe)
_, C, probe = best
test = classification_metrics(enc["test"], probe.predict(X["test"]))
majority = np.mean(enc["test"] == Counter(enc["train"]).most_common(1)[0][0])
print(f"test (C={C}): accuracy {test['accuracy']:.3f}, macro-F1 {test['macro_f1']:.3f}, MCC {test['mcc']:.3f}"
      f" | majority-class accuracy {majority:.3f}")"""),
    md("""## 3. A 2-D view of the embedding space

PCA of the test embeddings, coloured by compartment; each axis says how much of the embeddings' variance it
shows. With a pretrained model, compartments such as extracellular, nucleus and mitochondrion form visible
regions. With the random smoke model they do not: what the picture can show there is only that the
embeddings are not degenerate (the points spread, and PC 1 does not hold all the variance)."""),
    code("""# NBVAL_IGNORE_OUTPUT
import matplotlib.pyplot as plt
from sklearn.decomposition import PCA

pca = PCA(n_components=2, random_state=0)
xy = pca.fit_transform(StandardScaler().fit_transform(X["test"]))
var = pca.explained_variance_ratio_  # share of the embedding's variance each axis shows
fig, ax = plt.subplots(figsize=(7, 5))
for c in classes:
    sel = y["test"] == c
    ax.scatter(xy[sel, 0], xy[sel, 1], s=8, label=c)
ax.set(xlabel=f"PC 1 ({var[0]:.0%} of variance)", ylabel=f"PC 2 ({var[1]:.0%} of variance)",
       title=f"DeepLoc test embeddings ({MODEL})")
ax.legend(fontsize=7, markerscale=2, bbox_to_anchor=(1, 1))
plt.tight_layout()"""),
    md("""## 4. Zero-shot variant effects on the BLAT scan

`load_blat()` returns the TEM-1 wild type, its residue numbering (`offset=24`: the first residue is number 24,
as in the mutant names such as `H24C`), and 4,996 mutants with fitness at 2,500 µg/mL ampicillin. Every
mutant's wild-type letter is checked against the sequence before scoring.

* **wt-marginals**: one forward pass on the wild type; score = log p(mutant) - log p(wild type) at the site.
* **masked-marginals**: the same with the site masked (one pass per mutated position, batched); usually
  the best zero-shot score (Meier et al. 2021).

For pretrained ESM models, Meier et al. (2021) report Spearman correlations of roughly 0.7 on this
scan. The random smoke model has learned nothing, so its Spearman (about +0.06 and +0.12 when we ran it)
carries no biological meaning."""),
    code("""from protein_lm.variants import evaluate_dms

blat = data.load_blat()
print(blat.name, len(blat.wild_type), "residues, offset", blat.offset, "|", len(blat.data), "mutants")
result = evaluate_dms(model, blat, strategies=("wt-marginals", "masked-marginals"))
for strategy, rho in result.spearman.items():
    print(f"{strategy:17s} Spearman {rho:+.3f}  ({result.n_scored} mutants)")"""),
    code("""# NBVAL_IGNORE_OUTPUT
fig, ax = plt.subplots(figsize=(5, 4))
ax.scatter(result.scores["masked-marginals"], np.asarray(blat.data["label"]), s=3, alpha=0.4)
ax.set(xlabel="masked-marginal score (nats)", ylabel="fitness at 2,500 µg/mL ampicillin",
       title=f"BLAT: Spearman {result.spearman['masked-marginals']:+.2f}")
plt.tight_layout()"""),
    md("""Single variants of your own: `score_mutations(model, wild_type, ["H24C", "H24C:E26K"], offset=24)`
(multi-mutants are scored additively). From the command line:

```
protein-lm score --model facebook/esm2_t33_650M_UR50D --fasta BLAT_ECOLX.fasta \\
    --mutations BLAT_ECOLX_Ranganathan2015.csv --offset 24 --strategy masked-marginals -o scores.csv
```"""),
    code("""from protein_lm.variants import score_mutations

for s in score_mutations(model, blat.wild_type, ["H24C", "H24C:E26K"], offset=blat.offset):
    print(f"{s.mutant:10s} {s.score:+.3f} nats ({s.strategy})")"""),
    md("""## 5. A contact map

`embed(..., contacts=True)` runs the contact head (it needs attention maps, so the model switches to eager
attention for that call and back). Upper triangle: all pairs; lower triangle: pairs at least 6 residues
apart. A pretrained model shows the secondary-structure pattern: a band along the diagonal for helices,
lines perpendicular to it for beta hairpins."""),
    code("""# NBVAL_IGNORE_OUTPUT
from protein_lm.viz import plot_contact_map

cm = embed(model, {"BLAT_ECOLX": blat.wild_type}, contacts=True, progress=False).contacts[0]
print("contact map", cm.shape, "| pairs with p > 0.5 and |i-j| >= 6:",
      int(((cm > 0.5) & (np.abs(np.subtract.outer(np.arange(len(cm)), np.arange(len(cm)))) >= 6)).sum() // 2))
plot_contact_map(cm, title=f"TEM-1 beta-lactamase ({MODEL})");"""),
    md("""## fair-esm checkpoints

Have fair-esm `.pt` files? `protein_lm.convert.fairesm_to_transformers("esm2_t33_650M_UR50D.pt", "esm2_650M_hf")`
writes a transformers model directory that every tool here loads (`load_model("esm2_650M_hf")`), and
`transformers_to_fairesm(...)` goes back. The conversion is tested to reproduce logits, embeddings and
contacts within 1e-5."""),
]

write(cells, NAME)
