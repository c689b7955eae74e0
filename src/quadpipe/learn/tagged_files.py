"""The torch.save'd dicts quadpipe writes (policy checkpoints, training stages, fine-tuning
states): each carries a `format` tag, and a file that is missing, unreadable or of another kind
becomes one clear error naming what to run, never a traceback from deep in torch. They are
written atomically, and a job that resumes keeps its checkpoint beside its output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from quadpipe.data import dataset
from quadpipe.errors import QuadpipeError


def load_tagged(path: str | Path, fmt: str, error: type[QuadpipeError], name: str,
                missing: str, again: str, full_name: str | None = None) -> dict[str, Any]:
    """The dict at `path` if its `format` is `fmt`, else `error` with one line: "no such
    <name>; <missing>", "cannot be read as a <name> (...); <again>" or "not a <full_name>
    (expected format <fmt>); <again>" (full_name: "quadpipe <name>" unless given)."""
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such {name}; {missing}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise error(f"{path}: cannot be read as a {name} ({exc}); {again}") from exc
    if not isinstance(data, dict) or data.get("format") != fmt:
        raise error(f"{path}: not a {full_name or 'quadpipe ' + name} (expected format {fmt}); "
                    f"{again}")
    return data


def save_state(path: Path, state: dict[str, Any]) -> None:
    """torch.save through `dataset.atomic_path`: a kill leaves the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with dataset.atomic_path(path) as tmp:
        torch.save(state, tmp)


def resume_path(out_file: str | Path) -> Path:
    """Where the job writing `out_file` keeps its resume checkpoint (removed when done)."""
    out_file = Path(out_file)
    return out_file.with_name(out_file.name + ".partial") / "resume.pt"
