"""File permissions shared by every layer that writes files (the lowest layer: it imports nothing of sigmarec)."""

from __future__ import annotations

import os
from pathlib import Path


def _umask() -> int:
    """The process's umask, read without setting it (``os.umask`` can only be read by changing it, which would race
    with other threads); 0o022 where /proc does not say."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o022


def make_readable(path: str | Path, directory: bool = False) -> None:
    """Give a temporary file (``mkstemp``: 0600) or folder (``mkdtemp``: 0700) the permissions an ordinary
    ``open``/``mkdir`` would, so a run's files are as readable as the log beside them."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())
