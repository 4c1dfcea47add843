"""Write the generated pages of the docs site (run by `make docs`; both are git-ignored).

- docs/reference/cli.md from the `protein-lm` argument parsers: every subcommand's `--help`,
  verbatim, plus the exit codes of `protein_lm.cli`, so the page cannot drift from the code.
- docs/index.md from README.md (the front door is written once), with its links into docs/ made
  relative to docs/ and links to other repository files made absolute (GitHub).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


REPO = "https://github.com/protein-lm/protein_lm/blob/main/"


def render_index() -> str:
    """README.md with links rewritten for docs/index.md."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    text = re.sub(r"\]\((?!https?://|#|docs/)([^)]*)\)", lambda m: f"]({REPO}{m.group(1)})", text)
    return re.sub(r"\]\(docs/([^)]*)\)", r"](\1)", text)


def render() -> str:
    """The CLI reference page's Markdown."""
    sys.path.insert(0, str(ROOT))
    os.environ["COLUMNS"] = "100"  # argparse wraps help to the terminal width: fix it
    import protein_lm.cli as cli

    parser = cli.build_parser()
    parser.prog = "protein-lm"
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parts = ["# Command line reference\n\n",
             "Generated from the argument parsers by `scripts/make_cli_reference.py`.\n\n",
             "```text\n", parser.format_help(), "```\n\n", "## Exit status\n\n",
             cli.__doc__.split("Exit status:", 1)[1].strip() + "\n\n"]
    for name, sub in subs.choices.items():
        parts += [f"## protein-lm {name}\n\n", "```text\n", sub.format_help(), "```\n\n"]
    return "".join(parts)


if __name__ == "__main__":
    for out, text in ((ROOT / "docs" / "reference" / "cli.md", render()),
                      (ROOT / "docs" / "index.md", render_index())):
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out.relative_to(ROOT)}")
