"""Turn :class:`RawData` into :class:`SequenceData`: rating threshold, chronological order,
duplicate policy, iterative k-core filtering and id remapping, all vectorised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sigmarec.config import DataConfig
from sigmarec.data.sequences import PAD_TOKEN, DataError, RawData, SequenceData
from sigmarec.data.sessions import session_filter, session_starts

DUPLICATE_POLICIES = ("keep", "first", "last")


@dataclass
class PreprocessConfig:
    """How raw interactions are cleaned before becoming sequences."""

    min_rating: float | None = None  # keep interactions with rating >= this
    duplicates: str = "keep"  # keep|first|last for repeated (user, item) pairs
    user_core: int = 0  # minimum interactions per user (0 = off)
    item_core: int = 0  # minimum interactions per item (0 = off)
    session_gap: float = 1800.0  # seconds of inactivity that close a session (HNVM/HRNN: 30 minutes)
    min_session_len: int = 1  # drop sessions with fewer interactions (after k-core)
    min_sessions: int = 1  # then drop users with fewer sessions

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise DataError on values outside the accepted ranges."""
        if self.duplicates not in DUPLICATE_POLICIES:
            raise DataError(f"duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, got {self.duplicates!r}")
        for name in ("user_core", "item_core"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 0:
                raise DataError(f"{name} must be a non-negative integer, got {value!r}")

    @classmethod
    def from_data_config(cls, cfg: DataConfig) -> "PreprocessConfig":
        """The preprocessing part of a DataConfig."""
        return cls(min_rating=cfg.min_rating, duplicates=cfg.duplicates, user_core=cfg.user_core, item_core=cfg.item_core,
                   session_gap=cfg.session_gap, min_session_len=cfg.min_session_len, min_sessions=cfg.min_sessions)


def kcore(users: np.ndarray, items: np.ndarray, user_core: int, item_core: int,
          n_users: int | None = None, n_items: int | None = None) -> np.ndarray:
    """Boolean keep-mask of the iterative k-core: every kept user/item has >= core kept interactions. ``users`` and
    ``items`` are any ids; given ``n_users`` / ``n_items`` they are already codes in ``[0, n)`` and are counted as
    they are (no hash table over every row: at 50M rows that table was the preprocessing's largest temporary)."""
    users, items = np.asarray(users), np.asarray(items)
    if users.shape != items.shape or users.ndim != 1:
        raise DataError(f"kcore: users and items must be 1-d arrays of equal length, got {users.shape} and {items.shape}")
    keep = np.ones(len(users), dtype=bool)
    if user_core <= 1 and item_core <= 1:
        return keep  # every present user/item already has >= 1 interaction
    u = users if n_users is not None else pd.factorize(users)[0]
    i = items if n_items is not None else pd.factorize(items)[0]
    n_users = n_users if n_users is not None else int(u.max(initial=-1)) + 1
    n_items = n_items if n_items is not None else int(i.max(initial=-1)) + 1
    rows = np.arange(len(users), dtype=index_dtype(len(users)))
    while len(rows):
        uu, ii = u[rows], i[rows]
        ok = (np.bincount(uu, minlength=n_users)[uu] >= user_core) & (np.bincount(ii, minlength=n_items)[ii] >= item_core)
        if ok.all():
            break
        rows = rows[ok]
    keep[:] = False
    keep[rows] = True
    return keep


def _side(side: pd.DataFrame | None, original_ids: np.ndarray, first_id: int, what: str) -> pd.DataFrame | None:
    """Rows of ``side`` (indexed by original id) re-indexed by internal id; missing rows are NaN."""
    if side is None:
        return None
    side = side.copy()
    side.index = side.index.astype(str)
    if side.index.has_duplicates:
        dup = side.index[side.index.duplicated()][0]
        raise DataError(f"{what} side table: duplicate id {dup!r}")
    out = side.reindex(pd.Index(original_ids, dtype=str))
    out.index = pd.RangeIndex(first_id, first_id + len(original_ids), name=what)
    return out


def duplicated(keys: np.ndarray, keep: str) -> np.ndarray:
    """``pd.Index(keys).duplicated(keep=keep)`` (``first`` or ``last``) by a stable sort instead of a hash table:
    among equal keys every one but the first (or last) in array order is marked."""
    order = np.argsort(keys, kind="stable")
    same = keys[order[1:]] == keys[order[:-1]]
    out = np.zeros(len(keys), dtype=bool)
    out[order[1:][same] if keep == "first" else order[:-1][same]] = True
    return out


def index_dtype(n: int) -> type:
    """int32 for row numbers and codes below 2^31 (half the memory of int64 over a 50M-row log), else int64."""
    return np.int32 if n < 2**31 else np.int64


def _factorize(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Codes in order of first appearance and the ids they stand for. A categorical column (the streaming reader's,
    categories already in that order) gives its codes as they are: no string per row is built."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes, uniques = col.cat.codes.to_numpy(), np.asarray(col.cat.categories, dtype=object)
    else:
        codes, uniques = pd.factorize(col.astype(str), sort=False)
    return codes.astype(index_dtype(len(uniques)), copy=False), uniques


def preprocess(raw: RawData, cfg: PreprocessConfig, name: str = "data") -> SequenceData:
    """Clean ``raw`` (rating threshold, order, duplicates, k-core) and build flat sequences."""
    cfg.validate()
    df = raw.interactions
    missing = [c for c in ("user", "item", "timestamp", "rating") if c not in df.columns]
    if missing:
        raise DataError(f"{raw.source}: interactions lack column(s) {', '.join(missing)}")
    n_total = len(df)
    # codes in order of first appearance in the file: they fix the internal id order
    ucode, user_uniques = _factorize(df["user"])
    icode, item_uniques = _factorize(df["item"])
    timestamps = df["timestamp"].to_numpy(dtype=np.float64, na_value=np.nan)
    rows = np.arange(n_total, dtype=index_dtype(n_total))

    # 1. rating threshold
    if cfg.min_rating is not None:
        ratings = df["rating"].to_numpy(dtype=np.float64, na_value=np.nan)
        if n_total and np.isnan(ratings).all():
            raise DataError(f"{raw.source}: min_rating={cfg.min_rating} is set but the source has no ratings")
        rows = rows[ratings >= cfg.min_rating]

    # 2. chronological order per user; ties (and NaN timestamps, last) keep file order: two stable sorts, by time
    # then by user (the same order as a lexsort on (row, time, user), in 0.4x its time at 5M rows)
    rows = rows[np.argsort(timestamps[rows], kind="stable")]
    rows = rows[np.argsort(ucode[rows], kind="stable")]

    # 3. duplicate (user, item) pairs
    if cfg.duplicates != "keep" and len(rows):
        pair = ucode[rows].astype(np.int64) * np.int64(len(item_uniques)) + icode[rows]
        rows = rows[~duplicated(pair, cfg.duplicates)]

    # 4. iterative k-core
    if cfg.user_core > 1 or cfg.item_core > 1:
        rows = rows[kcore(ucode[rows], icode[rows], cfg.user_core, cfg.item_core, len(user_uniques), len(item_uniques))]

    # 5. sessions: split at idle gaps, then the optional session filters (they may undo the k-core)
    has_time = bool(len(rows)) and not np.isnan(timestamps[rows]).all()
    if cfg.min_session_len > 1 or cfg.min_sessions > 1:
        if not has_time:
            raise DataError(f"{raw.source}: data.min_session_len / data.min_sessions need timestamps; the source has none")
        starts = session_starts(timestamps[rows], ucode[rows], cfg.session_gap)
        rows = rows[session_filter(starts, ucode[rows], cfg.min_session_len, cfg.min_sessions)]

    if len(rows) == 0:
        raise DataError(
            f"{raw.source}: no interactions left after preprocessing (before: {len(user_uniques)} users, "
            f"{len(item_uniques)} items, {n_total} interactions; min_rating={cfg.min_rating}, "
            f"duplicates={cfg.duplicates}, user_core={cfg.user_core}, item_core={cfg.item_core}, "
            f"min_session_len={cfg.min_session_len}, min_sessions={cfg.min_sessions})"
        )

    # 6. remap: users 0..U-1 and items 1..N in order of first appearance in the file
    kept_users = np.unique(ucode[rows])
    kept_items = np.unique(icode[rows])
    new_user = np.searchsorted(kept_users, ucode[rows])
    new_item = np.searchsorted(kept_items, icode[rows]) + 1
    user_ids = np.asarray(user_uniques, dtype=object)[kept_users]
    item_ids = np.concatenate([np.array([PAD_TOKEN], dtype=object), np.asarray(item_uniques, dtype=object)[kept_items]])

    # 7. flat sequences (rows are sorted by user code, hence by internal user id)
    offsets = np.zeros(len(kept_users) + 1, dtype=np.int64)
    np.cumsum(np.bincount(new_user, minlength=len(kept_users)), out=offsets[1:])
    return SequenceData(
        items=new_item.astype(np.int64),
        offsets=offsets,
        user_ids=user_ids,
        item_ids=item_ids,
        timestamps=timestamps[rows].copy(),
        item_side=_side(raw.item_side, item_ids[1:], 1, "item"),
        user_side=_side(raw.user_side, user_ids, 0, "user"),
        name=name,
        session_starts=session_starts(timestamps[rows], new_user, cfg.session_gap) if has_time else None,
    )
