"""Zero-shot variant scores equal a direct computation with the model; bad mutations name the row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from protein_lm.errors import InvalidInputError  # noqa: E402
from protein_lm.models import load_model  # noqa: E402
from protein_lm.sequences import ESM2_TOKENS, MASK_ID  # noqa: E402
from protein_lm.tokenization import encode  # noqa: E402
from protein_lm.variants import (  # noqa: E402
    parse_mutant,
    parse_mutants,
    pseudo_log_likelihood,
    score_dataframe,
    score_mutations,
)

SMALL = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2,
         "intermediate_size": 128}
WT = "MKTAYIAKQRQISFVKSHFSRQ"
TOK = {t: i for i, t in enumerate(ESM2_TOKENS)}


@pytest.fixture(scope="module")
def model():
    return load_model("tiny", config_overrides=SMALL, seed=3).eval()


def _logp(model, seq: str, mask_at: int | None = None) -> np.ndarray:
    ids = encode([seq], return_tensors="pt")["input_ids"]
    if mask_at is not None:
        ids[0, mask_at + 1] = MASK_ID
    with torch.no_grad():
        return torch.log_softmax(model(ids).logits[0, 1:-1], -1).numpy()  # (L, V)


def test_masked_marginals_equal_direct_computation(model) -> None:
    # Offset 10: residue 11 is WT[1] = 'K'.
    got = score_mutations(model, WT, ["K11A", "K11A:Y14W", "F23L"], offset=10)
    want = []
    for muts in [[(1, "K", "A")], [(1, "K", "A"), (4, "Y", "W")], [(13, "F", "L")]]:
        want.append(sum(_logp(model, WT, i)[i, TOK[m]] - _logp(model, WT, i)[i, TOK[w]]
                        for i, w, m in muts))
    np.testing.assert_allclose([s.score for s in got], want, atol=1e-5)
    assert got[1].mutant == "K11A:Y14W" and got[1].strategy == "masked-marginals"


def test_wt_marginals_equal_direct_computation(model) -> None:
    lp = _logp(model, WT)
    got = score_mutations(model, WT, ["M1G", "K2A:T3P"], strategy="wt-marginals")
    want = [lp[0, TOK["G"]] - lp[0, TOK["M"]],
            lp[1, TOK["A"]] - lp[1, TOK["K"]] + lp[2, TOK["P"]] - lp[2, TOK["T"]]]
    np.testing.assert_allclose([s.score for s in got], want, atol=1e-5)


def test_pseudo_ppl_equals_direct_computation(model) -> None:
    seq = WT[:9]
    want = sum(_logp(model, seq, i)[i, TOK[a]] for i, a in enumerate(seq))
    assert pseudo_log_likelihood(model, seq, max_tokens=33) == pytest.approx(want, abs=1e-4)
    mutant = "MATAYIAKQ"
    got = score_mutations(model, seq, ["K2A"], strategy="pseudo-ppl")[0].score
    assert got == pytest.approx(pseudo_log_likelihood(model, mutant) - want, abs=1e-4)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("A2G", "wild-type letter 'A' at position 2 does not match.*'K'"),
        ("K99A", "position 99 is outside the sequence"),
        ("K2", "malformed mutation"),
        ("2KA", "malformed mutation"),
        ("K2A:K2G", "mutated twice"),
        ("K2J", "mutant letter 'J'"),
        ("", "empty mutation"),
    ],
    ids=["wrong-wt", "out-of-range", "no-mutant", "order", "twice", "bad-letter", "empty"],
)
def test_bad_mutations_name_the_row(text: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=f"row 7.*{match}"):
        parse_mutant(text, WT, row=7)


def test_offset_and_skip(model) -> None:
    assert parse_mutant("K25A", WT, offset=24)[0].index == 1
    parsed, skipped = parse_mutants(["K25A", "K2A", "K25A", "M24V"], WT, 24, on_error="skip")
    assert [p is None for p in parsed] == [False, True, True, False]
    assert [row for row, _ in skipped] == [1, 2] and "duplicate of row 0" in skipped[1][1]
    with pytest.raises(InvalidInputError, match="row 1"):
        parse_mutants(["K25A", "K2A"], WT, 24)


def test_needs_masked_lm_head() -> None:
    base = load_model("tiny", "base", config_overrides=SMALL)
    with pytest.raises(InvalidInputError, match="masked-LM head"):
        score_mutations(base, WT, ["K2A"])


def test_blat_parses_with_offset_24_and_scores(model, shared_data: Path) -> None:
    from protein_lm.data import DmsData, load_blat
    from protein_lm.variants import evaluate_dms

    blat = load_blat()
    parsed, skipped = parse_mutants(blat.data["mutant"], blat.wild_type, blat.offset)
    assert not skipped and len(parsed) == len(blat.data) > 4900
    small = DmsData("blat-40", blat.wild_type, blat.offset, blat.data.select(range(40)))
    res = evaluate_dms(model, small, strategies=("wt-marginals", "masked-marginals"))
    assert res.n_scored == 40 and set(res.spearman) == {"wt-marginals", "masked-marginals"}
    assert all(-1 <= v <= 1 for v in res.spearman.values())  # random model: no claim of learning


def test_score_dataframe(model) -> None:
    import pandas as pd

    table = pd.DataFrame({"mutant": ["K2A", "B2A", "T3G"], "fitness": [1.0, 0.5, 0.1]})
    with pytest.raises(InvalidInputError, match="muts.csv: row 1 .'B2A'"):
        score_dataframe(model, WT, table, source="muts.csv")
    out, skipped = score_dataframe(model, WT, table, strategies=["wt-marginals"], on_error="skip")
    assert np.isnan(out["score_wt-marginals"][1]) and [r for r, _ in skipped] == [1]


def test_read_mutations(tmp_path: Path) -> None:
    from protein_lm.variants import read_mutations

    tsv = tmp_path / "m.tsv"
    tsv.write_bytes(b"\xef\xbb\xbfmutant\tfitness\nK2A\t1.5\n")  # BOM, tab-separated
    got = read_mutations(tsv)
    assert list(got.columns) == ["mutant", "fitness"] and got["mutant"].tolist() == ["K2A"]
    bad = tmp_path / "bad.csv"
    for content, match in [
        (b"", "bad.csv: file is empty; expected a CSV with a 'mutant' column"),
        (b"  \n\n", "bad.csv: file is empty"),
        ("mutant\nK2A\n\xc9\n".encode("latin-1"), r"bad.csv, line 3: not UTF-8 text .byte 0xc9 at offset 11"),
        (b"mutant,x\nK2A,1\nT3G,1,2,3\n", "bad.csv: not a readable CSV table .* line 3"),
        (b"mut\nK2A\n", r"bad.csv: no 'mutant' column; columns: \['mut'\]"),
        (b"mutant\n", "bad.csv: no data rows"),
    ]:
        bad.write_bytes(content)
        with pytest.raises(InvalidInputError, match=match):
            read_mutations(bad)
    with pytest.raises(InvalidInputError, match="nope.csv: mutation file not found"):
        read_mutations(tmp_path / "nope.csv")


# ----------------------------------------------------------------- ProteinGym files (issue #18)
def _proteingym_csv(path: Path, n: int = 120) -> tuple[Path, str]:
    """A ProteinGym substitution file from the real BLAT scan: positions renumbered from 1,
    `mutated_sequence` and `DMS_score`, plus two double mutants."""
    from protein_lm.data import load_blat

    blat = load_blat()
    wt, shift = blat.wild_type, blat.offset - 1
    rows = []
    for text, fitness in list(zip(blat.data["mutant"], blat.data["label"]))[:n]:
        wt_aa, pos, mut = text[0], int(text[1:-1]) - shift, text[-1]
        seq = wt[: pos - 1] + mut + wt[pos:]
        rows.append(f"{wt_aa}{pos}{mut},{seq},{fitness}")
    for a, b in ((3, 10), (3, 40)):  # doubles share position 3 with singles: one pass for it
        seq = list(wt)
        seq[a - 1], seq[b - 1] = "A" if wt[a - 1] != "A" else "G", "W" if wt[b - 1] != "W" else "F"
        rows.append(f"{wt[a - 1]}{a}{seq[a - 1]}:{wt[b - 1]}{b}{seq[b - 1]},{''.join(seq)},0.5")
    path.write_text("mutant,mutated_sequence,DMS_score\n" + "\n".join(rows) + "\n")
    return path, wt


def test_masked_marginals_use_one_pass_per_distinct_position(model, tmp_path: Path) -> None:
    from protein_lm.variants import read_mutations

    csv, wt = _proteingym_csv(tmp_path / "pg.csv")
    table = read_mutations(csv)
    positions = {int(p[1:-1]) for m in table["mutant"] for p in m.split(":")}
    rows = []
    real = model.forward

    def counting(*args, **kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        rows.append(int(ids.shape[0]))
        return real(*args, **kwargs)

    model.forward = counting
    try:
        score_dataframe(model, wt, table, strategies=("masked-marginals",), max_tokens=2048)
    finally:
        del model.forward
    assert sum(rows) == len(positions)  # masked copies scored = distinct mutated positions


def test_cli_scores_a_proteingym_file_and_prints_the_spearman(tmp_path: Path, capsys,
                                                              caplog) -> None:
    import logging

    from protein_lm.cli import main

    csv, wt = _proteingym_csv(tmp_path / "pg.csv")
    out = tmp_path / "scores.csv"
    with caplog.at_level(logging.INFO, logger="protein_lm"):
        assert main(["score", "--model", "tiny", "--mutations", str(csv), "-o", str(out),
                     "--no-progress"]) == 0  # no --sequence: the wild type comes from row 0
    printed = capsys.readouterr().out
    assert "score_masked-marginals: Spearman " in printed and "with DMS_score over 122 rows" in printed
    positions = {p[1:-1] for line in csv.read_text().splitlines()[1:]
                 for p in line.split(",")[0].split(":")}
    assert f"masked-marginals: {len(positions)} masked passes" in caplog.text
    assert out.read_text().splitlines()[0] == "mutant,mutated_sequence,DMS_score,score_masked-marginals"
    wrong = wt[:4] + ("A" if wt[4] != "A" else "G") + wt[5:]  # not the wild type of the file
    assert main(["score", "--model", "tiny", "--sequence", wrong, "--mutations", str(csv),
                 "-o", str(tmp_path / "x.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "mutated_sequence is not the wild type with this mutation" in err
    assert not (tmp_path / "x.csv").exists()
