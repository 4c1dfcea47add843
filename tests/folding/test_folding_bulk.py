"""Bulk folding: files, summary.csv, bad records reported, resume after a kill, shards, CLI."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("biotite")
import biotite.structure.io as bio_io  # noqa: E402

from protein_lm.cli import main  # noqa: E402
from protein_lm.distributed import parse_shard  # noqa: E402
from protein_lm.errors import InvalidInputError  # noqa: E402
from protein_lm.folding.bulk import fold_fasta, safe_filename  # noqa: E402
from protein_lm.folding.esmfold import load_folding_model  # noqa: E402
from protein_lm.folding.runtime import Folder  # noqa: E402

SEQS = {
    "p1": "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ",
    "sp|P2|X_HUMAN": "NLYIQWLKDGGPSSGRPPPS",
    "dimer": "MKTAYIAKQR:GSHMLEDPVDAFQ",
    "p4": "ACDEFGHIKLMNPQRSTVWYACDEFGHIKLMN",
    "p5": "GSHMLEDPVDAFQKVFGRCELAAAMKRHGLDNYRG",
    "p6": "KVFGRCELAAAMKRHGLDNY",
}


def _fasta(path: Path, seqs: dict[str, str]) -> Path:
    path.write_text("".join(f">{k} some description\n{v}\n" for k, v in seqs.items()))
    return path


def _summary(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "summary.csv", newline="") as fh:
        return {row["id"]: row for row in csv.DictReader(fh)}


def _complete(path: Path, residues: int) -> None:
    """The file parses with biotite and holds every residue (so it is not truncated)."""
    arr = bio_io.load_structure(str(path), model=1)
    assert len(set(zip(arr.chain_id.tolist(), arr.res_id.tolist(), strict=True))) == residues


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts how often each record id is folded (successfully)."""
    counts: Counter = Counter()
    real_run = Folder.run

    def run(self, items, device, chunk):
        out = real_run(self, items, device, chunk)
        counts.update(it.id for it in items)
        return out

    monkeypatch.setattr(Folder, "run", run)
    return counts


@pytest.mark.parametrize("fmt", ["pdb", "cif"])
def test_bulk_writes_one_file_per_record_and_a_summary(model, tmp_path: Path, fmt: str) -> None:
    bad = {"bad letter": "MKTJAYI", "trailing": "MKT:", "long": "A" * 60}
    fasta = _fasta(tmp_path / "in.fasta", {**SEQS, **bad})
    report = fold_fasta(fasta, tmp_path / "out", model, fmt=fmt, progress=False, max_length=50)
    out = tmp_path / "out"
    assert (report.folded, report.skipped, report.failed) == (6, 0, 3)
    assert sorted(p.name for p in out.glob(f"*.{fmt}")) == sorted(
        f"{safe_filename(k)}.{fmt}" for k in SEQS
    )
    rows = _summary(out)
    assert list(rows) == [*SEQS, "bad", "trailing", "long"]  # id: the header up to the first space
    for rid, seq in SEQS.items():
        row = rows[rid]
        assert row["status"] == "ok" and int(row["length"]) == len(seq.replace(":", ""))
        assert 0 <= float(row["mean_plddt"]) <= 100 and 0 < float(row["ptm"]) < 1
        assert float(row["seconds"]) > 0
        _complete(out / row["file"], len(seq.replace(":", "")))
        scores = json.loads((out / f"{safe_filename(rid)}_scores.json").read_text())
        assert np.shape(scores["pae"]) == (int(row["length"]),) * 2
        assert float(row["ptm"]) == pytest.approx(scores["ptm"], abs=1e-4)
        assert ("iptm" in scores) == (":" in seq)  # multimers only
    assert not list(out.glob("bad*")) and not list(out.glob("long*"))
    assert (
        rows["bad"]["status"] == "failed:invalid" and "'J' at position 4" in rows["bad"]["message"]
    )
    assert (
        rows["long"]["status"] == "failed:too-long"
        and rows["trailing"]["status"] == "failed:invalid"
    )
    assert sorted(p.name for p in (out / "errors").iterdir()) == [
        "bad.txt",
        "long.txt",
        "trailing.txt",
    ]


def test_too_long_and_separator_errors_are_in_the_summary(model, tmp_path: Path) -> None:
    fasta = _fasta(tmp_path / "in.fasta", {"ok": SEQS["p6"], "trail": "MKT:", "long": "A" * 60})
    report = fold_fasta(fasta, tmp_path / "out", model, progress=False, max_length=50)
    rows = _summary(tmp_path / "out")
    assert report.failed == 2 and rows["ok"]["status"] == "ok"
    assert (
        rows["trail"]["status"] == "failed:invalid"
        and "at the end of 'trail'" in rows["trail"]["message"]
    )
    assert (
        rows["long"]["status"] == "failed:too-long" and "max_length 50" in rows["long"]["message"]
    )


def test_resume_after_simulated_kill_folds_nothing_twice(
    model, tmp_path: Path, counting: Counter, monkeypatch: pytest.MonkeyPatch
) -> None:
    fasta, out = _fasta(tmp_path / "in.fasta", SEQS), tmp_path / "out"
    from protein_lm.folding import bulk as bulk_folding

    real_write, written = bulk_folding._write, []

    def write_then_die(out_dir, name, result, fmt):
        if len(written) == 3:
            raise KeyboardInterrupt  # the "kill" lands between two records
        written.append(name)
        return real_write(out_dir, name, result, fmt)

    monkeypatch.setattr(bulk_folding, "_write", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        fold_fasta(fasta, out, model, max_tokens=1, progress=False)  # one record per batch
    assert len(list(out.glob("*.pdb"))) == 3
    assert Counter(_summary(out)[r]["status"] for r in SEQS) == {
        "ok": 3,
        "pending": 3,
    }  # written in finally

    monkeypatch.setattr(bulk_folding, "_write", real_write)
    first = Counter(counting)
    report = fold_fasta(fasta, out, model, max_tokens=1, progress=False)
    assert (report.skipped, report.folded, report.failed) == (3, 3, 0)
    again = counting - first
    assert set(again).isdisjoint(written_ids := {r for r in SEQS if safe_filename(r) in written})
    assert set(again) | written_ids == set(SEQS) and all(v == 1 for v in again.values())
    for rid, seq in SEQS.items():
        _complete(out / f"{safe_filename(rid)}.pdb", len(seq.replace(":", "")))
    assert not list(out.glob(".*.tmp"))


def test_resume_removes_a_truncated_temp_file_and_refolds_it(
    model, tmp_path: Path, counting: Counter
) -> None:
    fasta, out = (
        _fasta(tmp_path / "in.fasta", {"a": SEQS["p1"], "b": SEQS["p6"]}),
        tmp_path / "out",
    )
    fold_fasta(fasta, out, model, progress=False)
    (out / "b.pdb").unlink()
    (out / ".b.pdb.x1y2.tmp").write_text("ATOM      1  N   MET A   1      ")  # killed mid-write
    counting.clear()
    report = fold_fasta(fasta, out, model, progress=False)
    assert report.skipped == 1 and report.folded == 1 and dict(counting) == {"b": 1}
    assert not list(out.glob(".*.tmp"))
    _complete(out / "b.pdb", len(SEQS["p6"]))


def test_resume_refolds_a_record_whose_scores_json_is_missing(
    model, tmp_path: Path, counting: Counter
) -> None:
    fasta = _fasta(tmp_path / "in.fasta", {"a": SEQS["p1"], "b": SEQS["p6"]})
    out = tmp_path / "out"
    fold_fasta(fasta, out, model, progress=False)
    (out / "b_scores.json").unlink()  # e.g. an output folder from before scores JSON existed
    assert _summary(out)["a"]["status"] == "ok"
    assert write_summary_status(fasta, out)["b"] == "pending"
    counting.clear()
    report = fold_fasta(fasta, out, model, progress=False)
    assert (report.skipped, report.folded) == (1, 1) and dict(counting) == {"b": 1}
    assert json.loads((out / "b_scores.json").read_text())["plddt"]


def write_summary_status(fasta: Path, out: Path) -> dict[str, str]:
    """Statuses of a summary rebuilt from the files now in `out`."""
    from protein_lm.folding.bulk import write_summary
    from protein_lm.sequences import read_fasta

    write_summary(read_fasta(fasta, validate_sequences=False), out, "pdb")
    return {rid: row["status"] for rid, row in _summary(out).items()}


def test_shards_are_disjoint_and_cover_everything(
    model, tmp_path: Path, counting: Counter
) -> None:
    fasta, out = _fasta(tmp_path / "in.fasta", SEQS), tmp_path / "out"
    r0 = fold_fasta(fasta, out, model, shard=(0, 2), progress=False)
    assert Counter(_summary(out)[r]["status"] for r in SEQS) == {"ok": 3, "pending": 3}
    r1 = fold_fasta(fasta, out, model, shard=(1, 2), progress=False)
    assert r0.folded == r1.folded == 3 and sorted(counting) == sorted(SEQS)
    assert all(v == 1 for v in counting.values())
    assert {row["status"] for row in _summary(out).values()} == {"ok"}


def test_resume_after_a_real_sigkill(tmp_path: Path, counting: Counter, model) -> None:
    many = {f"r{k:02d}": SEQS["p1"][k % 7 :] for k in range(12)}
    fasta, out = _fasta(tmp_path / "in.fasta", many), tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "protein_lm.cli",
        "fold",
        str(fasta),
        "-o",
        str(out),
        "--model",
        "tiny",
        "--max-tokens",
        "1",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while (
            len(list(out.glob("*.pdb"))) < 2
            and time.monotonic() < deadline
            and proc.poll() is None
        ):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done_before = {p.stem for p in out.glob("*.pdb")}
    assert 2 <= len(done_before) < len(many), "the kill should land mid-run"
    for name in done_before:  # files present after SIGKILL are complete
        _complete(out / f"{name}.pdb", len(many[name]))
    report = fold_fasta(fasta, out, model, max_tokens=1, progress=False)
    assert report.skipped == len(done_before) and report.folded == len(many) - len(done_before)
    assert set(counting).isdisjoint(done_before) and all(v == 1 for v in counting.values())
    assert not list(out.glob(".*.tmp"))
    assert {row["status"] for row in _summary(out).values()} == {"ok"}


def test_unwritable_output_dir_and_name_collisions(tmp_path: Path, model) -> None:
    fasta = _fasta(tmp_path / "in.fasta", {"a": SEQS["p6"]})
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="not writable.*-o/--output-dir"):
        fold_fasta(fasta, tmp_path / "file" / "out", model, progress=False)
    clash = _fasta(tmp_path / "clash.fasta", {"a|b": SEQS["p6"], "a_b": SEQS["p6"]})
    with pytest.raises(InvalidInputError, match="'a|b' and 'a_b' map to the same file name"):
        fold_fasta(clash, tmp_path / "out", model, progress=False)


def test_safe_filename_and_shard_parsing() -> None:
    assert safe_filename("sp|P69905|HBA HUMAN/1") == "sp_P69905_HBA_HUMAN_1"
    assert safe_filename("..hidden") == "_.hidden"
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(InvalidInputError, match="shard"):
            parse_shard(bad)


def _fold_cif(fasta: Path, out: Path, *extra: str) -> int:
    """`protein-lm fold` with the tiny model, mmCIF output and no progress bar."""
    return main(["fold", str(fasta), "-o", str(out), "--model", "tiny", "--format", "cif",
                 "--no-progress", *extra])


def test_cli_fold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fasta = _fasta(tmp_path / "in.fasta", {"a": SEQS["p6"], "d": SEQS["dimer"]})
    out = tmp_path / "out"
    assert _fold_cif(fasta, out, "--chunk-size", "8") == 0
    assert "folded 2, skipped 0" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.cif")) == ["a.cif", "d.cif"]
    assert _fold_cif(fasta, out) == 0
    assert "folded 0, skipped 2" in capsys.readouterr().out
    _fasta(tmp_path / "bad.fasta", {"a": SEQS["p6"], "b": "MKTJ"})
    assert _fold_cif(tmp_path / "bad.fasta", out) == 1  # a record failed, the others are done
    assert main(["fold", str(fasta), "-o", str(out), "--model", "tiny", "--chunk-size", "x"]) == 2
    assert main(["fold", str(fasta), "-o", str(out), "--model", "tiny", "--shard", "3/2"]) == 2
    (tmp_path / "file").write_text("x")
    assert main(["fold", str(fasta), "-o", str(tmp_path / "file" / "o"), "--model", "tiny"]) == 2
    assert "not writable" in capsys.readouterr().err


def test_cli_fold_reports_each_failed_record_at_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    fasta = _fasta(tmp_path / "in.fasta", {"a": SEQS["p6"], "b": "MKTJ", "c": "MKT:"})
    out = tmp_path / "out"
    with caplog.at_level("INFO", logger="protein_lm"):
        assert main(["fold", str(fasta), "-o", str(out), "--model", "tiny", "--no-progress"]) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 3, warnings
    assert warnings[0].startswith("b: not folded (invalid): Invalid residue 'J' at position 4")
    assert warnings[1].startswith("c: not folded (invalid): Chain separator ':' at the end")
    assert all("\n" not in w for w in warnings)
    assert warnings[2].startswith("2 record(s) not folded") and str(out / "errors") in warnings[2]
    assert "folded 1, skipped 0 (already done), failed 2" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "errors").iterdir()) == ["b.txt", "c.txt"]


def test_non_finite_prediction_is_a_failed_record_and_nothing_is_written(tmp_path: Path) -> None:
    """Issue #12: NaN from an overflowing LM becomes failed:non-finite, never a NaN file."""
    model = load_folding_model("tiny", device="cpu")

    def hook(module, args, output):
        return output * float("inf")

    handle = model.esm.embeddings.register_forward_hook(hook)
    try:
        fasta = _fasta(tmp_path / "in.fasta", {"p6": SEQS["p6"]})
        report = fold_fasta(fasta, tmp_path / "out", model, progress=False)
    finally:
        handle.remove()
    out = tmp_path / "out"
    assert (report.folded, report.failed) == (0, 1)
    assert not list(out.glob("p6*.pdb")) and not list(out.glob("*_scores.json"))
    row = _summary(out)["p6"]
    assert row["status"] == "failed:non-finite" and "language model" in row["message"]
    assert (out / "errors" / "p6.txt").read_text().startswith("non-finite\t")
