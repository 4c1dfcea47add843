"""Write notebooks/protein_folding.ipynb (outputs stripped). Run from the repo root."""

from notebook_common import badge, code, md, setup_code, write

NAME = "protein_folding.ipynb"

cells = [
    md(f"""# Protein structure prediction with ESMFold

{badge(NAME)}

ESMFold predicts a protein's 3D structure from its sequence alone: an ESM-2 language model (3B parameters)
feeds a folding trunk and an AlphaFold-style structure module. This notebook uses `protein_lm.folding.esmfold` on top of
transformers' `EsmForProteinFolding` to

1. fold one protein and read its confidence: **pLDDT** (per residue, 0-100), **PAE** (Å) and **pTM** (0-1);
2. look at it in 3D coloured by pLDDT, and plot pLDDT and PAE;
3. compare the prediction with the experimental structure;
4. fold a **heterodimer** (`A:B` chain syntax);
5. fold a FASTA file **in bulk**, resumably, as the `protein-lm fold` command does.

**Smoke mode** (`PROTEIN_LM_SMOKE=1`, used by CI) runs offline on CPU with a *tiny random* ESMFold: the
structures are meaningless, but every step (batching, chunking, writers, plots) is the real one.
**Full mode** loads `facebook/esmfold_v1` (3.5 billion parameters). On a GPU its weights are streamed from the
file straight to the GPU, the language model already in float16: 8.4 GB of GPU memory for the weights plus
the activations (a T4's 16 GB folds proteins of a few hundred residues), and host RAM never holds the model.
On a CPU everything is float32: 14.1 GB of RAM for the weights alone, and folding takes minutes per protein.

**Colab.** Use a GPU runtime: *Runtime > Change runtime type > T4 GPU*. A CPU-only runtime has about
12.7 GB of RAM, less than ESMFold needs there; `load_folding_model` checks the free RAM first and stops
with that message instead of letting the kernel die. The structures this notebook writes go to
`folding_outputs/` next to the notebook (Colab: the file browser on the left)."""),
    md("""## Primer

> 🧬 **Protein structure for ML readers.** A protein chain folds into a specific 3D shape; the positions
> of its atoms (in Ångström, Å = 0.1 nm) are measured by X-ray crystallography or cryo-EM and stored in
> PDB or mmCIF files, one line per atom. A **multimer** is several chains bound together. Two structures are
> compared after superposition by the **RMSD** (root-mean-square distance of matching atoms, Å; lower is
> better) and the **TM-score** (0-1, above ~0.5 means the same fold; higher is better).
>
> 🤖 **Confidence scores for biologists.** A structure predictor also says how much to trust each part of
> its answer. **pLDDT** (0-100, per residue) estimates how well the local environment of a residue is
> predicted: > 90 very high, 70-90 good backbone, < 50 likely disordered. **PAE** (predicted aligned error,
> Å, a matrix) estimates, for each pair of residues, the position error of one when the structures are
> aligned on the other: it tells whether two domains or chains are placed correctly *relative to each
> other*. **pTM** (0-1) summarises PAE into a predicted TM-score for the whole model."""),
    code(setup_code("tiny model, small subset, CPU, ~1 minute") + """

import protein_lm as plm
from protein_lm.data import data_path
from protein_lm.folding.structure import compare, load_structure, secondary_structure
from protein_lm.viz import plot_pae, plot_plddt, show_structure

from pathlib import Path
WORK = Path("folding_outputs")  # this notebook's files, next to it (Colab: the file browser)
WORK.mkdir(exist_ok=True)
MODEL = MODEL_OVERRIDE or ("tiny" if SMOKE else "facebook/esmfold_v1")
model = plm.load_folding_model(MODEL)  # cuda if available, else cpu
print("model:", MODEL, "| device:", next(model.parameters()).device, "| smoke mode:", SMOKE)"""),
    md("""## 1. Fold one protein

Hen egg-white lysozyme (129 residues, PDB 1AKI). `fold` accepts a sequence, a list, a `{id: sequence}` dict or
a FASTA file, and returns one `FoldResult` per record with atom37 coordinates (Å), per-residue pLDDT (0-100),
the PAE matrix (Å) and pTM computed over the real residues only. The trunk *chunk size* is chosen from the
length and the free memory (`chunk_size="auto"`); out-of-memory errors are retried with smaller chunks."""),
    code("""LYSOZYME = ("KVFGRCELAAAMKRHGLDNYRGYSLGNWVCAAKFESNFNTQATNRNTDGSTDYGILQINSRWWCNDGRTPGSRNLCNIPCSALLSSDITASVNC"
            "AKKIVSDGNGMNAWVAWRNRCKGTDVQAWIRGCRL")
(lyso,) = plm.fold({"lysozyme": LYSOZYME}, model)
print(f"{lyso.id}: {len(lyso)} residues, mean pLDDT {lyso.mean_plddt:.1f}, pTM {lyso.ptm:.3f}, "
      f"PAE {lyso.pae.shape} (max {lyso.pae.max():.1f} Å), {lyso.seconds:.2f} s on {lyso.device}")
pdb_path = lyso.write(WORK / "lysozyme.pdb")  # pLDDT in the B-factor column; .cif writes mmCIF
print("\\n".join(pdb_path.read_text().splitlines()[:7]))"""),
    md("""### One level down: the plain transformers call

`fold` is a thin layer over transformers' `EsmForProteinFolding` (the model object returned by
`load_folding_model`). What it adds: input checks, multimer linkers, length-sorted batches, the chunk size,
out-of-memory retries, a non-finite guard and the output files. The raw call gives a dict of tensors:
`positions` is (structure-module iterations, batch, length, 14 atoms, xyz) in Å, `plddt` is per atom37
position on a 0-1 scale (`fold` reports the CA value x 100), `predicted_aligned_error` is in Å."""),
    code("""import torch

print(type(model).__module__ + "." + type(model).__name__)
model.trunk.set_chunk_size(None)  # what chunk_size sets: None = no chunking of the trunk's attention
with torch.no_grad():
    raw = model.infer([LYSOZYME])  # transformers' own method
print({k: tuple(raw[k].shape) for k in ("positions", "plddt", "predicted_aligned_error")},
      f"ptm {float(raw['ptm']):.3f}")"""),
    md("""## 2. Look at it

Residues are coloured with the AlphaFold convention: dark blue pLDDT > 90, light blue 70-90, yellow 50-70,
orange < 50. PAE(i, j) is the expected error in residue j's position when the prediction is aligned on residue
i; low PAE between two domains means their relative placement is confident."""),
    code("""# NBVAL_IGNORE_OUTPUT
show_structure(lyso)"""),
    code("""# NBVAL_IGNORE_OUTPUT
import matplotlib.pyplot as plt
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
plot_plddt(lyso, ax=ax1)
plot_pae(lyso, ax=ax2)
plt.tight_layout()"""),
    md("""## 3. Compare with the experimental structure

`compare` pairs residues by sequence alignment (so missing residues in the crystal structure are fine),
superimposes the CA atoms and reports the RMSD (Å) and TM-score (0-1, TM-align via tmtools). ESMFold
typically reaches TM-score > 0.9 on lysozyme; the tiny random model of smoke mode does not, of course."""),
    code("""experimental = load_structure(data_path("structures/1aki.pdb"))
result = compare(lyso.to_structure(), experimental)
print(f"CA-RMSD {result.rmsd:.2f} Å over {result.n_aligned} residues, TM-score {result.tm_score:.3f}")
print("predicted    ", secondary_structure(lyso.to_structure().to_atom_array()))
print("experimental ", secondary_structure(experimental))"""),
    md("""## 4. A heterodimer

Chains are separated by `:` as in ColabFold. They are folded as one sequence joined by a 25-residue poly-G
linker with a jump of 512 in the residue index (the scheme of the ESMFold authors); the linker is removed from
the output, the chains get ids A and B, and pTM and PAE cover the real residues only. Here: human insulin,
chain A and chain B. The off-diagonal blocks of the PAE show how confident the relative placement of the two
chains is."""),
    code("""INSULIN_A, INSULIN_B = "GIVEQCCTSICSLYQLENYCN", "FVNQHLCGSHLVEALYLVCGERGFFYTPKT"
(insulin,) = plm.fold({"insulin": f"{INSULIN_A}:{INSULIN_B}"}, model)
structure = insulin.to_structure()
print(f"chains {structure.chain_ids}, {len(insulin)} residues (no linker), pTM {insulin.ptm:.3f}")
print("written:", insulin.write(WORK / "insulin.cif"))"""),
    code("""# NBVAL_IGNORE_OUTPUT
plot_pae(insulin)
show_structure(insulin, color="chain")"""),
    md("""## 5. Fold a FASTA file in bulk

`fold_fasta` (the `protein-lm fold` command) writes one structure file per record, named by the FASTA id, and a
`summary.csv` (id, length, mean pLDDT, pTM, seconds, status). Files are written atomically, so rerunning after
an interruption skips finished records and never leaves a truncated file; a bad record is reported and the
others go on. Large sets can be split over processes or machines with `shard=(i, n)` (`--shard i/n`, or the
torchrun rank). From a shell:

```
protein-lm fold proteins.fasta -o structures/ --format pdb --chunk-size auto
```"""),
    code("""import shutil
import pandas as pd
from protein_lm.folding.bulk import fold_fasta
from protein_lm.sequences import read_fasta, write_fasta

records = read_fasta(data_path("some_proteins.fasta"))
records = sorted(records, key=lambda r: len(r.sequence))[:3] if SMOKE else records
write_fasta(records, WORK / "proteins.fasta")
shutil.rmtree(WORK / "structures", ignore_errors=True)  # a fresh start each time the notebook runs
report = fold_fasta(WORK / "proteins.fasta", WORK / "structures", model, fmt="pdb")
print(f"folded {report.folded}, skipped {report.skipped}, failed {report.failed}")
pd.read_csv(report.summary)"""),
    code("""# Rerunning skips what is done (this is what makes an interrupted run resumable).
again = fold_fasta(WORK / "proteins.fasta", WORK / "structures", model, progress=False)
print(f"second run: folded {again.folded}, skipped {again.skipped}")"""),
    md("""Beside each structure, `<id>_scores.json` keeps the full confidence output in the layout of the
AlphaFold database and ColabFold: per-residue `plddt`, the `pae` matrix, `max_pae` and `ptm`, so PAE is not
only in a plot. Any JSON reader loads it back:"""),
    code("""import json
import numpy as np

score_files = sorted((WORK / "structures").glob("*_scores.json"))
if score_files:  # written by protein_lm versions that have FoldResult.write_scores
    scores = json.loads(score_files[0].read_text())
    print(score_files[0].name, "keys:", sorted(scores))
    print(f"pTM {scores['ptm']}, max PAE {scores['max_pae']} Å, PAE {np.shape(scores['pae'])}, "
          f"mean pLDDT {np.mean(scores['plddt']):.1f}")
else:
    print("no *_scores.json files: this protein_lm version writes PAE and pTM only to summary.csv")"""),
]

write(cells, NAME)
