"""Write notebooks/protein_language_modeling_tf.ipynb (outputs stripped). Run from the repo root."""

from notebook_common import badge, code, md, setup_code, write

NAME = "protein_language_modeling_tf.ipynb"

cells = [
    md(f"""# Fine-tuning a protein language model (TensorFlow / Keras 3)

{badge(NAME)}

The TensorFlow twin of `protein_language_modeling.ipynb`. transformers v5 removed its TensorFlow
classes (`TFEsmForSequenceClassification` is gone), so `protein_lm` ships its own ESM-2 encoder in
**Keras 3** on the TensorFlow backend, with three heads: sequence classification, per-residue (token)
classification and regression. It reads and writes **the same checkpoint directory as PyTorch**
(`config.json` + `model.safetensors`): a hub ESM-2, a model fine-tuned in PyTorch, or one trained here,
which PyTorch can then load and continue.

We fine-tune on two tasks with **real data**:

1. **Sequence classification**: membrane-bound or soluble? (DeepLoc 1.0)
2. **Per-residue classification**: 3-state secondary structure `H`/`E`/`C` (FLIP / NetSurfP-2.0 split).

Training uses `model.fit` on a `tf.data` pipeline of length-bucketed, dynamically padded batches sized
by a token budget. On a GPU it turns on mixed precision (bfloat16 on Ampere or newer, float16 with loss
scaling before that) and XLA (`jit_compile`), with batch widths rounded to multiples of 64 tokens so XLA
compiles only a few shapes.

Smoke mode (CI, `PROTEIN_LM_SMOKE=1`) trains a tiny *random* ESM-2 on small class-balanced subsets: the
per-residue task visibly learns from scratch in about a minute, the sequence-level one cannot (section 2
says why). Full mode fine-tunes `facebook/esm2_t12_35M_UR50D` (use a GPU)."""),
    md("""## Primer

> 🧬 **Proteins for ML readers.** A protein is a chain of amino acids (20 kinds, one letter each), so its
> sequence is a string like `MKTAYIAKQR...`; each position is a **residue**. The chain folds into a 3D
> shape. **Localisation** is where in the cell the protein works (in a membrane or dissolved in the cell's
> water, here); **secondary structure** labels each residue helix `H`, strand `E` or coil `C`.
>
> 🤖 **ML for biologists.** ESM-2 was *pretrained* to guess hidden letters of ~65 million natural
> sequences; *fine-tuning* (transfer learning) adds a small output layer and trains briefly on labelled
> data. The model outputs raw class scores (**logits**); the **loss** measures how wrong they are, and
> the optimiser (**AdamW**) lowers it step by step at a given **learning rate**. Keras runs this loop for us
> in `model.fit`. Metrics: **accuracy**; **macro-F1**, the F1 score averaged over classes so that a
> neglected class counts; **MCC**, 0 for guessing and 1 for perfect; **Q3**, per-residue accuracy over the
> three structure states. The PyTorch notebook explains each at more length, with pictures."""),
    code(setup_code("tiny model, small subset, CPU, ~1 minute", extra_lines="""\
# Before TensorFlow is imported: keep its C++ log (CUDA/cuInit probing on CPU machines) quiet.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # protein_lm's Keras model runs on TensorFlow""") + """
import absl.logging
absl.logging.set_verbosity(absl.logging.ERROR)

MODEL = "facebook/esm2_t12_35M_UR50D"  # any ESM-2 hub id or local directory (PyTorch-written too)
if SMOKE:
    MODEL = "tiny"  # small random ESM-2 built from a config: offline, trains from scratch
MODEL = MODEL_OVERRIDE or MODEL
RUNS = "runs"  # output directories are written here
from protein_lm.tf.model import keras_tf
keras_tf()  # imports TensorFlow with its C++ start-up lines silenced and GPU memory growth on
import tensorflow as tf
GPUS = tf.config.list_physical_devices("GPU")  # Colab: Runtime > Change runtime type > GPU
print("model:", MODEL, "| device:", "GPU" if GPUS else "CPU", "| precision:",
      "mixed bf16/fp16" if GPUS else "fp32", "| smoke mode:", SMOKE, "| max steps:", MAX_STEPS)"""),
    md("""## 1. One checkpoint, two frameworks

`load_tf_model` builds the Keras model from a transformers config and copies the safetensors weights in
(with `safetensors.numpy`: TensorFlow never needs torch). The encoder follows transformers' ESM code
operation by operation: rotary embeddings applied to the scaled query and the key, pre-LayerNorm blocks,
exact GELU, the final `emb_layer_norm_after`, padded keys masked, and ESM-2's *token-dropout rescaling*
of the embeddings. Here we check it on a padded batch of mixed lengths: the logits of PyTorch and
TensorFlow on the same checkpoint agree to about 1e-6 (the tests require ≤ 1e-4)."""),
    code("""import numpy as np
import torch
from protein_lm.models import load_model
from protein_lm.tf.training import load_tf_model
from protein_lm.tokenization import encode

pt_model = load_model(MODEL, "token-classification", id2label={0: "C", 1: "E", 2: "H"}).eval()
pt_model.save_pretrained(f"{RUNS}/shared_checkpoint")  # a PyTorch-written directory ...
tf_model = load_tf_model(f"{RUNS}/shared_checkpoint", "token-classification")  # ... read by Keras

batch = encode(["MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "MA<mask>LLG", "W"])  # padded, with a <mask>
with torch.no_grad():
    pt_logits = pt_model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
tf_logits = np.asarray(tf_model(batch))
diff = np.abs(pt_logits - tf_logits).max()
print(f"logits {tf_logits.shape}, max |PyTorch - TensorFlow| = {diff:.1e}")
assert diff <= 1e-4"""),
    md("""## 2. Sequence classification: membrane vs soluble

`load_deeploc("membrane")` returns `train`, `validation` (a seeded, stratified 10% of the DeepLoc training
file) and the official `test` split, with columns `id`, `sequence`, `label`. These are the same data
loaders, label encoding and metrics the PyTorch notebook uses."""),
    code("""from collections import Counter
from protein_lm import data
from protein_lm.data import stratified_subset

membrane = data.load_deeploc("membrane")
if SMOKE:  # small subsets of short proteins, every class in every split
    sizes = {"train": 64, "validation": 24, "test": 32}
    membrane = {k: stratified_subset(membrane[k], n, max_length=300) for k, n in sizes.items()}
for split, ds in membrane.items():
    print(f"{split:10s} {len(ds):5d} proteins", dict(sorted(Counter(ds["label"]).items())))"""),
    md("""### Your own data (the section you change)

Any CSV or TSV with a `sequence` and a `label` column works (optional `id`; per-residue tasks: a label string
as long as the sequence and an optional 0/1 `mask`). `read_table` checks every row first and names the file,
row and field of a problem; the `datasets.Dataset` it returns goes to the same `finetune` call. The data
sources and why the test splits avoid close relatives of training proteins are in the PyTorch notebook."""),
    code("""from protein_lm.data import read_table, write_table

MY_TABLE = f"{RUNS}/my_proteins.csv"  # <- your file here
write_table(membrane["train"].select(range(40)), MY_TABLE)
mine = read_table(MY_TABLE, "sequence-classification").train_test_split(test_size=0.25, seed=0)
print({k: len(v) for k, v in mine.items()}, "-> finetune(mine['train'], mine['test'], config=...)")"""),
    md("""### Train with `model.fit`

`TFFinetuneConfig` has the same fields as the PyTorch `FinetuneConfig` where they mean the same thing
(steps or epochs, time budget, learning rate, token budget, warm-up, precision, length policy), plus
`jit_compile`. `finetune` builds the `tf.data` pipeline, compiles the model with AdamW (linear warm-up
and decay, gradient clipping at norm 1, no weight decay on biases and LayerNorms, as the transformers
Trainer), evaluates on the validation split every `eval_steps`, restores the best weights (by MCC here),
scores the test split once, and writes the same files as PyTorch: a transformers model directory plus
`metrics.json`, `training_log.csv` and `training_curves.png`."""),
    code("""from protein_lm.tf.training import TFFinetuneConfig, finetune

seq_config = TFFinetuneConfig(
    task="sequence-classification",
    model=MODEL,
    max_steps=8 if SMOKE else MAX_STEPS,
    epochs=None if SMOKE or MAX_STEPS else 3,
    eval_steps=2 if SMOKE else MAX_STEPS,  # None: evaluate about 10 times per run
    batch_tokens=3000 if SMOKE else 8000,
    learning_rate=None,                # None: 1e-3 for `tiny` from scratch, 5e-5 for pretrained
    precision="auto",                  # mixed bf16/fp16 on GPU, fp32 on CPU
    jit_compile="auto",                # XLA on GPU only
    progress=not SMOKE,
)
seq_result = finetune(membrane["train"], membrane["validation"], membrane["test"],
                      config=seq_config, output_dir=f"{RUNS}/tf_membrane", overwrite=True)
print("best step:", seq_result.best_step, "of", seq_result.steps)
print("validation:", {k: round(v, 3) for k, v in seq_result.validation.items()})
print("test:      ", {k: round(v, 3) for k, v in seq_result.test.items()})"""),
    md("""**What to expect.** Full mode has not been measured on these data by this project (it needs a GPU); the
original PyTorch tutorial's accuracy of about 0.95 was measured on different data (about 5,650 UniProt
cytosolic vs membrane proteins), not on DeepLoc. The smoke model is tiny, *random* (no pretraining to transfer) and sees 64
proteins for a few steps: that is far too little to learn a sequence-level property from scratch, so an
MCC near 0 (one class predicted for everything) is what it should show. The per-residue task below is
different: it learns visibly even from scratch."""),
    code("""# NBVAL_IGNORE_OUTPUT
from IPython.display import Image, display
display(Image(filename=f"{RUNS}/tf_membrane/training_curves.png"))"""),
    md("""## 3. Per-residue classification: secondary structure

Residue *i* is token *i+1* (token 0 is `<cls>`). `<cls>`, `<eos>`, padding and unresolved residues (mask
`0`) have no label: they get the conventional **ignore label -100**, which the Keras loss ignores (`SparseCategoricalCrossentropy(ignore_class=-100)`)
and which Q3 skips."""),
    code("""ss = data.load_secondary_structure()
if SMOKE:  # enough short proteins for the tiny model to learn from scratch in about a minute
    sizes = {"train": 600, "validation": 32, "test": 64}
    ss = {k: stratified_subset(ss[k], n, max_length=300) for k, n in sizes.items()}
for split, ds in ss.items():  # labelled residues (mask 1) per class
    counts = Counter(c for lab, m in zip(ds["label"], ds["mask"]) for c, k in zip(lab, m) if k == "1")
    print(f"{split:10s} {len(ds):5d} proteins", dict(sorted(counts.items())))

SS_SMOKE_STEPS = 60
ss_config = TFFinetuneConfig(
    task="token-classification",
    model=MODEL,
    max_steps=SS_SMOKE_STEPS if SMOKE else MAX_STEPS,  # from scratch: enough steps to learn visibly
    epochs=None if SMOKE or MAX_STEPS else 2,
    eval_steps=SS_SMOKE_STEPS // 3 if SMOKE else MAX_STEPS,
    batch_tokens=4000 if SMOKE else 8000,
    learning_rate=2e-3 if SMOKE else 1e-4,
    progress=not SMOKE,
)
ss_result = finetune(ss["train"], ss["validation"], ss["test"], config=ss_config,
                     output_dir=f"{RUNS}/tf_secondary_structure", overwrite=True)
print("validation Q3:", round(ss_result.validation["q3"], 3), "| test Q3:", round(ss_result.test["q3"], 3))
majority = max(counts.values()) / sum(counts.values())  # test residues: always predict the commonest
print(f"majority-class baseline on test: {majority:.3f}")"""),
    code("""# NBVAL_IGNORE_OUTPUT
display(Image(filename=f"{RUNS}/tf_secondary_structure/training_curves.png"))"""),
    md("""## 4. Predict, and continue in PyTorch

`protein_lm.tf.training.predict` (what `protein-lm predict --framework tf` runs) returns the same
`Predictions` type as the PyTorch path. Because the directory is a standard transformers checkpoint,
PyTorch reads the Keras-trained model directly, and gives the same per-residue predictions."""),
    code("""from protein_lm.tf.training import predict
from protein_lm.pt.predict import predict as pt_predict

test = ss["test"]
proteins = dict(zip(test["id"][:8], test["sequence"][:8]))
tf_pred = predict(f"{RUNS}/tf_secondary_structure", proteins)
pt_pred = pt_predict(f"{RUNS}/tf_secondary_structure", proteins)
agree = np.mean([a == b for p, q in zip(tf_pred.predictions, pt_pred.predictions) for a, b in zip(p, q)])
print(f"TensorFlow and PyTorch agree on {agree:.1%} of residues")
print(test["sequence"][0][:60])
print(tf_pred.predictions[0][:60])
assert agree > 0.999"""),
    md("""## 5. Beyond this notebook

* **Command line:** the same runs from a shell (CSV/TSV with `sequence,label[,id,mask]` columns):
  ```
  protein-lm finetune --framework tf --task token-classification --model facebook/esm2_t12_35M_UR50D \\
      --train train.csv --validation val.csv --test test.csv --output-dir runs/ss3 --epochs 2
  protein-lm predict --framework tf --model runs/ss3 new_proteins.fasta -o predictions.csv
  ```
* **Switch frameworks mid-way:** pass a PyTorch-written directory as `model=` to the Keras `finetune` (or
  the other way round); the classification head is kept when the labels match.
* **Regression** (e.g. BLAT beta-lactamase fitness) uses `task="regression"`; targets are standardised
  for training and predictions come back in label units, in either framework.
* **Share it:** every output folder has a model card (`README.md`) and can be pushed to the Hub as in the
  PyTorch notebook, section 4.
* **Not in the TF path:** LoRA (low-rank adapters: train a small correction instead of all weights), class weights and multi-GPU training are PyTorch-only for now."""),
]

write(cells, NAME)
