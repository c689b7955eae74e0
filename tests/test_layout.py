"""The package shows the pipeline's stages, and a lower stage never imports a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "quadpipe"
# stage -> rank; a module may import its own stage and lower ranks only (data and control are
# siblings: neither imports the other). Top-level modules (config, errors) are below everything.
RANK = {"sim": 1, "control": 2, "data": 2, "learn": 3, "evaluation": 4, "cli": 5}


def imports(path: Path) -> set[str]:
    """Every quadpipe module named in an import statement of `path`, wherever it stands."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("quadpipe"):
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("quadpipe")}
    return out


def stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def test_every_module_lives_in_a_stage_folder() -> None:
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    # beside the stages only what every stage and the workflow share: settings (config, and
    # overrides: the workflow's --config values typed by the schema) and the user errors
    assert top == ["__init__", "__main__", "config", "errors", "overrides"]
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} \
        >= set(RANK)


def test_no_stage_imports_a_later_one() -> None:
    bad = []
    for path in PACKAGE.rglob("*.py"):
        own = stage("quadpipe." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        for module in imports(path):
            other = stage(module)
            if own is None:
                if other is not None and path.stem not in ("__main__",):
                    bad.append((path.name, module))  # config/errors import no stage
            elif other is not None and other != own and RANK[other] >= RANK[own]:
                bad.append((str(path.relative_to(PACKAGE)), module))
    assert bad == []


def test_every_verb_runs_its_module() -> None:
    """Each verb's handler imports what it names: a verb left behind by a move fails here."""
    import inspect
    import re

    from quadpipe.cli.main import VERBS, build_parser

    build_parser()
    assert {"generate", "merge", "train", "evaluate", "suite", "eval-report"} <= set(VERBS)
    for name, (_, handler) in VERBS.items():
        for module, names in re.findall(r"from (quadpipe[\w.]*) import ([\w, ]+)",
                                        inspect.getsource(handler)):
            imported = __import__(module, fromlist=["_"])
            for n in names.split(","):
                assert hasattr(imported, n.strip()), f"{name}: {module}.{n.strip()}"


def test_the_training_methods_stand_apart() -> None:
    """learn/imitation and learn/finetuning never import each other, and the modules they share
    (learn/*.py) import neither: a method can be read, changed or dropped on its own."""
    learn = PACKAGE / "learn"
    methods = {"imitation", "finetuning"}
    assert {p.name for p in learn.iterdir() if (p / "__init__.py").exists()} == methods
    bad = []
    for path in learn.rglob("*.py"):
        parts = path.relative_to(learn).parts
        own = parts[0] if len(parts) > 1 else None
        for module in imports(path):
            m = module.split(".")
            other = m[2] if len(m) > 2 and m[:2] == ["quadpipe", "learn"] else None
            if other in methods and other != own:
                bad.append((str(path.relative_to(PACKAGE)), module))
    assert bad == []
