"""Options shared by every subcommand (`protein_lm.cli.common`) and how `main` applies them."""

from __future__ import annotations

import logging

import pytest

from protein_lm.cli import build_parser, main

# The smallest valid command line of each subcommand.
MINIMAL = {
    "finetune": ["finetune", "--task", "regression", "--model", "tiny", "--train", "t.csv",
                 "--validation", "v.csv", "--output-dir", "out"],
    "predict": ["predict", "--model", "m", "in.fasta", "-o", "p.csv"],
    "fold": ["fold", "in.fasta", "-o", "out"],
    "embed": ["embed", "--model", "tiny", "in.fasta", "-o", "o.npz"],
    "score": ["score", "--model", "tiny", "--sequence", "MKT", "--mutations", "m.csv",
              "-o", "o.csv"],
}


@pytest.mark.parametrize("command", list(MINIMAL), ids=list(MINIMAL))
def test_every_subcommand_takes_the_common_options(command: str) -> None:
    parser = build_parser()
    args = parser.parse_args(MINIMAL[command])
    assert (args.device, args.no_progress, args.quiet) == (None, False, False)
    args = parser.parse_args([*MINIMAL[command], "--device", "cpu", "--no-progress", "--quiet"])
    assert (args.device, args.no_progress, args.quiet) == ("cpu", True, True)
    args = parser.parse_args([*MINIMAL[command], "-q"])
    assert args.no_progress and args.quiet  # --quiet implies --no-progress
    assert parser.parse_args([*MINIMAL[command], "-v"]).verbose
    assert parser.parse_args(["-v", *MINIMAL[command]]).verbose  # not reset by the subparser
    if command != "finetune":  # finetune takes cpu/cuda only: see the next test
        assert parser.parse_args([*MINIMAL[command], "--device", "cuda:1"]).device == "cuda:1"


@pytest.mark.parametrize("device", ["mps", "cuda:1", "xpu"])
def test_finetune_device_choices_match_the_library(device: str, capsys) -> None:
    """Issue #15: the parser refuses what FinetuneConfig would refuse after reading the data."""
    from protein_lm.pt.training import FinetuneConfig

    with pytest.raises(ValueError, match="`device` must be"):
        FinetuneConfig(model="tiny", task="regression", device=device)
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*MINIMAL["finetune"], "--device", device])
    assert exc.value.code == 2
    assert f"--device: must be cpu or cuda for finetune, got {device!r}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--device", "gpu"], "--device: must be cpu, cuda, cuda:N, mps or xpu[:N], got 'gpu'"),
     (["--quiet", "--verbose"], "not allowed with argument")],
    ids=["bad-device", "quiet-and-verbose"],
)
def test_bad_common_options_exit_2(argv: list[str], message: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([*MINIMAL["embed"], *argv])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "level", "bars"),
    [([], logging.INFO, True), (["--no-progress"], logging.INFO, False),
     (["--quiet"], logging.WARNING, False), (["-v"], logging.DEBUG, True)],
    ids=["default", "no-progress", "quiet", "verbose"],
)
def test_main_applies_options_for_the_run_only(monkeypatch, extra, level, bars) -> None:
    pytest.importorskip("transformers")
    import huggingface_hub.utils as hub
    from transformers.utils import logging as hf_logging

    import protein_lm.cli.embed as embed_cmd

    seen = {}

    def fake_run(args) -> int:
        seen.update(level=logging.getLogger("protein_lm").getEffectiveLevel(),
                    transformers=hf_logging.is_progress_bar_enabled(),
                    hub=not hub.are_progress_bars_disabled())
        return 0

    monkeypatch.setattr(embed_cmd, "run", fake_run)
    before = (hf_logging.is_progress_bar_enabled(), hub.are_progress_bars_disabled(),
              logging.getLogger("protein_lm").level)
    assert main([*MINIMAL["embed"], *extra]) == 0
    assert seen == {"level": level, "transformers": bars, "hub": bars}
    # Nothing leaks into the next call in the same process (notebooks, tests).
    assert (hf_logging.is_progress_bar_enabled(), hub.are_progress_bars_disabled(),
            logging.getLogger("protein_lm").level) == before


LATIN1_FASTA = ">p1 prot\xe9ine\nMKTAYIAK\n".encode("latin-1")
LATIN1_TABLE = "sequence,label\nMKTAYIAK,1.5\nMKV,0.5 \xb0C\n".encode("latin-1")


@pytest.mark.parametrize(
    ("argv", "bad", "content", "where"),
    [
        (["finetune", "--task", "regression", "--model", "tiny", "--train", "{bad}",
          "--validation", "{bad}", "--output-dir", "{tmp}/out"], "t.csv", LATIN1_TABLE,
         "line 3: not UTF-8 text (byte 0xb0 at offset 36)"),
        (["fold", "{bad}", "-o", "{tmp}/out", "--model", "tiny"], "in.fasta", LATIN1_FASTA,
         "line 1: not UTF-8 text (byte 0xe9 at offset 8)"),
        (["embed", "--model", "tiny", "{bad}", "-o", "{tmp}/o.npz"], "in.fasta", LATIN1_FASTA,
         "line 1: not UTF-8 text (byte 0xe9 at offset 8)"),
        (["score", "--model", "tiny", "--fasta", "{bad}", "--mutations", "{tmp}/m.csv", "-o",
          "{tmp}/o.csv"], "wt.fasta", LATIN1_FASTA, "line 1: not UTF-8 text"),
    ],
    ids=["finetune-csv", "fold-fasta", "embed-fasta", "score-fasta"],
)
def test_non_utf8_input_exits_2_naming_the_file(tmp_path, capsys, argv, bad, content,
                                                where) -> None:
    pytest.importorskip("torch")
    path = tmp_path / bad
    path.write_bytes(content)
    (tmp_path / "m.csv").write_text("mutant\nK2A\n")
    code = main([a.format(bad=path, tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"error: {path}, {where}" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({bad, "m.csv"})


@pytest.mark.parametrize(("extra", "shown"), [([], True), (["--no-progress"], False)],
                         ids=["default", "no-progress"])
def test_no_progress_hides_transformers_bars(monkeypatch, tmp_path, capfd, extra, shown) -> None:
    """transformers' own bars ("Writing model shards") follow --no-progress too."""
    pytest.importorskip("torch")
    import protein_lm.cli.embed as embed_cmd
    from protein_lm.models import load_model

    small = {"num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2,
             "intermediate_size": 32}
    monkeypatch.setattr(embed_cmd, "run", lambda args: load_model(
        "tiny", config_overrides=small).save_pretrained(tmp_path / "m") or 0)
    assert main([*MINIMAL["embed"], *extra]) == 0
    assert ("Writing model shards" in capfd.readouterr().err) == shown
