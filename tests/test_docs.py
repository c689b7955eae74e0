"""The documentation a reader follows: the generated config reference is current and complete,
every relative link of the README and docs/ leads somewhere, and the README stays a front door."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def docs_script(name: str):
    """docs/<name>.py as a module (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generator():
    return docs_script("make_configuration")


def test_configuration_md_is_what_the_schema_generates() -> None:
    gen = generator()
    assert (ROOT / "docs" / "configuration.md").read_text() == gen.render(gen.load_schema()), \
        "docs/configuration.md is stale: run python docs/make_configuration.py"


def test_configuration_md_lists_every_schema_key() -> None:
    gen = generator()
    text = (ROOT / "docs" / "configuration.md").read_text()
    paths = [path for path, _ in gen.keys(gen.load_schema())]
    assert {"dataset.shards", "eval.speed", "suite.randomized.friction"} <= set(paths)
    # a section is a heading, every key below it a table row
    assert [p for p in paths if f"| `{p}` |" not in text and f"\n### {p}\n" not in text] == []


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"^ *```.*?^ *```", "", page.read_text(), flags=re.M | re.S)  # no code blocks
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_every_relative_link_resolves() -> None:
    broken = []
    for page in PAGES:
        text = re.sub(r"^ *```.*?^ *```", "", page.read_text(), flags=re.M | re.S)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert broken == []


def test_readme_is_a_front_door_with_the_headline_block() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 220, "README.md is the front door: move detail to docs/"
    begin, end = readme.find("<!-- headline:begin -->"), readme.find("<!-- headline:end -->")
    assert 0 < begin < end, "README.md needs its headline block markers, begin before end"
    assert re.search(r"!\[[^\]]*\]\(docs/figures/\w+\.png\)", readme[:begin]), \
        "the picture a run made belongs above the headline"


def updater():
    return docs_script("update_headline")


def test_the_readme_headline_is_a_runs_file_not_typed_by_hand() -> None:
    """README.md's headline block is docs/headline.md, the copy of a run's results/eval/headline.md
    (docs/update_headline.py), and that names the machine and the seeds."""
    up = updater()
    record = (ROOT / "docs" / "headline.md").read_text()
    assert up.block((ROOT / "README.md").read_text()) == record.strip("\n"), \
        "README.md's headline differs from docs/headline.md: run python docs/update_headline.py"
    first = record.splitlines()[0]
    assert " cores, torch " in first and "training seeds" in first, first


def test_update_headline_replaces_only_the_block() -> None:
    up = updater()
    text = f"intro\n{up.BEGIN}\nold\nlines\n\n{up.END}\nrest\n"
    assert up.with_block(text, "new\n") == f"intro\n{up.BEGIN}\nnew\n{up.END}\nrest\n"
    assert up.block(up.with_block(text, "x")) == "x"
