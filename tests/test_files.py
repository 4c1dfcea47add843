"""`protein_lm.files`: atomic writes, the umask, stale temporary folders and the delimiter rule."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from protein_lm.files import (
    atomic_file,
    atomic_output_dir,
    atomic_write_text,
    current_umask,
    read_rows,
    sniff_delimiter,
    staged_files,
)


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_reads_without_changing_it(umask_022: None) -> None:
    assert current_umask() == 0o022
    assert current_umask() == 0o022


def test_atomic_file_replaces_on_success_and_follows_the_umask(tmp_path: Path) -> None:
    out = tmp_path / "x.bin"
    out.write_bytes(b"old")
    old = os.umask(0o077)
    try:
        with atomic_file(out) as tmp:
            assert tmp.parent == tmp_path and tmp != out
            tmp.write_bytes(b"new")
            assert out.read_bytes() == b"old"  # nothing visible until the block ends
    finally:
        os.umask(old)
    assert out.read_bytes() == b"new" and _mode(out) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt], ids=["error", "ctrl-c"])
def test_atomic_file_removes_the_temp_and_keeps_the_old_file_on_failure(
    tmp_path: Path, error: type[BaseException]
) -> None:
    out = tmp_path / "x.npz"
    out.write_bytes(b"old")
    with pytest.raises(error), atomic_file(out) as tmp:
        tmp.write_bytes(b"half")
        raise error
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def test_atomic_write_text_follows_the_umask(tmp_path: Path, umask_022: None) -> None:
    atomic_write_text(tmp_path / "a.txt", "héllo\n")
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert _mode(tmp_path / "a.txt") == 0o644
    assert not list(tmp_path.glob(".*.tmp"))


def test_atomic_output_dir_removes_stale_folders_and_follows_the_umask(
    tmp_path: Path, umask_022: None
) -> None:
    dead = tmp_path / ".run.999999999.abcd1234.tmp"  # a killed run's folder: no such process
    old = tmp_path / ".run.old-999999999"  # killed between the two renames of an overwrite
    alive = tmp_path / f".run.{os.getppid()}.abcd1234.tmp"  # another run, still writing
    for d in (dead, old, alive):
        d.mkdir()
    with atomic_output_dir(tmp_path / "run") as tmp:
        (tmp / "model.safetensors").write_bytes(b"w")
        os.chmod(tmp / "model.safetensors", 0o600)  # as mkstemp-based writers leave it
    out = tmp_path / "run"
    assert not dead.exists() and not old.exists() and alive.exists()
    assert _mode(out) == 0o755 and _mode(out / "model.safetensors") == 0o644


def test_atomic_output_dir_leaves_nothing_on_failure(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_output_dir(tmp_path / "run") as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_staged_files_moves_complete_files_in_and_keeps_others(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "README.md").write_text("card")
    (out / "config.json").write_text("old")
    with staged_files(out) as tmp:
        (tmp / "config.json").write_text("new")
        (tmp / "model.safetensors").write_bytes(b"w")
        assert not (out / "model.safetensors").exists()
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json",
                                                     "model.safetensors"]
    assert (out / "config.json").read_text() == "new"
    with pytest.raises(RuntimeError), staged_files(out) as tmp:
        (tmp / "config.json").write_text("half")
        raise RuntimeError
    assert (out / "config.json").read_text() == "new"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    ("name", "header", "delimiter"),
    [
        ("a.csv", "id,sequence", ","),
        ("a.csv", "id\tsequence", "\t"),  # tab-separated but named .csv
        ("a.tsv", "sequence", "\t"),  # one column: the suffix decides
        ("a.TAB", "", "\t"),
        ("a.txt", "id\tsequence", "\t"),
        ("a.txt", "mutant", ","),
        ("a.tsv", "", "\t"),  # a writer passes no header
        ("a.csv", "", ","),
    ],
)
def test_one_delimiter_rule(name: str, header: str, delimiter: str) -> None:
    assert sniff_delimiter(name, header) == delimiter


def test_read_rows_sniffs_the_header(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("id\tsequence\nq1\tMK,T\n")
    assert list(read_rows(p)) == [{"id": "q1", "sequence": "MK,T"}]
    assert list(read_rows(p, "a,b\n1,2\n")) == [{"a": "1", "b": "2"}]


@pytest.mark.parametrize("sep", [",", "\t"], ids=["comma", "tab"])
def test_tab_separated_csv_reads_the_same_for_finetune_predict_and_score(
    tmp_path: Path, sep: str
) -> None:
    """Regression: a TSV named `.csv` trained (sniffed), then failed at `predict` (by suffix)."""
    pytest.importorskip("datasets")
    pytest.importorskip("pandas")
    from protein_lm.data import read_table
    from protein_lm.finetuning.reporting import read_predict_input
    from protein_lm.variants import read_mutations

    rows = [("p1", "MKTAYIAK", "soluble"), ("p2", "GGSWLLV", "membrane")]
    path = tmp_path / "train.csv"
    path.write_text("\n".join(sep.join(r) for r in [("id", "sequence", "label"), *rows]) + "\n")
    expected = [(rid, seq) for rid, seq, _ in rows]

    table = read_table(path, "sequence-classification")
    assert list(zip(table["id"], table["sequence"])) == expected
    assert list(table["label"]) == ["soluble", "membrane"]
    assert [(r.id, r.sequence) for r in read_predict_input(path)] == expected
    frame = read_mutations(path, column="sequence")
    assert list(frame.columns) == ["id", "sequence", "label"]
    assert list(zip(frame["id"], frame["sequence"])) == expected


def test_write_table_round_trips_every_tab_suffix(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    from protein_lm.data import read_table, write_table

    ds = datasets.Dataset.from_dict({"id": ["a"], "sequence": ["MKT"], "label": ["x"]})
    for name in ("t.csv", "t.tsv", "t.tab"):
        write_table(ds, tmp_path / name)
        assert read_table(tmp_path / name, "sequence-classification").to_list() == ds.to_list()
    assert (tmp_path / "t.tab").read_text().splitlines()[0] == "id\tsequence\tlabel"


def _hold_lock_in_child(path: Path, shard: tuple[int, int]) -> Iterator[int]:
    """A child process holding `output_lock(path, shard)` until the generator resumes."""
    import subprocess
    import sys

    code = ("import sys; from protein_lm.files import output_lock\n"
            f"with output_lock({str(path)!r}, {shard!r}):\n"
            "    print('ready', flush=True); sys.stdin.readline()\n")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        yield child.pid
    finally:
        child.communicate("\n", timeout=60)


def test_output_lock_one_writer_per_output_and_per_shard(tmp_path: Path) -> None:
    from protein_lm.errors import InvalidInputError
    from protein_lm.files import output_lock

    out = tmp_path / "emb.npz"
    holder = _hold_lock_in_child(out, (0, 2))
    pid = next(holder)
    with output_lock(out, (1, 2)):  # the other shard of the same job runs beside it
        pass
    for shard in ((0, 2), (0, 1)):  # the same shard again, or a whole-output run: refused
        with pytest.raises(InvalidInputError, match=rf"emb.npz is being written by another run "
                           rf"\(pid {pid}\); wait for it or choose another output"):
            with output_lock(out, shard):
                pass
    next(holder, None)  # the child exits, releasing its locks
    with output_lock(out):
        assert (tmp_path / ".emb.npz.lock").read_text() == f"{os.getpid()}\n"
    assert list(tmp_path.iterdir()) == []  # lock files are removed by the last holder


def test_atomic_output_dir_writes_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "store" / "run1"
    target.mkdir(parents=True)
    link = tmp_path / "run"
    link.symlink_to(target, target_is_directory=True)
    with atomic_output_dir(link) as tmp:
        (tmp / "model.safetensors").write_bytes(b"w")
    assert link.is_symlink() and (target / "model.safetensors").read_bytes() == b"w"
    with atomic_output_dir(link, overwrite=True) as tmp:
        (tmp / "config.json").write_text("{}")
    assert link.is_symlink() and sorted(p.name for p in target.iterdir()) == ["config.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "store"]
    assert sorted(p.name for p in target.parent.iterdir()) == ["run1"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_atomic_output_dir_refuses_a_regular_file(tmp_path: Path, overwrite: bool) -> None:
    from protein_lm.errors import InvalidInputError

    afile = tmp_path / "afile"
    afile.write_text("mine")
    with pytest.raises(InvalidInputError, match=r"'.*afile' is a file, not a folder"):
        with atomic_output_dir(afile, overwrite=overwrite):
            pass
    assert afile.read_text() == "mine" and list(tmp_path.iterdir()) == [afile]


def test_atomic_file_removes_temp_files_of_dead_writers_of_that_output_only(
    tmp_path: Path,
) -> None:
    import socket

    host = socket.gethostname().split(".")[0]
    host = "".join(c if c.isalnum() or c == "-" else "-" for c in host) or "host"
    dead = tmp_path / f".emb.npz.999999999@{host}.abcd1234.tmp"  # killed mid-save: torn
    alive = tmp_path / f".emb.npz.{os.getppid()}@{host}.abcd1234.tmp"  # a live write
    remote = tmp_path / ".emb.npz.999999999@elsewhere.abcd1234.tmp"  # pid of another host
    other = tmp_path / f".emb.npz.x.999999999@{host}.abcd1234.tmp"  # output `emb.npz.x`
    for f in (dead, alive, remote, other):
        f.write_bytes(b"torn")
    atomic_write_text(tmp_path / "emb.npz", "new")
    assert not dead.exists() and alive.exists() and remote.exists() and other.exists()
    assert (tmp_path / "emb.npz").read_text() == "new"


def test_atomic_file_writes_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(tmp_path / "real.txt")
    atomic_write_text(link, "new")
    assert link.is_symlink() and (tmp_path / "real.txt").read_text() == "new"


def test_output_lock_leaves_nothing_when_the_run_writes_nothing(tmp_path: Path) -> None:
    from protein_lm.errors import InvalidInputError
    from protein_lm.files import output_lock

    with pytest.raises(RuntimeError), output_lock(tmp_path / "a" / "b" / "o.csv"):
        assert (tmp_path / "a" / "b" / ".o.csv.lock").is_file()
        raise RuntimeError  # e.g. the model failed to load
    assert list(tmp_path.iterdir()) == []
    with output_lock(tmp_path / "a" / "o.csv"):
        (tmp_path / "a" / "o.csv").write_text("x")
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["o.csv"]
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidInputError, match=r"'.*f/o' is not writable"):
        with output_lock(tmp_path / "f" / "o"):
            pass
