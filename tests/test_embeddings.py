"""Embeddings: pooling excludes special tokens and padding, fair-esm parity, long policy, bulk I/O."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from protein_lm.embedding_store import (  # noqa: E402
    embed_to_file,
    load_embeddings,
    save_embeddings,
    to_dataset,
)
from protein_lm.embeddings import MAX_RESIDUES, batch_plan, embed  # noqa: E402
from protein_lm.errors import InvalidInputError, InvalidSequenceError  # noqa: E402
from protein_lm.models import load_model  # noqa: E402
from protein_lm.tokenization import encode  # noqa: E402

SMALL = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
         "intermediate_size": 128}
SEQS = {"p1": "MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQ", "p2": "MKTAYIAK", "p3": "GWGWGWGW",
        "p4": "MADEEKLPPGWEKRMSRSSGRVYYFNHITNASQWERPSG"}


@pytest.fixture(scope="module")
def model():
    return load_model("tiny", config_overrides=SMALL).eval()


def test_mean_excludes_special_tokens_and_padding(model) -> None:
    batch = embed(model, SEQS, layers=[0, 1, -1], strategy="padded", progress=False)
    for rid, seq in SEQS.items():
        alone = embed(model, {rid: seq}, layers=[0, 1, -1], progress=False)
        i = batch.ids.index(rid)
        for layer in batch.layers:
            np.testing.assert_allclose(batch.mean[layer][i], alone.mean[layer][0], atol=1e-5)
    # Direct computation: hidden states of residues 1..L only.
    with torch.no_grad():
        out = model.esm(encode([SEQS["p2"]], return_tensors="pt")["input_ids"],
                        output_hidden_states=True)
    direct = out.hidden_states[1][0, 1:9].mean(0).numpy()
    np.testing.assert_allclose(batch.mean[1][batch.ids.index("p2")], direct, atol=1e-6)
    assert not np.allclose(direct, out.hidden_states[1][0].mean(0).numpy(), atol=1e-4)


@pytest.mark.parametrize("strategy", ["exact", "padded"], ids=["exact", "padded"])
def test_matches_fairesm_representations_and_contacts(strategy) -> None:
    esm = pytest.importorskip("esm")
    from protein_lm.convert import fairesm_to_transformers

    torch.manual_seed(1)
    fe = esm.ESM2(2, 32, 4, esm.Alphabet.from_architecture("ESM-1b")).eval()
    hf = fairesm_to_transformers(fe)
    got = embed(hf, SEQS, layers=[0, 1, 2], per_residue=True, contacts=True, strategy=strategy,
                progress=False)
    assert hf.config._attn_implementation == "sdpa"  # switched to eager for contacts, then back
    for i, seq in enumerate(SEQS.values()):
        with torch.no_grad():
            ref = fe(encode([seq], return_tensors="pt")["input_ids"], repr_layers=[0, 1, 2],
                     return_contacts=True)
        for layer in (0, 1, 2):
            rep = ref["representations"][layer][0, 1 : len(seq) + 1].numpy()
            np.testing.assert_allclose(got.per_residue[layer][i], rep, atol=1e-5)
            np.testing.assert_allclose(got.mean[layer][i], rep.mean(0), atol=1e-5)
        np.testing.assert_allclose(got.contacts[i], ref["contacts"][0].numpy(), atol=1e-5)


def test_batch_plan_strategies() -> None:
    lengths = [5, 7, 5, 5, 9, 7]
    exact = batch_plan(lengths, 14, "exact")
    assert sorted(i for b in exact for i in b) == list(range(6))
    assert all(len({lengths[i] for i in b}) == 1 for b in exact)  # never padded
    assert all(len(b) * (lengths[b[0]] + 2) <= 14 or len(b) == 1 for b in exact)
    padded = batch_plan(lengths, 100, "padded")
    assert len(padded) == 1 and sorted(padded[0]) == list(range(6))
    with pytest.raises(ValueError, match="strategy"):
        batch_plan(lengths, 10, "packed")  # type: ignore[arg-type]


def test_long_sequences_error_or_window(model) -> None:
    rng = np.random.default_rng(0)
    long_seq = "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=MAX_RESIDUES + 300))
    with pytest.raises(InvalidSequenceError, match="long_policy='window'"):
        embed(model, {"long": long_seq}, progress=False)
    got = embed(model, {"long": long_seq}, per_residue=True, contacts=True,
                long_policy="window", progress=False)
    res, con = got.per_residue[2][0], got.contacts[0]
    assert res.shape == (len(long_seq), 32) and con.shape == (len(long_seq),) * 2
    # Residues only the first window covers equal that window embedded on its own.
    first = embed(model, {"w": long_seq[:MAX_RESIDUES]}, per_residue=True, progress=False)
    np.testing.assert_allclose(res[:300], first.per_residue[2][0][:300], atol=1e-5)
    np.testing.assert_allclose(got.mean[2][0], res.mean(0), atol=1e-6)
    assert np.isnan(con[0, -1]) and not np.isnan(con[0, 5])  # pair never in one window


def test_bad_input(model) -> None:
    from protein_lm.sequences import FastaRecord

    with pytest.raises(InvalidInputError, match="Duplicate id 'a'"):
        embed(model, [FastaRecord("a", "MKT"), FastaRecord("a", "MKV")], progress=False)
    with pytest.raises(ValueError, match="layers 0..2"):
        embed(model, "MKT", layers=5, progress=False)
    with pytest.raises(InvalidSequenceError, match="position 3"):
        embed(model, {"x": "MKJ"}, progress=False)


def test_threads_restored(model) -> None:
    before = torch.get_num_threads()
    embed(model, SEQS, num_threads=1, progress=False)
    assert torch.get_num_threads() == before


def test_save_load_formats(model, tmp_path: Path) -> None:
    emb = embed(model, SEQS, layers=[1, 2], per_residue=True, contacts=True, progress=False)
    back = load_embeddings(save_embeddings(emb, tmp_path / "e.npz"))
    assert back.ids == emb.ids and back.layers == (1, 2)
    np.testing.assert_array_equal(back.mean[2], emb.mean[2])
    for a, b in zip(back.per_residue[1], emb.per_residue[1]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(back.contacts, emb.contacts):
        np.testing.assert_array_equal(a, b)
    ds = to_dataset(emb)
    assert ds.column_names[:3] == ["id", "length", "mean_1"]
    assert np.asarray(ds[1]["per_residue_2"]).shape == (len(SEQS["p2"]), 32)
    save_embeddings(emb, tmp_path / "e.parquet")
    assert (tmp_path / "e.parquet").stat().st_size > 0
    with pytest.raises(InvalidInputError, match=".npy holds only mean"):
        save_embeddings(emb, tmp_path / "e.npy")
    mean_only = embed(model, SEQS, progress=False)
    save_embeddings(mean_only, tmp_path / "m.npy")
    assert np.load(tmp_path / "m.npy").shape == (4, 32)
    assert (tmp_path / "m.ids.txt").read_text().split() == list(SEQS)
    assert not list(tmp_path.glob(".*tmp*")) and not list(tmp_path.glob(".e*"))


def test_bulk_is_resumable_and_refuses_other_input(model, tmp_path: Path, monkeypatch) -> None:
    import protein_lm.embedding_store as store

    out = tmp_path / "shards"
    embed_to_file(model, SEQS, out, shard_size=3, progress=False)
    assert sorted(p.name for p in out.glob("shard-*.npz")) == ["shard-00000.npz", "shard-00001.npz"]
    first = load_embeddings(out)
    (out / "shard-00001.npz").unlink()  # as if interrupted before the last shard
    calls = []
    real = store.embed
    monkeypatch.setattr(store, "embed", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    embed_to_file(model, SEQS, out, shard_size=3, progress=False)
    assert calls == [1]  # only the missing shard (1 record) was recomputed
    np.testing.assert_allclose(load_embeddings(out).mean[2], first.mean[2], atol=1e-6)
    with pytest.raises(InvalidInputError, match="different run"):
        embed_to_file(model, {"other": "MKV"}, out, shard_size=3, progress=False)
    final = embed_to_file(model, SEQS, tmp_path / "all.npz", shard_size=3, progress=False)
    assert load_embeddings(final).ids == tuple(SEQS)
    assert not (tmp_path / "all.npz.parts").exists()


def test_bulk_checks_every_record_before_writing(model, tmp_path: Path) -> None:
    long = {"short": "MKT", "long": "A" * (MAX_RESIDUES + 1)}
    for out in (tmp_path / "o.npz", tmp_path / "folder"):
        with pytest.raises(InvalidSequenceError, match="'long' has 1023 residues"):
            embed_to_file(model, long, out, shard_size=1, progress=False)
        assert not out.exists() and not (tmp_path / "o.npz.parts").exists()
    # An error before the first shard (here a bad layer) removes the folder it created.
    with pytest.raises(ValueError, match="Layer 7 does not exist"):
        embed_to_file(model, SEQS, tmp_path / "o.npz", layers=7, progress=False)
    assert list(tmp_path.iterdir()) == []
    # A folder left with a manifest but no shard (an older version) does not block a new run.
    parts = tmp_path / "o.npz.parts"
    parts.mkdir()
    (parts / "manifest.json").write_text('{"records": 2}')
    embed_to_file(model, long, tmp_path / "o.npz", long_policy="window", progress=False)
    assert load_embeddings(tmp_path / "o.npz").ids == ("short", "long") and not parts.exists()


def test_check_records() -> None:
    from protein_lm.embeddings import check_records
    from protein_lm.sequences import FastaRecord

    long = [FastaRecord("a", "M" * (MAX_RESIDUES + 1))]
    with pytest.raises(InvalidSequenceError, match=r"--long window"):
        check_records(long)
    check_records(long, long_policy="window")
    with pytest.raises(InvalidInputError, match="Duplicate id 'a'"):
        check_records([FastaRecord("a", "MKT"), FastaRecord("a", "MKV")], long_policy="window")
    with pytest.raises(ValueError, match="`long_policy` must be 'error' or 'window', got 'cut'"):
        check_records(long, long_policy="cut")


def test_thread_limit_sets_and_restores(model) -> None:
    from protein_lm.embeddings import thread_limit

    before = torch.get_num_threads()
    with thread_limit("cpu", 1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with thread_limit(torch.device("cuda"), 1):  # not a CPU device: left alone
        assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="`num_threads` must be a positive int"), \
            thread_limit("cpu", 0):
        pass


def test_saved_files_follow_the_umask(model, tmp_path: Path) -> None:
    import os

    emb = embed(model, SEQS, progress=False)
    old = os.umask(0o022)
    try:
        save_embeddings(emb, tmp_path / "e.npz")
        embed_to_file(model, SEQS, tmp_path / "d", shard_size=3, progress=False)
    finally:
        os.umask(old)
    assert (tmp_path / "e.npz").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "d").iterdir()} == {0o644}


def test_plot_contact_map(model) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from protein_lm.viz import plot_contact_map

    cm = embed(model, {"p": SEQS["p1"]}, contacts=True, progress=False).contacts[0]
    ax = plot_contact_map(cm, title="p1")
    image = ax.images[0].get_array()
    assert image.shape == cm.shape and np.ma.is_masked(image[5, 2])  # |i-j| < 6 below diagonal
    with pytest.raises(ValueError, match="square"):
        plot_contact_map(np.zeros((3, 4)))


def test_half_precision_on_cpu_warns_only_when_emulated(monkeypatch) -> None:
    """Issue #18: bf16 is native (fast) on CPUs with AVX512-BF16/AMX and emulated elsewhere; fp16
    is emulated on CPUs. Warn only when emulated, and keep working either way."""
    import warnings

    from protein_lm import embeddings as embeddings_mod

    half = load_model("tiny", "masked-lm", dtype=torch.bfloat16).eval()
    monkeypatch.setattr(embeddings_mod, "cpu_has_bf16", lambda: False)
    with pytest.warns(UserWarning, match="emulated and slower than float32"):
        out = embed(half, {"a": "MKTAYIAKQR"}, progress=False)
    assert all(np.isfinite(m).all() for m in out.mean.values())
    monkeypatch.setattr(embeddings_mod, "cpu_has_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # native bf16: no warning
        embed(half, {"a": "MKTAYIAKQR"}, progress=False)
    with pytest.warns(UserWarning, match="emulated"):
        embed(half.to(torch.float16), {"a": "MKTAYIAKQR"}, progress=False)
