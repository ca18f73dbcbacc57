"""An exclusive lock on a run directory, so two processes never write one run (``fcntl.flock``).

The lock lives on ``RUN_DIR/.lock``, which also holds the holder's pid for the error message. The
operating system drops it when the holder exits or is killed, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import TracebackType

from sigmarec.config import RunError

try:
    import fcntl
except ImportError:  # not POSIX: no locking
    fcntl = None  # type: ignore[assignment]

# temporary names the atomic writers and save_checkpoint use (".NAME.<random>"), left behind by a kill or a full disk
# (".tmp-": the folder SequenceData.save writes the run's data copy into; "data.old": the copy it replaces)
TEMP_PREFIXES = (".config.yaml.", ".data.json.", ".metrics.json.", ".epochs.jsonl.", ".curves.png.", ".tmp-", "data.old")
CHECKPOINT_TEMP_PREFIXES = (".last.", ".best.")


class RunLock:
    """``with RunLock(run_dir):`` holds the directory's lock or raises RunError naming the pid that holds it."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self._file = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "unknown"
                f.close()
                raise RunError(f"{self.path.parent} is in use by process {holder} (another training writes to it); "
                               "wait for it to finish or use another --out") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._file is not None:
            if fcntl is not None:
                fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete the half-written temporary files and checkpoint folders a killed run left (call under the lock)."""
    run_dir = Path(run_dir)
    removed = []
    for folder, prefixes in ((run_dir, TEMP_PREFIXES), (run_dir / "checkpoints", CHECKPOINT_TEMP_PREFIXES)):
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if entry.name.startswith(prefixes):
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed
