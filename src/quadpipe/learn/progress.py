"""Progress bars for the long loops of training (trajectories, epochs, batches).

A bar shows on a terminal only (or when asked): under the workflow the output goes to a log file,
where a bar would only add noise. Log lines are printed above a bar, not through it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any


def progress_bar(items: Iterable[Any], progress: bool | None, desc: str, unit: str = "traj",
                 **kwargs: Any) -> Iterable[Any]:
    """A tqdm bar over `items` on a terminal (progress None) or when asked; else `items`."""
    show = sys.stderr.isatty() if progress is None else progress
    if not show:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit=unit, **{"leave": False, **kwargs})


def log_to_bar(bar: Iterable[Any]) -> AbstractContextManager[Any]:
    """Log lines printed above the bar, not through it (a no-op without a bar)."""
    if not hasattr(bar, "set_postfix"):
        return contextlib.nullcontext()
    from tqdm.contrib.logging import logging_redirect_tqdm

    return logging_redirect_tqdm()
