"""The resume journal of a shard: every attempt's outcome, and each accepted trajectory's file.

Lives in `<shard>.partial/` beside the shard. `journal.jsonl` starts with a header line (the
settings that determine the data) and has one line per attempt, in attempt order:
`{"attempt": i, "reason": r}`. An accepted attempt's data is written (by the caller, to
`tmp_path(i)`, in any order and thread) and moved to `data_path(i)` (fsync, rename) *before* its
line is appended and fsynced, so after a SIGKILL at any point the journal is a prefix of the
attempt sequence whose accepted entries all have their data. A torn last line (killed
mid-append) is dropped on reopen; anything else that does not parse is corruption and is reported,
never repaired silently.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from quadpipe.data.dataset import atomic_path
from quadpipe.errors import ResumeError
from quadpipe.sim.stability import STABLE

JOURNAL = "journal.jsonl"


class Journal:
    """Append-only record of a shard's attempts that survives a kill."""

    def __init__(self, folder: Path, header: dict[str, Any]):
        self.folder = folder
        self.header = header
        self.outcomes: list[str] = []  # reason per attempt index
        self._fix = (f"delete the folder {folder} to start this shard over (the same trajectories "
                     "will be generated again)")

    @classmethod
    def open(cls, folder: Path, header: dict[str, Any]) -> Journal:
        """Open an existing journal to resume, or start a new one."""
        journal = cls(folder, header)
        path = folder / JOURNAL
        if path.exists():
            journal._load(path)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_bytes((json.dumps(header, sort_keys=True) + "\n").encode())
        return journal

    def _load(self, path: Path) -> None:
        raw = path.read_bytes()
        lines = raw.split(b"\n")
        complete, torn = lines[:-1], lines[-1]
        if not complete:
            raise ResumeError(f"{path}: the journal has no header; {self._fix}")
        try:
            header = json.loads(complete[0])
        except ValueError as exc:
            raise ResumeError(f"{path}: unreadable header; {self._fix}") from exc
        if header != self.header:
            diff = sorted(k for k in set(header) | set(self.header)
                          if header.get(k) != self.header.get(k))
            raise ResumeError(f"{path}: was written with other settings ({', '.join(diff)}); "
                              f"rerun with the same settings, or {self._fix}")
        for lineno, line in enumerate(complete[1:], start=2):
            try:
                entry = json.loads(line)
                attempt, reason = int(entry["attempt"]), str(entry["reason"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ResumeError(f"{path}: line {lineno} is corrupt; {self._fix}") from exc
            if attempt != len(self.outcomes):
                raise ResumeError(f"{path}: line {lineno} records attempt {attempt}, expected "
                                  f"{len(self.outcomes)}; {self._fix}")
            if reason == STABLE and not self.data_path(attempt).exists():
                raise ResumeError(f"{self.data_path(attempt)} is missing; {self._fix}")
            self.outcomes.append(reason)
        if torn:  # killed while appending: drop the partial line so appends stay line-aligned
            with open(path, "r+b") as f:
                f.truncate(len(raw) - len(torn))
                os.fsync(f.fileno())

    def data_path(self, attempt: int) -> Path:
        return self.folder / f"attempt_{attempt:06d}.h5"

    def tmp_path(self, attempt: int) -> Path:
        """Where the caller writes an accepted attempt's data before `record` commits it."""
        return self.folder / f"attempt_{attempt:06d}.h5.tmp"

    def record(self, attempt: int, reason: str) -> None:
        """Append attempt `attempt`'s outcome; for a stable one, commit its data file first."""
        assert attempt == len(self.outcomes), "attempts must be recorded in order"
        if reason == STABLE:
            tmp = self.tmp_path(attempt)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.data_path(attempt))
        with open(self.folder / JOURNAL, "ab") as f:
            f.write((json.dumps({"attempt": attempt, "reason": reason}) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        self.outcomes.append(reason)

    def corrupt(self, attempt: int, detail: str) -> ResumeError:
        """The error for an accepted attempt's data file that cannot be read back."""
        return ResumeError(f"{self.data_path(attempt)}: corrupt side file ({detail}); {self._fix}")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

