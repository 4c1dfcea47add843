"""The scale suite's smoke run (`benchmarks/scale.py --smoke`): it runs, writes its report, and
checks its own invariants (chunked = unchunked, no NaN/inf), so the full GPU mode, which shares
every code path, does not rot. Speed ratios (bulk embed vs loop) are reported, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("finetune", "embed", "fold", "precision")


def test_scale_smoke_report(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    proc = subprocess.run(
        # The run's own budget (150 s) skips cases when time runs out; here every case must run
        # however loaded the machine is, so the budget is the subprocess timeout.
        [sys.executable, str(REPO / "benchmarks" / "scale.py"), "--smoke", "--budget-s", "600",
         "--out", str(out)],
        capture_output=True, text=True, timeout=660, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["failures"] == []
    assert report["mode"] == "smoke" and report["device"] == "cpu"
    assert "random" in report["weights"]
    assert report["skipped_cases"] == 0, "smoke run skipped cases; every path must run"
    assert set(SECTIONS) <= set(report["sections"])
    for name in SECTIONS:
        assert report["sections"][name].get("status", "ok") == "ok", name
    s = report["sections"]

    ran = [v for v in s["finetune"]["variants"].values() if v["status"] == "ok"]
    assert ran, "no fine-tuning variant ran"
    assert all(v["residues_per_s"] > 0 and v["peak_gb"] > 0 for v in ran)
    for name in ("baseline", "lora"):
        row = s["finetune"]["max_length"][name]
        if row["status"] != "skipped":
            assert any(k.endswith("GB") for k in row)

    for row in s["embed"]["results"].values():
        if row.get("status") != "skipped":
            assert row["finite"] and row["bulk_vs_loop"] > 0  # measured; a ratio is not a test

    runs = s["fold"]["runs"]
    assert any(k.endswith("chunk-None") and r["status"] == "ok" for k, r in runs.items())
    assert s["fold"]["agreement"], "no chunked/unchunked pair was compared"
    for agr in s["fold"]["agreement"].values():
        assert agr["max_abs_dplddt"] <= 0.1 and agr["max_coord_diff_A"] <= 0.05
        assert agr["abs_dptm"] <= 1e-3

    assert s["precision"]["embed"]["float32"]["finite"]
    assert s["precision"]["fold"]["float32/lm"]["nonfinite"] == []
