"""Write notebooks/protein_language_modeling.ipynb (outputs stripped). Run from the repo root."""

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell

cells = [
    md("""# Fine-tuning a protein language model (PyTorch)

This is the classic *"Deep Learning With Proteins"* tutorial, rebuilt on `protein_lm` and transformers v5.
We fine-tune an ESM-2 model on two tasks with **real data**:

1. **Sequence classification** — is a protein membrane-bound or soluble? (DeepLoc 1.0)
2. **Per-residue (token) classification** — 3-state secondary structure: helix `H`, strand `E`, coil `C`
   (FLIP / NetSurfP-2.0 split).

Compared with the popular tutorial, four things are done differently, on purpose:

* **Label alignment.** ESM-2 puts `<cls>` in front of every sequence, so residue *i* is token *i+1*. The
  tutorial assigns label *i* to token *i*, shifting every label by one residue. Here `<cls>`, `<eos>`,
  padding and unresolved residues get the ignore label -100.
* **Dynamic, length-grouped batches** sized by a token budget instead of padding everything to 1,024.
* **Honest evaluation.** The best checkpoint is chosen on the *validation* split; the *test* split is
  scored once, at the end.
* **Metrics computed offline** with scikit-learn (accuracy, macro-F1, MCC, Q3) — no hub download.

Smoke mode (CI, `PROTEIN_LM_SMOKE=1`) trains a tiny random ESM-2 on a small subset for a few steps: it
checks the pipeline, not the biology. Full mode fine-tunes `facebook/esm2_t12_35M_UR50D` on all the data
(a GPU makes it minutes instead of hours)."""),
    code("""# Setup: in Colab install the package; SMOKE (set by CI) = tiny model, small subset, CPU, ~1 minute.
import os, sys
if "google.colab" in sys.modules:
    get_ipython().run_line_magic("pip", "install -q 'protein_lm[torch,notebooks] @ git+https://github.com/protein-lm/protein_lm'")
SMOKE = os.environ.get("PROTEIN_LM_SMOKE", "0") == "1"

MODEL = "facebook/esm2_t12_35M_UR50D"  # any ESM-2 hub id or local directory; try esm2_t6_8M for speed
if SMOKE:
    MODEL = "tiny"  # small random ESM-2 built from a config: offline, trains from scratch
RUNS = "runs"  # output directories are written here
print("model:", MODEL, "| smoke mode:", SMOKE)"""),
    md("""## 1. Sequence classification: membrane vs soluble

DeepLoc marks each protein as membrane-bound (`M`), soluble (`S`) or unknown (`U`); we keep `M` and `S`.
`load_deeploc` returns a `datasets.DatasetDict` with `train`, `validation` (a seeded, stratified 10% of the
DeepLoc training file) and the official DeepLoc `test` split, each with columns `id`, `sequence`, `label`."""),
    code("""from collections import Counter
from protein_lm import data

membrane = data.load_deeploc("membrane")
if SMOKE:  # a small subset of short proteins keeps CI fast
    def subset(ds, n):
        return ds.select([i for i, s in enumerate(ds["sequence"]) if len(s) <= 200][:n])
    membrane = {"train": subset(membrane["train"], 64), "validation": subset(membrane["validation"], 16),
                "test": subset(membrane["test"], 32)}
for split, ds in membrane.items():
    print(f"{split:10s} {len(ds):5d} proteins", dict(Counter(ds["label"])))"""),
    md("""### Batching by tokens, not by sequences

Protein lengths vary from a few dozen to thousands of residues. Random batches of 8 padded to the longest
member waste much of each batch on padding; padding everything to 1,024 wastes even more. `protein_lm`
sorts sequences by length inside shuffled pools and fills each batch up to a **token budget**
(`batch_tokens`, padding and special tokens counted), so short proteins travel in big batches and long ones
in small batches. `benchmarks/training_throughput.py` measures the speed-up."""),
    code("""import numpy as np
from protein_lm.batching import token_budget_batches

lengths = np.array([len(s) for s in membrane["train"]["sequence"]])
batches = token_budget_batches(lengths, max_tokens=8000, shuffle=True, seed=0)
sizes = [len(b) for b in batches]
padded = sum((lengths[b].max() + 2) * len(b) for b in batches)
print(f"{len(batches)} batches of {min(sizes)}-{max(sizes)} proteins; "
      f"padding = {1 - (lengths.sum() + 2 * len(lengths)) / padded:.1%} of the batch tokens")"""),
    md("""### Train

`FinetuneConfig` holds every option (all validated up front): the number of steps or epochs, a wall-clock
budget, the learning rate, the token budget, class weights, LoRA, gradient checkpointing, mixed precision
(`precision="auto"`: bf16/fp16 on GPU, fp32 on CPU), the attention backend (`sdpa` by default) and what to
do with sequences over 1,022 residues (`length_policy`: truncate with a warning, or error).

`finetune` evaluates the validation split every `eval_steps`, keeps the checkpoint with the best MCC,
scores the test split once with it, and writes a standard transformers model directory with
`metrics.json`, `training_log.csv` and `training_curves.png`."""),
    code("""from protein_lm.pt.training import FinetuneConfig, finetune

seq_config = FinetuneConfig(
    task="sequence-classification",
    model=MODEL,
    max_steps=8 if SMOKE else None,
    epochs=None if SMOKE else 3,
    eval_steps=4 if SMOKE else None,       # None: evaluate about 10 times per run
    batch_tokens=2000 if SMOKE else 8000,
    learning_rate=None,                    # None: 1e-3 for `tiny` from scratch, 5e-5 for pretrained
    class_weights="balanced",              # membrane proteins are the minority class
    progress=not SMOKE,
)
seq_result = finetune(membrane["train"], membrane["validation"], membrane["test"],
                      config=seq_config, output_dir=f"{RUNS}/pt_membrane", overwrite=True)
print("best step:", seq_result.best_step, "of", seq_result.steps)
print("validation:", {k: round(v, 3) for k, v in seq_result.validation.items()})
print("test:      ", {k: round(v, 3) for k, v in seq_result.test.items()})"""),
    md("""### Training curve and confusion matrix

The loss/metric plot is written by `finetune` itself; the confusion matrix comes from predicting the test
split with the saved model (`protein_lm.pt.predict.predict`, the same code as `protein-lm predict`)."""),
    code("""# NBVAL_IGNORE_OUTPUT
from IPython.display import Image, display
display(Image(filename=f"{RUNS}/pt_membrane/training_curves.png"))"""),
    code("""# NBVAL_IGNORE_OUTPUT
import matplotlib.pyplot as plt
from sklearn.metrics import ConfusionMatrixDisplay
from protein_lm.metrics import classification_metrics, confusion_matrix
from protein_lm.pt.predict import predict

test = membrane["test"]
pred = predict(f"{RUNS}/pt_membrane", dict(zip(test["id"], test["sequence"])))
names = list(pred.class_names)
y_true = [names.index(c) for c in test["label"]]
y_pred = [names.index(c) for c in pred.predictions]
print("test metrics recomputed from the saved model:", classification_metrics(y_true, y_pred))
ConfusionMatrixDisplay(confusion_matrix(y_true, y_pred, len(names)), display_labels=names).plot(cmap="Blues")
plt.title("membrane vs soluble, test split")
plt.show()"""),
    md("""## 2. Per-residue classification: secondary structure

FLIP's secondary-structure set gives one label per residue (`H`, `E`, `C`) and a mask: `0` marks residues
that were not resolved in the crystal structure, whose label means nothing. The model predicts one class per
**token**, so labels must be placed on the right tokens. Here is the start of one training protein:"""),
    code("""from protein_lm.batching import Collator
from protein_lm.data import encode_labels
from protein_lm.sequences import ESM2_TOKENS

ss = data.load_secondary_structure()
if SMOKE:
    ss = {"train": subset(ss["train"], 64), "validation": subset(ss["validation"], 16),
          "test": subset(ss["test"], 32)}
print({split: len(ds) for split, ds in ss.items()})

example, id2label = encode_labels(ss["train"].select([0]), "token-classification")
batch = Collator("token-classification")([{"sequence": example[0]["sequence"], "labels": example[0]["labels"]}])
print("token  id  label  (residue i -> token i+1; -100 = ignored)")
for t in range(8):
    tok = ESM2_TOKENS[batch["input_ids"][0, t]]
    lab = batch["labels"][0, t]
    print(f"{t:5d} {tok:>5s} {lab:5d}", "" if lab < 0 else f"= {id2label[int(lab)]}")"""),
    md("""Token 0 is `<cls>` and gets -100; the first residue (token 1) carries the first label — unless it was
unresolved (mask 0), in which case it also gets -100 and counts neither in the loss nor in Q3. The selection
metric for this task is Q3, the accuracy over labelled residues."""),
    code("""ss_config = FinetuneConfig(
    task="token-classification",
    model=MODEL,
    max_steps=8 if SMOKE else None,
    epochs=None if SMOKE else 2,
    eval_steps=4 if SMOKE else None,
    batch_tokens=2000 if SMOKE else 8000,
    learning_rate=None if SMOKE else 1e-4,
    progress=not SMOKE,
)
ss_result = finetune(ss["train"], ss["validation"], ss["test"], config=ss_config,
                     output_dir=f"{RUNS}/pt_secondary_structure", overwrite=True)
print("validation Q3:", round(ss_result.validation["q3"], 3), "| test Q3:", round(ss_result.test["q3"], 3))"""),
    code("""# NBVAL_IGNORE_OUTPUT
display(Image(filename=f"{RUNS}/pt_secondary_structure/training_curves.png"))

test = ss["test"]
pred = predict(f"{RUNS}/pt_secondary_structure", dict(zip(test["id"], test["sequence"])))
names = list(pred.class_names)
y_true, y_pred = [], []
for row, p in zip(test, pred.predictions):  # labelled residues only
    for t, q, m in zip(row["label"], p, row["mask"]):
        if m == "1":
            y_true.append(names.index(t))
            y_pred.append(names.index(q))
ConfusionMatrixDisplay(confusion_matrix(y_true, y_pred, len(names)), display_labels=names).plot(cmap="Blues")
plt.title("secondary structure, test residues")
plt.show()
print("per-residue predictions for", test[0]["id"])
print(test[0]["sequence"][:60])
print(pred.predictions[0][:60])"""),
    md("""## 3. Use the model elsewhere

The output directory is a plain transformers model directory (safetensors weights, `config.json` with
`id2label`, and the ESM-2 tokenizer), so it loads without `protein_lm`:"""),
    code("""import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

path = f"{RUNS}/pt_secondary_structure"
model = AutoModelForTokenClassification.from_pretrained(path).eval()
tokenizer = AutoTokenizer.from_pretrained(path)
seq = "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ"
with torch.no_grad():
    logits = model(**tokenizer(seq, return_tensors="pt")).logits[0, 1:-1]  # drop <cls>, <eos>
print(seq)
print("".join(model.config.id2label[i] for i in logits.argmax(-1).tolist()))"""),
    md("""## 4. Beyond this notebook

* **Command line:** the same runs from a shell, on CSV/TSV files with `sequence,label[,id,mask]` columns:
  ```
  protein-lm finetune --task token-classification --model facebook/esm2_t12_35M_UR50D \\
      --train train.csv --validation val.csv --test test.csv --output-dir runs/ss3 --epochs 2
  protein-lm predict --model runs/ss3 new_proteins.fasta -o predictions.csv
  ```
* **Several GPUs:** the same command under `torchrun --nproc_per_node 4 -m protein_lm.cli finetune ...`
  runs DDP; each process takes every 4th token-budget batch.
* **Bigger models on small GPUs:** `--lora` trains low-rank adapters (merged into the saved model),
  `--gradient-checkpointing` trades compute for memory, `--precision bf16` halves activation memory.
* **Regression** (e.g. the BLAT beta-lactamase fitness scan) uses `task="regression"` and reports
  Spearman and Pearson correlations."""),
]

nb = nbf.v4.new_notebook(cells=cells, metadata={
    "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
    "language_info": {"name": "python"},
})
nbf.write(nb, "notebooks/protein_language_modeling.ipynb")
