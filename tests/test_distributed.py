"""Shards and ranks: parsing, blocks, `--shard i/n` jobs then a merge, and real 2-process torchrun
runs of `embed`, `fold` and `score` on CPU giving the same outputs as one process (issue #12)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from protein_lm.distributed import (
    block,
    check_shard,
    deal,
    parse_shard,
    process_group,
    rank_device,
    shard_from_env,
)
from protein_lm.errors import InvalidInputError

LENGTHS = (30, 12, 41, 25, 18, 36)


def _fasta(path: Path) -> Path:
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), n)) for n in LENGTHS]
    path.write_text("".join(f">r{k} record {k}\n{s}\n" for k, s in enumerate(seqs)))
    return path


# ---------------------------------------------------------------- units (no torch needed)
def test_parse_shard() -> None:
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2", "1/2/3"):
        with pytest.raises(InvalidInputError, match="shard"):
            parse_shard(bad)


def test_shard_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert shard_from_env() == (0, 1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert shard_from_env() == (1, 3)
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(InvalidInputError, match="need 0 <= RANK < WORLD_SIZE"):
        shard_from_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(InvalidInputError, match="must be integers"):
        shard_from_env()


@pytest.mark.parametrize("n_items", [0, 1, 5, 8, 13], ids=lambda n: f"N{n}")
def test_blocks_are_contiguous_balanced_and_cover_everything(n_items: int) -> None:
    for n in range(1, 5):
        blocks = [block(n_items, (i, n)) for i in range(n)]
        assert [k for b in blocks for k in b] == list(range(n_items))
        assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
    with pytest.raises(ValueError, match="0 <= i < n"):
        block(3, (2, 2))


@pytest.mark.parametrize("seed", range(5))
def test_deal_covers_every_index_once_balanced_within_the_largest_item(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for n_items in (0, 1, 7, 50):
        costs = rng.integers(1, 1000, n_items).tolist()
        for n in range(1, 6):
            shards = [deal(costs, (i, n)) for i in range(n)]
            assert all(s == sorted(s) for s in shards)  # input order
            assert sorted(k for s in shards for k in s) == list(range(n_items))
            loads = [sum(costs[k] for k in s) for s in shards]
            assert max(loads) - min(loads) <= max(costs, default=0)
            assert [deal(costs, (i, n)) for i in range(n)] == shards  # deterministic


def test_deal_longest_first_ties_by_index_and_zero_costs() -> None:
    # 5 -> shard 0, 4 -> 1, 3 -> 1, 2 -> 0, 1 -> 0 (7 and 7: the lower shard)
    assert [deal([5, 1, 4, 2, 3], (i, 2)) for i in range(2)] == [[0, 1, 3], [2, 4]]
    assert [deal([1, 1, 1, 1], (i, 3)) for i in range(3)] == [[0, 3], [1], [2]]  # round-robin
    assert [deal([0, 0], (i, 2)) for i in range(2)] == [[0], [1]]
    assert deal([3, 1], (0, 1)) == [0, 1]


def test_one_shard_check_with_each_callers_message() -> None:
    assert check_shard(1, 3) == (1, 3)
    for bad in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(InvalidInputError, match=r"`shard` must be \(i, n\) with 0 <= i < n"):
            check_shard(*bad)
        with pytest.raises(ValueError, match=rf"0 <= i < n, got \({bad[0]}, {bad[1]}\)"):
            deal([1, 2], bad)
    with pytest.raises(InvalidInputError, match=r"--shard '4/4': need 0 <= i < n"):
        parse_shard("4/4")
    with pytest.raises(ValueError, match="finite and >= 0"):
        deal([1, -1], (0, 2))
    with pytest.raises(ValueError, match="finite and >= 0"):
        deal([float("nan")], (0, 1))


def test_alone_without_launcher_and_a_clear_error_without_master(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with process_group() as group:
        assert (group.rank, group.world, group.is_main) == (0, 1, True)
        group.barrier()
        assert group.all_gather(7) == [7] and group.broadcast("x") == "x"
    assert rank_device("cpu") == "cpu" and rank_device() is None
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InvalidInputError, match="launch with torchrun"):
        with process_group():
            pass


def test_explicit_cuda_under_torchrun_is_each_ranks_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #18: `torchrun ... --device cuda` put every rank on cuda:0."""
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert rank_device("cuda") == "cuda:3"
    assert rank_device("cuda:1") == "cuda:1" and rank_device("cpu") == "cpu"
    monkeypatch.delenv("LOCAL_RANK")
    assert rank_device("cuda") == "cuda"


# ---------------------------------------------------------------- with the tiny models
torch = pytest.importorskip("torch")

from protein_lm.cli import main  # noqa: E402
from protein_lm.embedding_store import load_embeddings  # noqa: E402


def test_embed_shard_jobs_then_a_merge_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """Slurm-array style: `--shard i/n` jobs fill OUT.parts/, a run without --shard merges."""
    import protein_lm.embedding_store as store

    fasta, out = _fasta(tmp_path / "in.fasta"), tmp_path / "e.npz"
    args = ["embed", "--model", "tiny", str(fasta), "-o", str(out), "--shard-size", "2",
            "--no-progress"]
    assert main([*args, "--shard", "1/2"]) == 0
    assert sorted(p.name for p in (tmp_path / "e.npz.parts").glob("shard-*")) == [
        "shard-00000.npz", "shard-00002.npz"]  # files of 42, 66, 54 residues: job 0 takes 66
    assert not out.exists() and "rerun without --shard to merge" in caplog.text
    assert main([*args, "--shard", "0/2"]) == 0 and not out.exists()
    calls = []
    real = store.embed
    monkeypatch.setattr(store, "embed", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main(args) == 0 and calls == []  # the merge embeds nothing
    assert load_embeddings(out).ids == tuple(f"r{k}" for k in range(6))
    assert not (tmp_path / "e.npz.parts").exists()


def test_score_blocks_together_equal_one_run() -> None:
    import pandas as pd

    from protein_lm.models import load_model
    from protein_lm.variants import score_dataframe

    model = load_model("tiny", "masked-lm", device="cpu").eval()
    wt = "MKTAYIAKQRQISFVKSHFSRQ"
    table = pd.DataFrame({"mutant": ["K2A", "B2A", "T3G", "A4W:I6L", "R10E", "S13C", "K2R"]})
    whole, _ = score_dataframe(model, wt, table, on_error="skip")
    parts = [score_dataframe(model, wt, table, on_error="skip", shard=(i, 3))[0]
             for i in range(3)]
    col = "score_masked-marginals"
    mine = [np.flatnonzero(p[col].notna()).tolist() for p in parts]
    # 6 valid rows (1 is bad) in 5 groups by masked positions, dealt by passes: A4W:I6L (2) to
    # shard 0; K2A and K2R (position 2) together
    assert mine == [[3], [0, 4, 6], [2, 5]]
    merged = parts[0][col].to_numpy()
    for p in parts[1:]:
        merged = np.where(np.isnan(merged), p[col], merged)
    np.testing.assert_allclose(merged, whole[col], rtol=0, atol=1e-6, equal_nan=True)


# ---------------------------------------------------------------- torchrun, 2 CPU processes
def _torchrun(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """`torchrun --standalone --nproc-per-node 2 -m protein_lm.cli ARGV` in `tmp_path`. Each
    rank builds `tiny` itself: the equal outputs below also show the seeded weights agree."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "protein_lm.cli", *argv, "--no-progress"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_torchrun_embed_matches_one_process(tmp_path: Path) -> None:
    fasta = _fasta(tmp_path / "in.fasta")
    opts = ["--per-residue", "--layers", "0", "-1", "--shard-size", "2"]
    _torchrun(tmp_path, "embed", "--model", "tiny", str(fasta), "-o", "two.npz", *opts)
    assert not (tmp_path / "two.npz.parts").exists()
    assert main(["embed", "--model", "tiny", str(fasta), "-o", str(tmp_path / "one.npz"),
                 *opts, "--no-progress"]) == 0
    one, two = load_embeddings(tmp_path / "one.npz"), load_embeddings(tmp_path / "two.npz")
    assert two.ids == one.ids == tuple(f"r{k}" for k in range(6))
    assert two.layers == one.layers and np.array_equal(two.lengths, one.lengths)
    for layer in one.layers:
        np.testing.assert_allclose(two.mean[layer], one.mean[layer], rtol=0, atol=1e-5)
        for a, b in zip(two.per_residue[layer], one.per_residue[layer]):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def _coords(pdb: Path) -> np.ndarray:
    return np.array([[float(line[30:38]), float(line[38:46]), float(line[46:54])]
                     for line in pdb.read_text().splitlines() if line.startswith("ATOM")])


def _rows(summary: Path) -> list[dict[str, str]]:
    with summary.open() as f:  # `seconds` is wall time: the one column that may differ
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(f)]


def test_torchrun_fold_matches_one_process(tmp_path: Path) -> None:
    fasta = _fasta(tmp_path / "in.fasta")
    proc = _torchrun(tmp_path, "fold", "--model", "tiny", str(fasta), "-o", "two")
    assert proc.stdout.count("folded 6, skipped 0 (already done), failed 0") == 1  # rank 0 only
    assert main(["fold", "--model", "tiny", str(fasta), "-o", str(tmp_path / "one"),
                 "--no-progress"]) == 0
    one, two = tmp_path / "one", tmp_path / "two"
    names = sorted(p.name for p in one.iterdir())
    # 6 structures, 6 scores, summary.csv, manifest.json and provenance/ (sequence hashes)
    assert sorted(p.name for p in two.iterdir()) == names and len(names) == 15
    assert sorted(p.name for p in (two / "provenance").iterdir()) == [
        f"r{k}.sha256" for k in range(6)]
    for k in range(6):
        a, b = _coords(one / f"r{k}.pdb"), _coords(two / f"r{k}.pdb")
        assert a.shape == b.shape and len(a) > 0
        np.testing.assert_allclose(b, a, rtol=0, atol=1.001e-3)  # PDB: 3 decimals (rounding)
        sa, sb = (json.loads((d / f"r{k}_scores.json").read_text()) for d in (one, two))
        assert sa.keys() == sb.keys()
        for key in sa:  # per-residue pLDDT, PAE, pTM at full precision
            np.testing.assert_allclose(np.asarray(sb[key], float), np.asarray(sa[key], float),
                                       rtol=0, atol=1e-4)
    assert _rows(two / "summary.csv") == _rows(one / "summary.csv")
    assert {r["status"] for r in _rows(two / "summary.csv")} == {"ok"}


def test_torchrun_score_matches_one_process(tmp_path: Path) -> None:
    muts = tmp_path / "m.csv"
    muts.write_text("mutant,fitness\nK2A,1\nT3G,2\nA4W:I6L,3\nR10E,4\nS13C,5\nK2R,6\nR21W,7\n")
    args = ["score", "--model", "tiny", "--sequence", "MKTAYIAKQRQISFVKSHFSRQ", "--mutations",
            str(muts), "--strategy", "wt-marginals", "masked-marginals"]
    _torchrun(tmp_path, *args, "-o", "two.csv")
    assert main([*args, "-o", str(tmp_path / "one.csv"), "--no-progress"]) == 0
    assert (tmp_path / "two.csv").read_text() == (tmp_path / "one.csv").read_text()


def test_job_shard_is_parsed_alone_and_refused_under_torchrun() -> None:
    from protein_lm.distributed import Group

    assert Group().job_shard(None) is None
    assert Group().job_shard("1/3") == (1, 3)
    with pytest.raises(InvalidInputError, match="drop --shard"):
        Group(rank=0, world=2).job_shard("0/2")


def test_process_group_timeout_is_bounded_and_says_what_happened(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #18: a hanging rank held the others for gloo's 7-day default timeout."""
    import socket
    import subprocess
    import sys

    from protein_lm.distributed import DEFAULT_TIMEOUT_S, dist_timeout

    monkeypatch.delenv("PROTEIN_LM_DIST_TIMEOUT_S", raising=False)
    assert dist_timeout().total_seconds() == DEFAULT_TIMEOUT_S < 7 * 24 * 3600
    monkeypatch.setenv("PROTEIN_LM_DIST_TIMEOUT_S", "0")
    with pytest.raises(InvalidInputError, match="PROTEIN_LM_DIST_TIMEOUT_S must be"):
        dist_timeout()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code = ("import sys, time\nfrom protein_lm.distributed import process_group\n"
            "with process_group() as g:\n"
            "    if g.rank == 0:\n        g.barrier()\n"
            "    else:\n        time.sleep(12)\n")  # rank 1 hangs: never reaches the barrier
    env = {**__import__("os").environ, "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port), "PROTEIN_LM_DIST_TIMEOUT_S": "3", "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", code], env={**env, "RANK": str(r),
                              "LOCAL_RANK": str(r)}, stderr=subprocess.PIPE, text=True)
             for r in (0, 1)]
    err0 = procs[0].communicate(timeout=60)[1]
    procs[1].kill()
    procs[1].communicate()
    assert procs[0].returncode != 0
    assert "TimeoutError: rank 0 of 2 waited 0:00:03 for the other processes" in err0, err0[-2000:]
