"""Core containers: raw interactions as read from disk, and processed sequences as flat arrays.

Processed data never materialises one row per interaction for training: each user's
chronological items live in one flat ``int64`` array, delimited by ``offsets``; batches are
cut from it on the fly (``data/batching.py``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sigmarec.config import SigmarecError
from sigmarec.files import make_readable

PAD = 0
PAD_TOKEN = "<pad>"


class DataError(SigmarecError, ValueError):
    """Bad input data: the message names the file, line or field and what was expected."""


class MissingDataError(DataError):
    """The input file of a data set is not there (a run directory can then use its own copy)."""


@dataclass
class RawData:
    """Interactions as read from a file, before any preprocessing.

    ``interactions`` has columns ``user`` (str), ``item`` (str), ``timestamp`` (float64, NaN when
    the source has none) and ``rating`` (float64, NaN when absent), in file order.
    Side tables are indexed by the original (string) id.
    """

    interactions: pd.DataFrame
    source: str
    item_side: pd.DataFrame | None = None
    user_side: pd.DataFrame | None = None


@dataclass
class SequenceData:
    """All users' chronological sequences: internal users 0..U-1, items 1..N (0 = padding)."""

    items: np.ndarray  # int64 [n_interactions]
    offsets: np.ndarray  # int64 [n_users + 1]
    user_ids: np.ndarray  # original user ids (str) [n_users]
    item_ids: np.ndarray  # original item ids (str) [n_items + 1]; item_ids[0] == PAD_TOKEN
    timestamps: np.ndarray | None = None  # float64 [n_interactions]
    item_side: pd.DataFrame | None = None  # indexed by internal item id
    user_side: pd.DataFrame | None = None  # indexed by internal user id
    name: str = "data"
    # bool [n_interactions]: True at the first interaction of each session (data/sessions.py);
    # None when the data has no timestamps (each user's sequence is then one session)
    session_starts: np.ndarray | None = None
    # what ``load_dataset`` built this from: the input's content hash (or the generator's settings) and a hash of
    # the settings that shape the output; a run directory stores it so a changed file is noticed ("" = unknown)
    fingerprint: str = ""

    def __post_init__(self) -> None:
        self.items = np.asarray(self.items, dtype=np.int64)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        if self.offsets[0] != 0 or self.offsets[-1] != len(self.items) or np.any(np.diff(self.offsets) < 0):
            raise DataError("offsets must start at 0, be non-decreasing and end at len(items)")
        if len(self.user_ids) != len(self.offsets) - 1:
            raise DataError("one user id per sequence expected")
        if self.session_starts is not None:
            self.session_starts = np.array(self.session_starts, dtype=bool)
            if self.session_starts.shape != self.items.shape:
                raise DataError("session_starts must have one flag per interaction")
            self.session_starts[self.offsets[:-1][self.offsets[:-1] < len(self.items)]] = True  # users start sessions

    @property
    def n_users(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_items(self) -> int:
        """Number of real items (ids 1..n_items)."""
        return len(self.item_ids) - 1

    @property
    def n_interactions(self) -> int:
        return len(self.items)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        return self.items[self.offsets[user] : self.offsets[user + 1]]

    def item_index(self) -> dict[str, int]:
        """Original item id -> internal id."""
        return {str(v): i for i, v in enumerate(self.item_ids) if i > 0}

    def user_index(self) -> dict[str, int]:
        return {str(v): i for i, v in enumerate(self.user_ids)}

    def item_popularity(self) -> np.ndarray:
        """Interaction count per internal item id (index 0 = padding, count 0)."""
        return np.bincount(self.items, minlength=self.n_items + 1)

    def stats(self) -> dict[str, float]:
        lengths = self.lengths
        return {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": self.n_interactions,
            "avg_len": float(lengths.mean()) if len(lengths) else 0.0,
            "min_len": int(lengths.min()) if len(lengths) else 0,
            "max_len": int(lengths.max()) if len(lengths) else 0,
            "density": self.n_interactions / max(1, self.n_users * self.n_items),
        }

    # ---- persistence: arrays in .npz, side tables in parquet, names in JSON; written atomically ----
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=directory.parent))
        make_readable(tmp, directory=True)
        arrays = {"items": self.items, "offsets": self.offsets}
        if self.timestamps is not None:
            arrays["timestamps"] = np.asarray(self.timestamps, dtype=np.float64)
        if self.session_starts is not None:
            arrays["session_starts"] = self.session_starts
        np.savez(tmp / "arrays.npz", **arrays)
        (tmp / "ids.json").write_text(
            json.dumps({"name": self.name, "users": [str(u) for u in self.user_ids], "items": [str(i) for i in self.item_ids]})
        )
        for side_name in ("item_side", "user_side"):
            side = getattr(self, side_name)
            if side is not None:
                side.to_parquet(tmp / f"{side_name}.parquet")
        if directory.exists():
            old = directory.with_name(directory.name + ".old")
            os.replace(directory, old)
            os.replace(tmp, directory)
            _rmtree(old)
        else:
            os.replace(tmp, directory)

    @classmethod
    def load(cls, directory: str | Path) -> "SequenceData":
        directory = Path(directory)
        arrays = np.load(directory / "arrays.npz")
        ids = json.loads((directory / "ids.json").read_text())
        sides = {}
        for side_name in ("item_side", "user_side"):
            path = directory / f"{side_name}.parquet"
            sides[side_name] = pd.read_parquet(path) if path.exists() else None
        return cls(
            items=arrays["items"],
            offsets=arrays["offsets"],
            user_ids=np.array(ids["users"], dtype=object),
            item_ids=np.array(ids["items"], dtype=object),
            timestamps=arrays["timestamps"] if "timestamps" in arrays.files else None,
            name=ids.get("name", "data"),
            session_starts=arrays["session_starts"] if "session_starts" in arrays.files else None,
            **sides,
        )


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
