"""CPU inference side by side: protein_lm.embed in each CPU precision vs esm.cpp and plain transformers.

    python benchmarks/cpu_inference.py --quick     # 35M- and 150M-shaped models, 16 sequences
    python benchmarks/cpu_inference.py             # 32 sequences of 50-500 residues
    python benchmarks/cpu_inference.py --large     # adds a 650M-shaped model

Every engine gets the same random ESM-2 weights (seeded, shaped like the released 35M/150M/650M
models), the same random sequences and the same thread count, in one run. Printed per shape:
residues/s (best of 2), the ratio to esm.cpp fp32, and the drift of mean embeddings against the
float32 reference (max |delta|, min cosine over sequences). Then masked-marginal scoring of the BLAT
scan (4,996 variants, one masked pass per distinct mutated position in both engines) with the
Spearman of each. Results go to benchmarks/results/cpu_inference-<date>.json with the CPU flags.

esm.cpp (`pip install esm-cpp`, Apache-2.0) pins numpy<2, so it is installed by this script into its
own virtual environment, benchmarks/.peers/esmcpp (ignored by git), and run there in a subprocess.
It reads transformers v4 tensor names: the v5 checkpoint's `LayerNorm.gamma/beta` are renamed and the
rotary `inv_freq` buffers added (`_v4_checkpoint`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PEER = ROOT / "benchmarks" / ".peers" / "esmcpp"
SHAPES = {"35M": (12, 480, 20), "150M": (30, 640, 20), "650M": (33, 1280, 20)}
AA = "ACDEFGHIKLMNPQRSTVWY"

PEER_SCRIPT = r'''
import json, sys, time
import numpy as np
import esm_cpp

job = json.load(open(sys.argv[1]))
model = esm_cpp.Model.load_from_safetensors(job["weights"])  # threads: ESM_NUM_THREADS
if job["int8"]:
    model.quantize_weights()
tok = esm_cpp.Tokenizer()
out = {"isa": esm_cpp.current_isa(), "version": esm_cpp.__version__}
if job["task"] == "embed":
    ids = [np.asarray(tok.encode(s), dtype=np.int32) for s in job["seqs"]]
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        logits = model.forward_scheduled(ids)
        best = min(best, time.perf_counter() - t)
    out["seconds"] = best
    out["logits"] = [np.asarray(l, dtype=np.float32)[1:-1].tolist() for l in logits[: job["check"]]]
else:  # masked marginals: one masked copy of the wild type per distinct position
    wt, positions = job["wt"], job["positions"]
    base = np.asarray(tok.encode(wt), dtype=np.int32)
    t = time.perf_counter()
    lp = {}
    for start in range(0, len(positions), job["batch"]):
        chunk = positions[start:start + job["batch"]]
        ids = []
        for p in chunk:
            x = base.copy(); x[p + 1] = tok.mask_id; ids.append(x)
        for p, logits in zip(chunk, model.forward_scheduled(ids)):
            z = np.asarray(logits[p + 1], dtype=np.float64)
            lp[p] = (z - z.max() - np.log(np.exp(z - z.max()).sum())).tolist()
    out["seconds"] = time.perf_counter() - t
    out["logprobs"] = {str(k): v for k, v in lp.items()}
json.dump(out, open(sys.argv[2], "w"))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="16 sequences of 50-400 residues")
    ap.add_argument("--large", action="store_true", help="also a 650M-shaped model")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    n, hi = (16, 400) if args.quick else (32, 500)
    seqs = {f"s{i}": "".join(rng.choice(list(AA), int(rng.integers(50, hi)))) for i in range(n)}
    peer = _peer_python()
    report: dict = {
        "date": datetime.date.today().isoformat(),
        "cpu": _cpu(),
        "threads": args.threads,
        "torch": torch.__version__,
        "sequences": n,
        "residues": sum(map(len, seqs.values())),
        "shapes": {},
    }
    shapes = ["35M", "150M"] + (["650M"] if args.large else [])
    for shape in shapes:
        report["shapes"][shape] = _shape(shape, seqs, peer, args.threads, dms=shape == "35M")
    out = ROOT / "benchmarks" / "results" / f"cpu_inference-{report['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten: {out.relative_to(ROOT)}")


def _shape(shape: str, seqs: dict[str, str], peer: str | None, threads: int, dms: bool) -> dict:
    import torch

    from protein_lm.embeddings import embed
    from protein_lm.models import load_model
    from protein_lm.precision import resolve_precision

    layers, hidden, heads = SHAPES[shape]
    model = load_model("tiny", "masked-lm", config_overrides={
        "num_layers": layers, "hidden_size": hidden, "num_heads": heads}).eval()
    residues = sum(map(len, seqs.values()))
    rows: dict[str, dict] = {}

    def run(mode: str) -> tuple[float, np.ndarray]:
        best, emb = float("inf"), None
        for _ in range(2):
            t = time.perf_counter()
            emb = embed(model, seqs, precision=mode, num_threads=threads, progress=False)
            best = min(best, time.perf_counter() - t)
        return best, emb.mean[emb.layers[0]]

    ref_t, ref = run("float32")
    rows["protein_lm float32"] = {"seconds": ref_t, **_drift(ref, ref)}
    for mode in ("bfloat16", "int8"):
        t, m = run(mode)
        rows[f"protein_lm {mode}"] = {"seconds": t, **_drift(m, ref)}
    auto = resolve_precision(model, "auto")
    rows["protein_lm auto"] = {**rows[f"protein_lm {auto}"], "resolves_to": auto}
    t, m = _transformers_padded(model, seqs)
    rows["transformers fp32 (padded batches of 8)"] = {"seconds": t, **_drift(m, ref)}
    result: dict = {"layers": layers, "hidden": hidden, "rows": rows}
    if peer:
        with tempfile.TemporaryDirectory() as tmp:
            weights = _v4_checkpoint(model, Path(tmp))
            ref_logits = _logits(model, list(seqs.values())[:4])
            for int8 in (False, True):
                got = _peer(peer, {"task": "embed", "weights": str(weights), "threads": threads,
                                   "int8": int8, "seqs": list(seqs.values()), "check": 4})
                delta = max(float(np.abs(np.asarray(a) - b).max())
                            for a, b in zip(got["logits"], ref_logits))
                rows[f"esm.cpp {'int8' if int8 else 'fp32'}"] = {
                    "seconds": got["seconds"], "max_abs_logit_delta": delta, "isa": got["isa"]}
            if dms:
                result["dms"] = _dms(model, peer, weights, threads)
    base = rows.get("esm.cpp fp32", {}).get("seconds")
    print(f"\n== ESM-2 {shape}-shaped (random weights, {layers} layers x {hidden}), "
          f"{len(seqs)} sequences, {residues} residues, {threads} threads")
    print(f"{'engine / mode':42s} {'res/s':>9s} {'x esm.cpp fp32':>15s} {'max|d|':>9s} "
          f"{'min cos':>9s}")
    for name, r in rows.items():
        r["residues_per_s"] = residues / r["seconds"]
        ratio = f"{base / r['seconds']:.2f}" if base else "-"
        d = r.get("max_abs", r.get("max_abs_logit_delta"))
        cos = r.get("min_cosine")
        print(f"{name:42s} {r['residues_per_s']:9.0f} {ratio:>15s} "
              f"{'' if d is None else f'{d:.2e}':>9s} {'' if cos is None else f'{cos:.6f}':>9s}")
    return result


def _drift(m: np.ndarray, ref: np.ndarray) -> dict:
    cos = np.sum(m * ref, 1) / (np.linalg.norm(m, axis=1) * np.linalg.norm(ref, axis=1))
    return {"max_abs": float(np.abs(m - ref).max()), "min_cosine": float(cos.min())}


def _transformers_padded(model, seqs: dict[str, str]) -> tuple[float, np.ndarray]:
    """What a plain transformers loop does: input order, batches of 8 padded to the longest."""
    import torch

    from protein_lm.tokenization import encode

    items = list(seqs.values())
    best, means = float("inf"), None
    for _ in range(2):
        t = time.perf_counter()
        out = []
        with torch.inference_mode():
            for k in range(0, len(items), 8):
                batch = encode(items[k : k + 8], return_tensors="pt")
                h = model.esm(**batch).last_hidden_state
                mask = batch["attention_mask"].clone()
                mask[:, 0] = 0
                mask[torch.arange(len(mask)), mask.sum(1)] = 0  # eos (sum counts cls + residues)
                m = mask.unsqueeze(-1).float()
                out.append(((h * m).sum(1) / m.sum(1)).numpy())
        best, means = min(best, time.perf_counter() - t), np.concatenate(out)
    return best, means


def _logits(model, seqs: list[str]) -> list[np.ndarray]:
    import torch

    from protein_lm.tokenization import encode

    with torch.inference_mode():
        return [model(**encode([s], return_tensors="pt")).logits[0, 1:-1].numpy() for s in seqs]


def _dms(model, peer: str, weights: Path, threads: int) -> dict:
    """BLAT masked marginals: protein_lm (each precision) and esm.cpp fp32, same positions."""
    from scipy.stats import spearmanr

    from protein_lm.data import load_blat
    from protein_lm.sequences import ESM2_TOKENS
    from protein_lm.variants import evaluate_dms, parse_mutants

    blat = load_blat()
    out: dict = {"variants": len(blat.data)}
    for mode in ("float32", "bfloat16", "int8"):
        t = time.perf_counter()
        res = evaluate_dms(model, blat, precision=mode)
        out[f"protein_lm {mode}"] = {"seconds": time.perf_counter() - t,
                                     "spearman": res.spearman["masked-marginals"]}
    parsed, _ = parse_mutants(list(blat.data["mutant"]), blat.wild_type, blat.offset)
    positions = sorted({m.index for p in parsed for m in p})
    got = _peer(peer, {"task": "dms", "weights": str(weights), "threads": threads, "int8": False,
                       "wt": blat.wild_type, "positions": positions, "batch": 16})
    tok = {t: i for i, t in enumerate(ESM2_TOKENS)}
    lp = {int(k): np.asarray(v) for k, v in got["logprobs"].items()}
    scores = [sum(lp[m.index][tok[m.mut]] - lp[m.index][tok[m.wt]] for m in p) for p in parsed]
    out["esm.cpp fp32"] = {"seconds": got["seconds"],
                           "spearman": float(spearmanr(scores, blat.data["label"]).statistic)}
    out["masked_passes"] = len(positions)
    print(f"\nBLAT masked marginals ({len(blat.data)} variants, {len(positions)} masked passes):")
    for name, r in out.items():
        if isinstance(r, dict):
            print(f"  {name:22s} {r['seconds']:7.2f} s  Spearman {r['spearman']:+.4f}")
    return out


def _v4_checkpoint(model, folder: Path) -> Path:
    """The model's safetensors with transformers v4 tensor names, which esm.cpp reads."""
    import torch
    from safetensors.torch import save_file

    state = {k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta",
             "LayerNorm.bias"): v.detach().clone() for k, v in model.state_dict().items()}
    cfg = model.config
    head = cfg.hidden_size // cfg.num_attention_heads
    inv_freq = 1.0 / (10000 ** (torch.arange(0, head, 2, dtype=torch.float32) / head))
    for i in range(cfg.num_hidden_layers):
        state[f"esm.encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq"] = inv_freq.clone()
    path = folder / "model.safetensors"
    save_file(state, str(path))
    cfg.to_json_file(str(folder / "config.json"))
    return path


def _peer_python() -> str | None:
    """The esm.cpp venv's python, created on first use; None (with a note) when pip fails."""
    python = PEER / "bin" / "python"
    if not python.exists():
        print(f"installing esm-cpp into {PEER.relative_to(ROOT)} ...", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(PEER)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "esm-cpp==0.2.1",
                            "safetensors"], check=True)
        except (subprocess.CalledProcessError, OSError) as exc:
            print(f"esm.cpp not available ({exc}); its rows are left out")
            return None
    return str(python)


def _peer(python: str, job: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        script, inp, out = (Path(tmp) / n for n in ("peer.py", "in.json", "out.json"))
        script.write_text(PEER_SCRIPT)
        inp.write_text(json.dumps(job))
        env = {**os.environ, "ESM_NUM_THREADS": str(job["threads"])}  # esm.cpp's thread pool
        subprocess.run([python, str(script), str(inp), str(out)], check=True, env=env)
        return json.loads(out.read_text())


def _cpu() -> dict:
    info = {"machine": platform.machine(), "model": "", "flags": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        if line.startswith("model name") and not info["model"]:
            info["model"] = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            keep = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16",
                    "amx_int8", "amx_tile")
            info["flags"] = [f for f in keep if f in flags]
            break
    return info


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
