"""CPU precision modes of embed and score (issue #18): choice, numerics, the caller's model kept."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from protein_lm import precision as precision_mod  # noqa: E402
from protein_lm.embeddings import embed  # noqa: E402
from protein_lm.models import load_model  # noqa: E402
from protein_lm.precision import resolve_precision  # noqa: E402
from proteins import LYSO, TRP  # noqa: E402

SEQS = {"lyso": LYSO, "trp": TRP}


@pytest.fixture(scope="module")
def model():
    return load_model("tiny", "masked-lm").eval()


def test_auto_is_bfloat16_only_on_native_bf16_cpus_for_wide_models(model, monkeypatch) -> None:
    wide = load_model("tiny", "masked-lm", config_overrides={"hidden_size": 320, "num_heads": 4})
    monkeypatch.setattr(precision_mod, "cpu_has_bf16", lambda: True)
    assert resolve_precision(wide, "auto") == "bfloat16"
    assert resolve_precision(model, "auto") == "float32"  # width 128: casts cost more than they save
    monkeypatch.setattr(precision_mod, "cpu_has_bf16", lambda: False)
    assert resolve_precision(wide, "auto") == "float32"  # emulated bf16 is slower than fp32
    assert resolve_precision(wide, "int8") == "int8"
    assert resolve_precision(wide.to(torch.bfloat16), "auto") == "model"  # its own dtype
    with pytest.raises(ValueError, match="`precision` must be one of"):
        resolve_precision(model, "fp8")


@pytest.mark.parametrize(("mode", "cosine"), [("bfloat16", 0.999), ("int8", 0.99)])
def test_modes_stay_close_to_float32_and_leave_the_model_alone(model, mode, cosine) -> None:
    linear = type(model.esm.encoder.layer[0].attention.self.query)
    ref = embed(model, SEQS, precision="float32", progress=False)
    got = embed(model, SEQS, precision=mode, progress=False, per_residue=True)
    a, b = got.mean[got.layers[0]], ref.mean[ref.layers[0]]
    assert a.dtype == np.float32 and got.per_residue[got.layers[0]][0].dtype == np.float32
    cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() > cosine and not np.array_equal(a, b)  # close, and really another mode
    assert type(model.esm.encoder.layer[0].attention.self.query) is linear  # int8: on a copy


def test_score_precision_modes_agree_in_rank(model) -> None:
    from protein_lm.variants import score_mutations

    muts = ["K1A", "V2W", "F3G", "G4D", "R5E", "C6A"]
    fp32 = [s.score for s in score_mutations(model, LYSO, muts, precision="float32")]
    bf16 = [s.score for s in score_mutations(model, LYSO, muts, precision="bfloat16")]
    assert np.corrcoef(fp32, bf16)[0, 1] > 0.99 and fp32 != bf16


def test_resumable_embed_records_the_precision_it_used(model, tmp_path) -> None:
    import json

    from protein_lm.embedding_store import embed_to_file

    out = tmp_path / "e"
    embed_to_file(model, SEQS, out, precision="auto", progress=False)
    manifest = json.loads(next(out.glob("*.json")).read_text())
    assert "float32" in json.dumps(manifest) and '"auto"' not in json.dumps(manifest)
