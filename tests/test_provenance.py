"""Provenance of resumable outputs (issue #16): weights, options and sequences, never names."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from protein_lm.cli import main
from protein_lm.errors import InvalidInputError
from protein_lm.models import tiny_config
from protein_lm.provenance import Manifest, claim, read_manifest, weights_fingerprint


def _fasta(path: Path, records: dict[str, str]) -> Path:
    path.write_text("".join(f">{i}\n{s}\n" for i, s in records.items()))
    return path


def _save_tiny(folder: Path, seed: int) -> Path:
    """A tiny ESM-2 masked LM with weights from `seed`, saved as safetensors at `folder`."""
    import transformers

    torch.manual_seed(seed)
    model = transformers.EsmForMaskedLM(tiny_config(num_layers=1, hidden_size=32, num_heads=4))
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def _embed(model: Path | str, fasta: Path, out: Path, *extra: str) -> list[str]:
    return ["embed", "--model", str(model), str(fasta), "-o", str(out), "--shard-size", "1",
            "--device", "cpu", "--no-progress", *extra]


def test_manifest_names_what_differs(tmp_path: Path) -> None:
    a = Manifest.of("w1", {"layers": [-1]}, [("x", "MKT"), ("y", "MKV")])
    assert a.difference(Manifest.of("w1", {"layers": [-1]}, [("x", "MKT")])) is None
    assert "model weights differ" in a.difference(Manifest.of("w2", {"layers": [-1]}))
    assert a.difference(Manifest.of("w1", {"layers": [-2]})) == (
        "options differ: layers [-1] here, [-2] there")
    assert "record 'y' has another sequence" in a.difference(
        Manifest.of("w1", {"layers": [-1]}, [("y", "MKW")]))
    assert "records differ" in a.difference(
        Manifest.of("w1", {"layers": [-1]}, [("y", "MKV"), ("x", "MKT")]), same_records=True)
    assert claim(tmp_path, a) is True and claim(tmp_path, a) is False
    assert read_manifest(tmp_path) == a
    with pytest.raises(InvalidInputError, match="different run: the model weights differ"):
        claim(tmp_path, Manifest.of("w2", {"layers": [-1]}))


def test_fingerprint_is_of_the_weights_not_the_name(tmp_path: Path) -> None:
    from protein_lm.models import load_model

    folder = _save_tiny(tmp_path / "m", seed=0)
    first = weights_fingerprint(folder)
    assert weights_fingerprint(str(folder)) == first
    _save_tiny(folder, seed=1)
    assert weights_fingerprint(folder) != first
    assert (weights_fingerprint(load_model("tiny", seed=0))
            != weights_fingerprint(load_model("tiny", seed=1)))


def test_embed_shard_jobs_with_other_weights_at_one_path_exit_2(tmp_path: Path, capsys) -> None:
    fasta = _fasta(tmp_path / "in.fasta", {"a": "MKTAYIAKQR", "b": "MKVLAAGIVG"})
    model, out = _save_tiny(tmp_path / "model", seed=0), tmp_path / "e.npz"
    assert main(_embed(model, fasta, out, "--shard", "0/2")) == 0
    _save_tiny(model, seed=1)  # new weights, same path
    capsys.readouterr()
    assert main(_embed(model, fasta, out, "--shard", "1/2")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "e.npz.parts holds results of a different run: the model weights differ" in err
    assert sorted(p.name for p in (tmp_path / "e.npz.parts").glob("shard-*")) == [
        "shard-00000.npz"]


def test_embed_shard_jobs_on_other_inputs_with_the_same_ids_exit_2(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    import protein_lm.embedding_store as store

    a = _fasta(tmp_path / "a.fasta", {"x": "MKTAYIAKQR", "y": "MKVLAAGIVG"})
    b = _fasta(tmp_path / "b.fasta", {"x": "MKTAYIAKQW", "y": "MKVLAAGIVA"})
    out = tmp_path / "e.npz"
    real, second = store.embed, []

    def embed_while_another_job_starts(*args, **kwargs):
        if not second:  # job 2 (input b) starts while job 1 (input a) embeds its first shard
            second.append(main(_embed("tiny", b, out, "--shard", "1/2")))
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "embed", embed_while_another_job_starts)
    assert main(_embed("tiny", a, out, "--shard", "0/2")) == 0
    assert second == [2]
    err = capsys.readouterr().err
    assert "holds results of a different run: record 'x' has another sequence" in err
    monkeypatch.setattr(store, "embed", real)
    assert main(_embed("tiny", a, out)) == 0  # the merge embeds shard 1 of input a
    from protein_lm.embedding_store import load_embeddings
    from protein_lm.embeddings import embed
    from protein_lm.models import load_model

    merged = load_embeddings(out)
    expected = embed(load_model("tiny"), {"x": "MKTAYIAKQR", "y": "MKVLAAGIVG"}, progress=False)
    assert merged.ids == ("x", "y") and merged.layers == expected.layers
    layer = merged.layers[0]
    torch.testing.assert_close(torch.from_numpy(merged.mean[layer]),
                               torch.from_numpy(expected.mean[layer]), atol=1e-5, rtol=1e-4)


def _fold(model: Path | str, fasta: Path, out: Path, *extra: str) -> list[str]:
    return ["fold", "--model", str(model), str(fasta), "-o", str(out), "--device", "cpu",
            "--no-progress", *extra]


def test_fold_refolds_a_record_whose_sequence_changed(tmp_path: Path, capsys) -> None:
    from protein_lm.folding.structure import read_metadata

    out = tmp_path / "out"
    fasta = _fasta(tmp_path / "in.fasta", {"a": "MKTAYIAKQR", "b": "MKVLAAG"})
    assert main(_fold("tiny", fasta, out)) == 0
    assert main(_fold("tiny", fasta, out)) == 0
    assert "folded 0, skipped 2" in capsys.readouterr().out
    _fasta(fasta, {"a": "MKTAYIAKQR", "b": "MKVLAAGIVGGS"})  # b edited
    assert main(_fold("tiny", fasta, out)) == 0
    assert "folded 1, skipped 1" in capsys.readouterr().out
    assert int(read_metadata(out / "b.pdb")["length"]) == 12
    assert "b,b.pdb,12," in (out / "summary.csv").read_text()


def test_fold_refuses_other_weights_or_options(tmp_path: Path, capsys) -> None:
    from protein_lm.folding.esmfold import load_folding_model

    model, out = tmp_path / "esmfold", tmp_path / "out"
    load_folding_model("tiny", device="cpu", seed=0).save_pretrained(model)
    fasta = _fasta(tmp_path / "in.fasta", {"a": "MKTAYIAKQR"})
    assert main(_fold(model, fasta, out)) == 0
    capsys.readouterr()
    assert main(_fold(model, fasta, out, "--num-recycles", "1")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "options differ: num_recycles 1 here, None there" in err
    load_folding_model("tiny", device="cpu", seed=1).save_pretrained(model)  # same path
    capsys.readouterr()
    assert main(_fold(model, fasta, out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the model weights differ" in err


def test_fingerprint_of_a_hub_id_is_of_its_cached_files(tmp_path: Path, monkeypatch) -> None:
    # A hub cache laid out as huggingface_hub writes it, read offline.
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / ("0" * 40)
    _save_tiny(snapshot, seed=0)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert weights_fingerprint("org/tiny") == weights_fingerprint(snapshot)


def test_embed_checks_the_manifest_again_before_writing_a_shard(tmp_path: Path,
                                                                monkeypatch) -> None:
    import protein_lm.embedding_store as store
    from protein_lm.models import load_model

    out, real = tmp_path / "parts", store.embed

    def another_run_takes_the_folder(*args, **kwargs):
        (out / "manifest.json").unlink()  # as if removed by a failed job, then claimed anew
        claim(out, Manifest.of("other", {}))
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "embed", another_run_takes_the_folder)
    with pytest.raises(InvalidInputError, match="different run: the model weights differ"):
        store.embed_to_file(load_model("tiny"), {"x": "MKT"}, out, progress=False)
    assert not list(out.glob("shard-*"))
