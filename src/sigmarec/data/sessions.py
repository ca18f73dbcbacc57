"""Sessions and user features: sessionisation by idle gap, session filters, profile encoding.

A session is a maximal run of one user's interactions whose consecutive gaps are at most
``gap`` seconds (30 minutes by default, as in HNVM and HRNN). Sessions are stored as a boolean
``session_starts`` array aligned with ``SequenceData.items`` (True at the first interaction of each
session), so every other array keeps its layout. Everything is vectorised numpy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sigmarec.data.sequences import DataError, SequenceData


def session_starts(timestamps: np.ndarray, user_codes: np.ndarray, gap: float) -> np.ndarray:
    """True where an interaction opens a session: its user's first, or after an idle gap ``> gap``.

    ``timestamps`` and ``user_codes`` are aligned and sorted by user then time. A NaN timestamp never
    opens a session by itself (its gap is unknown).
    """
    if gap <= 0:
        raise DataError(f"data.session_gap must be positive (seconds), got {gap!r}")
    n = len(timestamps)
    starts = np.ones(n, dtype=bool)
    if n > 1:
        same_user = user_codes[1:] == user_codes[:-1]
        starts[1:] = ~same_user | (np.diff(timestamps) > gap)
    return starts


def session_filter(starts: np.ndarray, user_codes: np.ndarray, min_len: int, min_sessions: int) -> np.ndarray:
    """Keep-mask dropping sessions shorter than ``min_len``, then users left with fewer than
    ``min_sessions`` sessions (one pass each, in that order)."""
    for name, value in (("data.min_session_len", min_len), ("data.min_sessions", min_sessions)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise DataError(f"{name} must be a positive integer, got {value!r}")
    sid = np.cumsum(starts) - 1
    keep = np.bincount(sid)[sid] >= min_len
    if min_sessions > 1:
        n_sess = pd.Series(sid[keep]).groupby(user_codes[keep]).nunique()
        ok_users = n_sess.index[n_sess.to_numpy() >= min_sessions].to_numpy()
        keep &= np.isin(user_codes, ok_users)
    return keep


def session_offsets(data: SequenceData) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, per_user)``: the index in ``data.items`` where each session begins (plus the end),
    and for each user the range of its sessions in that list (``per_user[u]:per_user[u + 1]``)."""
    if data.session_starts is None:  # one session per (non-empty) user
        begins = data.offsets[:-1][data.lengths > 0]
    else:
        begins = np.flatnonzero(data.session_starts)
    bounds = np.concatenate([begins, [data.n_interactions]]).astype(np.int64)
    per_user = np.searchsorted(begins, data.offsets, side="left").astype(np.int64)
    return bounds, per_user


def user_features(data: SequenceData, max_categories: int = 50) -> np.ndarray | None:
    """User profile side data as a float matrix ``[n_users, F]``: numeric columns standardised
    (missing values 0), categorical columns with at most ``max_categories`` values one-hot (missing
    = all zeros); columns with more values (ids, zip codes) are left out. ``None`` when there is no
    user side table or nothing usable in it."""
    side = data.user_side
    if side is None or side.empty:
        return None
    blocks: list[np.ndarray] = []
    for col in side.columns:
        values = side[col]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            x = values.to_numpy(dtype=np.float64, na_value=np.nan)
            std = np.nanstd(x) if np.isfinite(x).any() else 0.0
            x = (x - np.nanmean(x)) / std if std > 0 else np.zeros_like(x)
            blocks.append(np.nan_to_num(x)[:, None])
        else:
            codes, uniques = pd.factorize(values.astype("string"), use_na_sentinel=True)
            if 0 < len(uniques) <= max_categories:
                onehot = np.zeros((len(values), len(uniques)))
                rows = np.flatnonzero(codes >= 0)
                onehot[rows, codes[rows]] = 1.0
                blocks.append(onehot)
    return np.concatenate(blocks, axis=1).astype(np.float32) if blocks else None
