"""Memory policy on a loaded tiny ESMFold: auto chunk size, OOM fallbacks, precision, ipTM."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from protein_lm.folding import runtime as folding_runtime  # noqa: E402
from protein_lm.folding.esmfold import fold, iter_fold, load_folding_model, prepare  # noqa: E402
from protein_lm.folding.options import FoldOptions  # noqa: E402
from protein_lm.folding.results import FoldingError, FoldResult  # noqa: E402
from protein_lm.folding.runtime import Folder, auto_chunk_size  # noqa: E402
from protein_lm.sequences import FastaRecord  # noqa: E402
from proteins import LYSO, TRP  # noqa: E402



def test_auto_chunk_size_shrinks_with_memory_and_grows_with_length() -> None:
    gib = 2**30
    assert auto_chunk_size(50, 8 * gib) is None
    assert auto_chunk_size(2000, 80 * gib) is not None  # (2000^3 x 4 heads) attention does not fit
    sizes = [auto_chunk_size(800, m * gib) for m in (4, 8, 16, 32)]
    assert sizes == sorted(sizes, key=lambda c: c or 10**9)
    assert auto_chunk_size(3000, 1 * gib) == 4  # nothing fits: smallest, then the OOM fallbacks
    assert auto_chunk_size(500, 4 * gib, batch_size=4) <= (auto_chunk_size(500, 4 * gib) or 10**9)


def _oom(msg: str = "CUDA out of memory (simulated)") -> Exception:
    return torch.cuda.OutOfMemoryError(msg)


def test_oom_retries_with_smaller_chunks(model, monkeypatch: pytest.MonkeyPatch) -> None:
    real_run, attempts = Folder.run, []

    def run(self, items, device, chunk):
        attempts.append((len(items), device, chunk))
        if chunk is None or chunk > 16:
            raise _oom()
        return real_run(self, items, device, chunk)

    monkeypatch.setattr(Folder, "run", run)
    (res,) = fold({"x": LYSO[:60]}, model, chunk_size=None)
    assert res.chunk_size == 16 and res.id == "x"
    assert attempts == [(1, "cpu", None), (1, "cpu", 32), (1, "cpu", 16)]


def test_oom_splits_batches_before_shrinking_chunks(
    model, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run, attempts = Folder.run, []

    def run(self, items, device, chunk):
        attempts.append(len(items))
        if len(items) > 1:
            raise _oom()
        return real_run(self, items, device, chunk)

    monkeypatch.setattr(Folder, "run", run)
    out = fold({"a": TRP, "b": TRP[:15], "c": TRP[:12]}, model, max_tokens=10_000)
    assert [r.id for r in out] == ["a", "b", "c"] and attempts[0] == 3 and attempts.count(1) == 3


def test_oom_on_gpu_falls_back_to_cpu(model, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated GPU: every attempt on 'cuda' runs out of memory, the CPU attempt folds it."""
    real_run, attempts = Folder.run, []

    def run(self, items, device, chunk):
        attempts.append((device, chunk))
        if device == "cuda":
            raise _oom()
        return real_run(self, items, device, chunk)

    monkeypatch.setattr(Folder, "run", run)
    monkeypatch.setattr(folding_runtime, "_free", lambda device: None)
    folder = Folder(model, FoldOptions(device="cpu", chunk_size=64, cpu_fallback=True))
    folder.home = "cuda"  # pretend the model lives on a GPU
    items, _ = prepare([FastaRecord("x", LYSO[:70])])
    (res,) = folder.fold_batch(items)
    assert isinstance(res, FoldResult) and res.device == "cpu"
    assert attempts == [
        ("cuda", 64),
        ("cuda", 32),
        ("cuda", 16),
        ("cuda", 8),
        ("cuda", 4),
        ("cpu", 64),
    ]


def test_oom_everywhere_is_reported_not_raised_mid_batch(
    model, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = Folder.run

    def run(self, items, device, chunk):
        if any(it.id == "huge" for it in items):
            raise _oom()
        return real_run(self, items, device, chunk)

    monkeypatch.setattr(Folder, "run", run)
    items, _ = prepare(
        [FastaRecord("ok", TRP), FastaRecord("huge", LYSO), FastaRecord("ok2", TRP[:15])]
    )
    out = {r.id: r for r in iter_fold(items, model, max_tokens=10_000)}
    assert isinstance(out["ok"], FoldResult) and isinstance(out["ok2"], FoldResult)
    assert out["huge"].reason == "out-of-memory" and "larger GPU" in out["huge"].message
    with pytest.raises(FoldingError, match="'huge': out of memory"):
        fold({"ok": TRP, "huge": LYSO}, model)


def test_other_errors_fail_only_their_batch(model, monkeypatch: pytest.MonkeyPatch) -> None:
    real_run = Folder.run

    def run(self, items, device, chunk):
        if items[0].id == "boom":
            raise RuntimeError("kernel exploded")
        return real_run(self, items, device, chunk)

    monkeypatch.setattr(Folder, "run", run)
    items, _ = prepare([FastaRecord("boom", TRP), FastaRecord("fine", LYSO)])
    out = {r.id: r for r in iter_fold(items, model, max_tokens=30)}
    assert out["boom"].reason == "error" and "kernel exploded" in out["boom"].message
    assert isinstance(out["fine"], FoldResult)


def test_chunk_size_is_validated(model) -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        fold(TRP, model, chunk_size=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_language_model_is_fp16_on_gpu() -> None:
    m = load_folding_model("tiny", device="cuda")
    assert next(m.esm.parameters()).dtype == torch.float16
    assert next(m.trunk.parameters()).dtype == torch.float32
    (res,) = fold(LYSO, m)
    assert res.device.startswith("cuda") and np.isfinite(res.positions).all()


def _poison(model, index: int = 0, times: int = 1):
    """Make the LM embeddings of batch row `index` infinite (an fp16 overflow) in `times` calls."""
    calls = []

    def hook(module, args, output):
        calls.append(1)
        if len(calls) > times:
            return output
        output = output.clone()
        output[index] = float("inf")
        return output

    return model.esm.embeddings.register_forward_hook(hook)


def test_non_finite_predictions_are_failures_never_nan_results() -> None:
    """Issue #12: an overflowing LM must not give NaN coordinates; its record fails, named."""
    model = load_folding_model("tiny", device="cpu")
    items, _ = prepare([FastaRecord("a", LYSO[:40]), FastaRecord("b", LYSO[:40])])
    handle = _poison(model, 0)  # both records fold in one batch; only row 0 is poisoned
    try:
        outs = {o.id: o for o in iter_fold(items, model, chunk_size=None)}
    finally:
        handle.remove()
    handle = _poison(model, 0)
    try:
        with pytest.raises(FoldingError, match=r"non-finite .*language model in float32"):
            fold(LYSO[:40], model)
    finally:
        handle.remove()
    failed = [o for o in outs.values() if not isinstance(o, FoldResult)]
    ok = [o for o in outs.values() if isinstance(o, FoldResult)]
    assert len(failed) == 1 and len(ok) == 1
    assert failed[0].reason == "non-finite" and "language model output" in failed[0].message
    assert np.isfinite(ok[0].positions).all() and np.isfinite(ok[0].pae).all()
    (res,) = fold(LYSO[:40], model)  # hook removed: folds again
    assert np.isfinite(res.positions).all()


def test_non_finite_message_names_half_precision_and_the_fix(model) -> None:
    folder = Folder(model, FoldOptions(device="cpu", chunk_size="auto", cpu_fallback=True))
    (res,) = fold(TRP, model)
    nan = np.full_like(res.plddt, np.nan)
    folder.model.esm.half()  # as on GPU
    try:
        out = folder._check_finite(folding_runtime.dataclasses.replace(res, plddt=nan, ptm=np.inf))
    finally:
        folder.model.esm.float()
    assert out.reason == "non-finite" and out.id == res.id
    assert "non-finite plddt, ptm" in out.message and "language model in float16" in out.message
    assert "float32 on CPU" in out.message and "--device cpu" in out.message
    assert folder._check_finite(res) is res
    assert folding_runtime.non_finite_fields(
        folding_runtime.dataclasses.replace(res, iptm=float("nan"))
    ) == ["iptm"]


def test_non_finite_trunk_fails_its_record_not_the_batch_with_an_index_error(model) -> None:
    """NaN in the fp32 trunk used to crash transformers' batch pTM (IndexError) for all records."""
    items, _ = prepare([FastaRecord("a", TRP), FastaRecord("b", TRP[:18])])
    calls = []

    def hook(module, args, output):  # poisons row 0 of the first batch only
        calls.append(1)
        first = len(calls) == 1
        return output.index_fill(0, torch.tensor([0]), torch.nan) if first else output

    handle = model.esm_s_mlp.register_forward_hook(hook)
    try:
        outs = {o.id: o for o in iter_fold(items, model, chunk_size=None)}
    finally:
        handle.remove()
    (failed,) = [o for o in outs.values() if not isinstance(o, FoldResult)]
    (ok,) = [o for o in outs.values() if isinstance(o, FoldResult)]
    assert failed.reason == "non-finite" and "non-finite trunk states" in failed.message
    assert np.isfinite(ok.positions).all() and np.isfinite(ok.ptm)


def test_an_indexed_device_string_places_the_model_once(model, monkeypatch) -> None:
    """Issue #18: "cpu:0" (like "cuda" against "cuda:0") differed from the parameters' device as a
    string, so every fold re-placed the model (re-halving the LM on CUDA: mislabelled precision)."""
    from protein_lm.models import canonical_device

    assert canonical_device("cpu:0") == canonical_device("cpu") == "cpu"
    folder = Folder(model, FoldOptions(device="cpu:0"))
    calls = []
    real = folding_runtime.place
    monkeypatch.setattr(folding_runtime, "place", lambda m, d: calls.append(d) or real(m, d))
    (item,), _ = prepare([FastaRecord("trp", TRP)])
    for _ in range(2):
        folder.run([item], "cpu:0", None)
    assert calls == []
