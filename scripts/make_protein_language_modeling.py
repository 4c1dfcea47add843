"""Write notebooks/protein_language_modeling.ipynb (outputs stripped). Run from the repo root."""

from notebook_common import badge, code, md, setup_code, write

NAME = "protein_language_modeling.ipynb"

cells = [
    md(f"""# Fine-tuning a protein language model (PyTorch)

{badge(NAME)}

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

It is written for two readers: biologists new to machine learning and ML people new to biology. Short
**primers** (boxes starting with 🧬 or 🤖) explain each idea where it first appears; skip the ones you know.

Smoke mode (CI, `PROTEIN_LM_SMOKE=1`) trains a tiny *random* ESM-2 on small class-balanced subsets: the
per-residue task visibly learns in about a minute even from scratch; the sequence-level task cannot (see
section 1). Full mode fine-tunes `facebook/esm2_t12_35M_UR50D` on all the data (a GPU makes it minutes
instead of hours)."""),
    md("""> 🧬 **Proteins for ML readers.** A protein is a chain of *amino acids*; 20 kinds exist, each written as
> one letter (`M` methionine, `K` lysine, ...), so a protein is a string such as `MKTAYIAKQR...` of 50 to
> a few thousand letters. Each position in the chain is called a **residue**. The chain folds into a 3D
> shape that determines what the protein does. Where a protein works in the cell (its **localisation**:
> nucleus, mitochondrion, cell membrane, outside the cell...) and which parts of the chain form helices
> or strands (its **secondary structure**) are both written in the sequence, but not in any simple rule.
>
> 🤖 **Pretraining and transfer learning for biologists.** ESM-2 was *pretrained* on ~65 million natural
> protein sequences with one self-supervised exercise: hide 15% of the letters and guess them from the
> rest (*masked language modelling*). To get good at it the network has to learn which residues interact,
> what is conserved, and what folds. *Fine-tuning* (transfer learning) then adds a small new output layer
> (a *head*) for our task and trains everything briefly on a few thousand labelled examples: the
> knowledge from pretraining transfers, which is why so little labelled data is enough."""),
    code(setup_code("tiny model, small subset, CPU, ~1 minute") + """
import protein_lm as plm

MODEL = "facebook/esm2_t12_35M_UR50D"  # any ESM-2 hub id or local directory; try esm2_t6_8M for speed
if SMOKE:
    MODEL = "tiny"  # small random ESM-2 built from a config: offline, trains from scratch
MODEL = MODEL_OVERRIDE or MODEL
RUNS = "runs"  # output directories are written here
from protein_lm.models import resolve_device
DEVICE = resolve_device()  # "cuda" when a GPU is available; Colab: Runtime > Change runtime type > GPU
print("model:", MODEL, "| device:", DEVICE, "| precision:", "mixed bf16/fp16" if DEVICE == "cuda" else "fp32",
      "| smoke mode:", SMOKE, "| max steps:", MAX_STEPS)"""),
    md("""## 1. Sequence classification: membrane vs soluble

DeepLoc marks each protein as membrane-bound (`M`: it sits in one of the cell's lipid membranes, usually
with stretches of water-repelling residues crossing it), soluble (`S`: it floats in the cell's water) or
unknown (`U`); we keep `M` and `S`.
`load_deeploc` returns a `datasets.DatasetDict` with `train`, `validation` (a seeded, stratified 10% of the
DeepLoc training file) and the official DeepLoc `test` split, each with columns `id`, `sequence`, `label`. In smoke mode `stratified_subset` takes a small seeded subset
of short proteins with **every class in every split** (a metric on a split without one class means nothing).

**Where the data come from.** DeepLoc 1.0 (Almagro Armenteros et al., *Bioinformatics* 2017): eukaryotic
UniProt proteins with experimentally supported localisations; its authors partitioned the proteins by
sequence homology, so test proteins are not close relatives of training proteins. FLIP's secondary-structure
set (Dallago et al., *NeurIPS Datasets and Benchmarks* 2021) uses the NetSurfP-2.0 chains (Klausen et al.,
*Proteins* 2019), whose test chains were also chosen to have low sequence identity to the training chains.

> 🤖🧬 **Why sequence identity matters (leakage).** Proteins come in families of relatives with similar
> sequences and functions. If a test protein has a 90%-identical cousin in the training set, predicting it is
> closer to looking up the answer than to generalising, and the test score flatters the model. Both test
> splits here were built against that. Our *validation* split, however, is a random 10% of the DeepLoc
> training file, so it can hold close relatives of training proteins: use it to pick checkpoints, and quote
> the test split."""),
    code("""from collections import Counter
from protein_lm.data import stratified_subset

membrane = plm.load_deeploc("membrane")
if SMOKE:  # small, class-balanced subsets of short proteins keep CI fast
    sizes = {"train": 64, "validation": 16, "test": 32}
    membrane = {k: stratified_subset(membrane[k], n, max_length=200) for k, n in sizes.items()}
for split, ds in membrane.items():
    print(f"{split:10s} {len(ds):5d} proteins", dict(sorted(Counter(ds["label"]).items())))"""),
    md("""### Your own data (the section you change)

Any CSV or TSV with a `sequence` and a `label` column works (optional `id`; for per-residue tasks `label` is
a string as long as the sequence, plus an optional 0/1 `mask`). `read_table` checks every row before
anything trains and names the file, row and field of a problem. Here we write a small table from DeepLoc to
show the format; point `MY_TABLE` at your own file and pass the result to the same `finetune` call."""),
    code("""from protein_lm.data import read_table, write_table

MY_TABLE = f"{RUNS}/my_proteins.csv"  # <- your file here
write_table(membrane["train"].select(range(40)), MY_TABLE)
print("".join(open(MY_TABLE).readlines()[:3]), "...")
mine = read_table(MY_TABLE, "sequence-classification")
mine = mine.train_test_split(test_size=0.25, seed=0)  # or read a separate validation file
print({k: len(v) for k, v in mine.items()}, "-> plm.finetune(mine['train'], mine['test'], config=...)")"""),
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

> 🤖 **What training does.** For each protein the model outputs one raw score per class, the **logits**;
> a softmax turns them into probabilities. The **loss** (cross-entropy) is small when the true class gets
> a high probability. Each optimiser **step** takes a batch, measures the loss, and nudges every weight a
> little in the direction that lowers it; the **learning rate** sets how big the nudge is. **AdamW** is the
> standard optimiser for transformers (it adapts the step size per weight and adds *weight decay*, a mild
> pull of the weights towards zero that limits overfitting). Training on the training split while checking
> a separate **validation** split shows whether the model learns something general or memorises.

**Which ESM-2, and how much memory.** Parameters from the model cards; weight memory is parameters x 4 bytes
(fp32) or x 2 (fp16/bf16). Training needs about 4x the fp32 weights (weights, gradients, two AdamW moments)
plus activations, which `batch_tokens` sets: halve it if the GPU runs out of memory. This project has not
timed these notebooks on a T4; on CPU only the 8M and 35M models are practical.

| model | layers | parameters | weights fp32 / fp16 |
|---|---|---|---|
| `facebook/esm2_t6_8M_UR50D` | 6 | 8M | 0.03 / 0.015 GB |
| `facebook/esm2_t12_35M_UR50D` | 12 | 35M | 0.14 / 0.07 GB |
| `facebook/esm2_t30_150M_UR50D` | 30 | 150M | 0.6 / 0.3 GB |
| `facebook/esm2_t33_650M_UR50D` | 33 | 650M | 2.6 / 1.3 GB |
| `facebook/esm2_t36_3B_UR50D` | 36 | 3B | 11.4 / 5.7 GB |

`FinetuneConfig` holds every option (all validated up front): the number of steps or epochs, a wall-clock
budget, the learning rate, the token budget, class weights, LoRA, gradient checkpointing, mixed precision
(`precision="auto"`: bf16/fp16 on GPU, fp32 on CPU), the attention backend (`sdpa` by default) and what to
do with sequences over 1,022 residues (`length_policy`: truncate with a warning, or error).

`finetune` evaluates the validation split every `eval_steps`, keeps the checkpoint with the best MCC,
scores the test split once with it, and writes a standard transformers model directory with
`metrics.json`, `training_log.csv` and `training_curves.png`."""),
    code("""seq_config = plm.FinetuneConfig(
    task="sequence-classification",
    model=MODEL,
    max_steps=8 if SMOKE else MAX_STEPS,
    epochs=None if SMOKE or MAX_STEPS else 3,
    eval_steps=2 if SMOKE else MAX_STEPS,  # None: evaluate about 10 times per run
    batch_tokens=2000 if SMOKE else 8000,
    learning_rate=None,                    # None: 1e-3 for `tiny` from scratch, 5e-5 for pretrained
    class_weights="balanced",              # membrane proteins are the minority class
    progress=not SMOKE,
)
seq_result = plm.finetune(membrane["train"], membrane["validation"], membrane["test"],
                      config=seq_config, output_dir=f"{RUNS}/pt_membrane", overwrite=True)
print("best step:", seq_result.best_step, "of", seq_result.steps)
print("validation:", {k: round(v, 3) for k, v in seq_result.validation.items()})
print("test:      ", {k: round(v, 3) for k, v in seq_result.test.items()})"""),
    md("""> 🤖 **Reading the metrics.** *Accuracy* is the fraction predicted right, but on unbalanced data a model
> that always answers "soluble" already scores high. *Macro-F1* averages the F1 score (the balance of
> precision and recall) over the classes, so a neglected class pulls it down. *MCC* (Matthews correlation
> coefficient) uses the whole confusion matrix: 1 is perfect, **0 is no better than guessing** (e.g. one
> class for everything), -1 is always wrong. We choose the checkpoint by MCC on validation.

**What to expect.** Full mode has not been measured on these data by this project (it needs a GPU). The
original tutorial reports a test accuracy of about 0.95 for this model size, but on *different* data
(about 5,650 UniProt proteins, cytosolic vs membrane); DeepLoc's 918 training proteins with their curated
localisations are a harder split, so expect your own number to differ. In smoke mode the model is a tiny network with
*random* weights trained for a few steps on 64 proteins: it has no pretraining to transfer, and deciding
membrane vs soluble from scratch needs far more data, so an MCC near 0 is the expected result there, not a
bug. What the tiny random model *can* show is that even untrained embeddings carry signal: averaging its
per-residue vectors gives a fingerprint of amino-acid composition, and a linear **probe** (logistic
regression) on it already separates membrane proteins, which are rich in water-repelling residues, better
than chance. The embeddings notebook does this properly with a pretrained model."""),
    code("""import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from protein_lm.metrics import classification_metrics

encoder = plm.load_model(MODEL, "masked-lm").eval()
def features(ds):  # mean over residues of the last layer: one vector per protein
    # DeepLoc has proteins over ESM-2's 1,022 residues: average overlapping windows for them
    emb = plm.embed(encoder, dict(zip(ds["id"], ds["sequence"])), long_policy="window", progress=False)
    return emb.mean[emb.layers[0]]
probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
probe.fit(features(membrane["train"]), membrane["train"]["label"])
probe_pred = probe.predict(features(membrane["test"]))
names = sorted(set(membrane["train"]["label"]))
probe_metrics = classification_metrics([names.index(c) for c in membrane["test"]["label"]],
                                       [names.index(c) for c in probe_pred])
print("embedding probe, test:", {k: round(v, 3) for k, v in probe_metrics.items()})"""),
    md("""### Training curve and confusion matrix

The loss/metric plot is written by `finetune` itself; the confusion matrix comes from predicting the test
split with the saved model (`protein_lm.pt.predict.predict`, the same code as `protein-lm predict`)."""),
    md("""> 🤖 A **confusion matrix** counts, for each true class (rows), how often each class was predicted
> (columns): the diagonal is right, everything else is a mistake of a particular kind."""),
    code("""# NBVAL_IGNORE_OUTPUT
from IPython.display import Image, Markdown, display
display(Image(filename=f"{RUNS}/pt_membrane/training_curves.png"))"""),
    code("""# NBVAL_IGNORE_OUTPUT
import matplotlib.pyplot as plt
from sklearn.metrics import ConfusionMatrixDisplay
from protein_lm.metrics import classification_metrics, confusion_matrix
test = membrane["test"]
pred = plm.predict(f"{RUNS}/pt_membrane", dict(zip(test["id"], test["sequence"])))
names = list(pred.class_names)
y_true = [names.index(c) for c in test["label"]]
y_pred = [names.index(c) for c in pred.predictions]
print("test metrics recomputed from the saved model:", classification_metrics(y_true, y_pred))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
ConfusionMatrixDisplay(confusion_matrix(y_true, y_pred, len(names)), display_labels=names).plot(
    ax=ax1, cmap="Blues", colorbar=False)
ax1.set_title("fine-tuned model, test split")
probe_ids = [names.index(c) for c in probe_pred]  # the embedding probe of the cell above
ConfusionMatrixDisplay(confusion_matrix(y_true, probe_ids, len(names)), display_labels=names).plot(
    ax=ax2, cmap="Blues", colorbar=False)
ax2.set_title("embedding probe, test split")
plt.tight_layout()
plt.show()"""),
    md("""**Reading the two matrices.** A model that learned nothing predicts one class for every protein: its matrix
has a single filled column (MCC 0), which is what the fine-tuned *tiny random* model of smoke mode shows
after a few steps. The probe beside it, trained on the same proteins, fills the diagonal: the information
was in the embeddings, but a few steps of fine-tuning from random weights cannot find it. With a pretrained
model (full mode) both matrices should be mostly diagonal."""),
    md("""## 2. Per-residue classification: secondary structure

> 🧬 **Secondary structure.** Locally, the chain folds into a few recurring shapes: the **helix** (`H`, a
> spiral held by hydrogen bonds between residues 4 apart), the **strand** (`E`, an extended stretch that
> pairs side by side with other strands into a sheet) and everything else, **coil** (`C`: loops and turns).
> The labels come from experimentally solved 3D structures; predicting them from sequence alone is a
> classic benchmark ("Q3" = accuracy over the three states). The picture below shows the labels of one
> training protein along its sequence.

FLIP's secondary-structure set gives one label per residue (`H`, `E`, `C`) and a mask: `0` marks residues
that were not resolved in the crystal structure, whose label means nothing. The model predicts one class per
**token**, so labels must be placed on the right tokens. Here is the start of one training protein:"""),
    code("""from protein_lm.batching import Collator
from protein_lm.data import encode_labels
from protein_lm.sequences import ESM2_TOKENS

ss = plm.load_secondary_structure()
if SMOKE:  # enough short proteins for a tiny model to learn the task from scratch in about a minute
    sizes = {"train": 600, "validation": 32, "test": 64}
    ss = {k: stratified_subset(ss[k], n, max_length=300) for k, n in sizes.items()}
for split, ds in ss.items():  # labelled residues (mask 1) per class
    counts = Counter(c for lab, m in zip(ds["label"], ds["mask"]) for c, k in zip(lab, m) if k == "1")
    print(f"{split:10s} {len(ds):5d} proteins", dict(sorted(counts.items())))

# A well-resolved protein with both helices and strands in its first 80 residues (the first training
# protein can be mostly unresolved, which would hide the point of the pictures below).
SHOW = next(i for i, r in enumerate(ss["train"]) if r["mask"][:80].count("1") >= 76
            and "H" in r["label"][:80] and "E" in r["label"][:80])
example, id2label = encode_labels(ss["train"].select([SHOW]), "token-classification")
batch = Collator("token-classification")([{"sequence": example[0]["sequence"], "labels": example[0]["labels"]}])
print("token  id  label  (residue i -> token i+1; -100 = ignored)")
for t in range(8):
    tok = ESM2_TOKENS[batch["input_ids"][0, t]]
    lab = batch["labels"][0, t]
    print(f"{t:5d} {tok:>5s} {lab:5d}", "" if lab < 0 else f"= {id2label[int(lab)]}")"""),
    code("""# NBVAL_IGNORE_OUTPUT
import matplotlib.pyplot as plt
from matplotlib.colors import ListedColormap

row = ss["train"][SHOW]
n = min(80, len(row["sequence"]))
codes = np.array(["CEH".index(c) if m == "1" else 3 for c, m in zip(row["label"][:n], row["mask"][:n])])
fig, ax = plt.subplots(figsize=(12, 1.6))
ax.imshow(codes[None, :], cmap=ListedColormap(["lightgrey", "gold", "tab:red", "white"]), vmin=0, vmax=3,
          aspect="auto")
ax.set_xticks(range(n), list(row["sequence"][:n]), fontsize=6, family="monospace")
ax.set_yticks([])
ax.set_title(f"{row['id']}: coil (grey), strand E (gold), helix H (red), unresolved (white)")
plt.show()"""),
    md("""> 🤖 **The ignore label -100.** Some positions have no label: the special tokens, padding, and residues
> not seen in the crystal structure. PyTorch's cross-entropy skips every position whose label is -100
> (its `ignore_index`), so we write -100 there and the model is neither rewarded nor punished for them.

Token 0 is `<cls>` and gets -100; the first residue (token 1) carries the first label — unless it was
unresolved (mask 0), in which case it also gets -100 and counts neither in the loss nor in Q3. The selection
metric for this task is Q3, the accuracy over labelled residues."""),
    code("""SS_SMOKE_STEPS = 60
ss_config = plm.FinetuneConfig(
    task="token-classification",
    model=MODEL,
    max_steps=SS_SMOKE_STEPS if SMOKE else MAX_STEPS,  # from scratch: enough steps to learn visibly
    epochs=None if SMOKE or MAX_STEPS else 2,
    eval_steps=SS_SMOKE_STEPS // 3 if SMOKE else MAX_STEPS,
    batch_tokens=4000 if SMOKE else 8000,
    learning_rate=2e-3 if SMOKE else 1e-4,
    progress=not SMOKE,
)
ss_result = plm.finetune(ss["train"], ss["validation"], ss["test"], config=ss_config,
                     output_dir=f"{RUNS}/pt_secondary_structure", overwrite=True)
print("validation Q3:", round(ss_result.validation["q3"], 3), "| test Q3:", round(ss_result.test["q3"], 3))
majority = max(counts.values()) / sum(counts.values())  # test residues: always predict the commonest
print(f"majority-class baseline on test: {majority:.3f}")"""),
    md("""**What to expect.** Full mode has not been measured on these data by this project (it needs a GPU). The
original tutorial reports a Q3 of about 0.82 for this model size, on *different* labels (UniProt helix and
strand annotations); FLIP's DSSP-derived labels on NetSurfP-2.0 sequences are a different benchmark, so
that number is not a prediction for this run. In smoke mode the tiny random model learns from scratch, and per-residue labels give it thousands
of training signals per minute (one per residue, not one per protein), so it beats the majority-class
baseline within a minute: local patterns such as helix-forming and helix-breaking residues are enough for
that. Going further needs what pretraining provides."""),
    code("""# NBVAL_IGNORE_OUTPUT
display(Image(filename=f"{RUNS}/pt_secondary_structure/training_curves.png"))

test = ss["test"]
pred = plm.predict(f"{RUNS}/pt_secondary_structure", dict(zip(test["id"], test["sequence"])))
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
print("per-residue predictions for", test[0]["id"], "(mask 0 residues shown as '.')")
print("sequence  ", test[0]["sequence"][:60])
print("true      ", "".join(c if m == "1" else "." for c, m in zip(test[0]["label"][:60], test[0]["mask"][:60])))
print("predicted ", pred.predictions[0][:60])"""),
    md("""**Reading it.** In smoke mode the tiny model learns the easy part first: helix vs coil from local residue
preferences. Strands (`E`) need pairing partners far away in the sequence, so after a minute from scratch
the `E` column is often empty (no residue predicted as strand) even though Q3 beats the baseline; a
pretrained model (full mode) predicts all three states."""),
    md("""### Optional: metrics from the `evaluate` library

The metrics above are computed offline with scikit-learn. The `evaluate` library has many more, but
`evaluate.load` downloads each metric's code from the Hub, so it cannot be the offline default. Any
function `(predictions, references) -> {name: value}` can be added to every evaluation with
`finetune(..., extra_metrics=fn)` (it goes into the Trainer's `compute_metrics`, see
`protein_lm.pt.trainer.metric_functions`). This cell runs only when the Hub is reachable and
`evaluate` is installed (`pip install evaluate`)."""),
    code("""import dataclasses, importlib.util, socket

def hub_reachable(host="huggingface.co", timeout=3.0):
    if SMOKE or os.environ.get("HF_HUB_OFFLINE") == "1":
        return False
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False

ONLINE = hub_reachable()
if ONLINE and importlib.util.find_spec("evaluate"):
    import evaluate
    f1 = evaluate.load("f1")
    def evaluate_metrics(predictions, references):  # class ids of the labelled positions
        return {"evaluate_macro_f1": f1.compute(predictions=predictions, references=references,
                                                average="macro")["f1"]}
    short = dataclasses.replace(seq_config, max_steps=20, epochs=None, eval_steps=10)
    run = plm.finetune(membrane["train"], membrane["validation"], config=short, extra_metrics=evaluate_metrics,
                       output_dir=f"{RUNS}/pt_membrane_evaluate", overwrite=True)
    print({k: round(v, 3) for k, v in run.validation.items()})
else:
    print("offline, smoke mode or `evaluate` not installed: skipped")"""),
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
    md("""## 4. Share it: model card and the Hub

Every `finetune` output folder already contains a **model card**, `README.md`: the task, the labels, the
base model and the validation/test metrics, with the YAML header the Hugging Face Hub reads. Here we
rewrite it with a line about the data, then (optionally) push the folder to the Hub as the original
tutorial does. Pushing needs a Hub account and token (`huggingface_hub.notebook_login()` in a notebook,
`hf auth login` in a shell); it is skipped offline and in smoke mode."""),
    code("""from protein_lm.finetuning.model_card import write_model_card

card = write_model_card(f"{RUNS}/pt_secondary_structure",
                        dataset="FLIP secondary structure (NetSurfP-2.0 sequences, 3 states H/E/C)"
                        + (" - smoke-mode subset" if SMOKE else ""))
print(card.read_text()[:700])"""),
    code("""PUSH_TO_HUB = False  # set to True to publish runs/pt_secondary_structure under your account
REPO_NAME = "esm2-secondary-structure"

from huggingface_hub import HfApi, get_token
if PUSH_TO_HUB and ONLINE and get_token():
    api = HfApi()
    repo = api.create_repo(REPO_NAME, exist_ok=True)
    api.upload_folder(folder_path=f"{RUNS}/pt_secondary_structure", repo_id=repo.repo_id)
    print("pushed to", repo)
else:
    print("not pushed (PUSH_TO_HUB is False, offline, smoke mode or no Hub token)")"""),
    md("""## 5. Beyond this notebook

* **Command line:** the same runs from a shell, on CSV/TSV files with `sequence,label[,id,mask]` columns:
  ```
  protein-lm finetune --task token-classification --model facebook/esm2_t12_35M_UR50D \\
      --train train.csv --validation val.csv --test test.csv --output-dir runs/ss3 --epochs 2
  protein-lm predict --model runs/ss3 new_proteins.fasta -o predictions.csv
  ```
* **Several GPUs:** the same command under `torchrun --nproc_per_node 4 -m protein_lm.cli finetune ...`
  runs DDP; each process takes every 4th token-budget batch.
* **Bigger models on small GPUs:** `--lora` trains low-rank adapters (merged into the saved model):
  instead of updating all weights, LoRA freezes them and learns a small low-rank correction to each
  attention matrix, a few percent of the parameters, so much less memory goes to gradients and
  optimiser state;
  `--gradient-checkpointing` trades compute for memory, `--precision bf16` halves activation memory.
* **Regression** (e.g. the BLAT beta-lactamase fitness scan) uses `task="regression"` and reports
  Spearman and Pearson correlations."""),
]

write(cells, NAME)
