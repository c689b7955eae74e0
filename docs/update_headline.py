"""Put a run's headline into README.md, so the README's figures are a run's output.

    python docs/update_headline.py [results/eval/headline.md]

eval_report writes results/eval/headline.md from the run's result files, headed by the machine it
ran on (quadpipe.evaluation.headline). This copies it to docs/headline.md (the record kept in the
repository) and between README.md's `<!-- headline:begin -->` and `<!-- headline:end -->`
markers; tests/test_docs.py fails when the two differ, so nobody edits the figures by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RECORD = ROOT / "docs" / "headline.md"
BEGIN, END = "<!-- headline:begin -->", "<!-- headline:end -->"


def block(text: str) -> str:
    """The text between the markers (without them), or ValueError naming what is missing."""
    try:
        start = text.index(BEGIN) + len(BEGIN)
        return text[start:text.index(END, start)].strip("\n")
    except ValueError:
        raise ValueError(f"{README.name} has no {BEGIN} ... {END} block") from None


def with_block(text: str, headline: str) -> str:
    """`text` with its headline block replaced by `headline`."""
    block(text)  # both markers, in order
    start = text.index(BEGIN) + len(BEGIN)
    return text[:start] + "\n" + headline.strip("\n") + "\n" + text[text.index(END, start):]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("headline", nargs="?", default="results/eval/headline.md",
                        help="a run's headline (default: results/eval/headline.md)")
    args = parser.parse_args(argv)
    source = Path(args.headline)
    if not source.exists():
        print(f"{source}: no such file; run `snakemake --cores all` first (eval_report writes "
              "it)", file=sys.stderr)
        return 1
    headline = source.read_text()
    RECORD.write_text(headline.strip("\n") + "\n")
    README.write_text(with_block(README.read_text(), headline))
    print(f"{README} and {RECORD}: the headline of {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
