"""Evaluation protocols: how each user's sequence is cut into training windows and evaluation cases.

Every piece is an index range into ``SequenceData.items``; nothing is copied per interaction.
A protocol is a function ``SequenceData, ProtocolConfig, max_len -> Split`` registered in
``PROTOCOLS``; new protocols (user split, sessions, temporal) are added here without touching
models or the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from sigmarec.config import ProtocolConfig
from sigmarec.data.sequences import DataError, SequenceData


@dataclass
class EvalSet:
    """Evaluation cases: the input of case ``r`` is ``items[starts[r]:ends[r]]``, its target ``targets[r]``."""

    users: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class Split:
    """Training windows (every position after a window's first item is a target) plus eval cases."""

    data: SequenceData
    train_users: np.ndarray
    train_starts: np.ndarray
    train_ends: np.ndarray
    valid: EvalSet
    test: EvalSet

    @property
    def n_train_targets(self) -> int:
        return int(np.maximum(self.train_ends - self.train_starts - 1, 0).sum())


def make_windows(users: np.ndarray, starts: np.ndarray, ends: np.ndarray, max_len: int, mode: str = "all"):
    """Cut each training range into windows of at most ``max_len + 1`` items.

    ``all``: windows end at ``end, end - max_len, ...`` so consecutive windows overlap by one item
    and every position after the first is a target exactly once. ``last``: only the final window
    (the classic SASRec truncation, which never trains on early positions of long sequences).
    """
    lengths = ends - starts
    keep = lengths >= 2
    users, starts, ends, lengths = users[keep], starts[keep], ends[keep], lengths[keep]
    if mode == "last":
        return users, np.maximum(starts, ends - max_len - 1), ends
    if mode != "all":
        raise ValueError(f"protocol.train_windows must be 'all' or 'last', got {mode!r}")
    n_windows = -(-(lengths - 1) // max_len)  # ceil((len - 1) / max_len)
    rep = np.repeat(np.arange(len(users)), n_windows)
    first = np.cumsum(n_windows) - n_windows
    k = np.arange(len(rep)) - first[rep]  # window index counted from the end
    w_ends = ends[rep] - k * max_len
    w_starts = np.maximum(starts[rep], w_ends - max_len - 1)
    return users[rep], w_starts, w_ends


def leave_one_out(data: SequenceData, cfg: ProtocolConfig, max_len: int) -> Split:
    """Leave-one-out as in the SIGMA/ContrastVAE tables: last item tests, second-to-last validates.

    Users with fewer than 3 items only contribute training windows.
    """
    users = np.arange(data.n_users)
    starts, ends = data.offsets[:-1], data.offsets[1:]
    lengths = ends - starts
    ev = lengths >= 3
    if not ev.any():
        raise DataError(f"{data.name}: leave-one-out needs users with at least 3 interactions; none have")
    train_end = np.where(ev, ends - 2, ends)
    tu, ts, te = make_windows(users, starts, train_end, max_len, cfg.train_windows)
    eu, es = users[ev], starts[ev]
    valid = EvalSet(eu, es, ends[ev] - 2, data.items[ends[ev] - 2])
    test = EvalSet(eu, es, ends[ev] - 1, data.items[ends[ev] - 1])
    return Split(data, tu, ts, te, valid, test)


PROTOCOLS: dict[str, Callable[[SequenceData, ProtocolConfig, int], Split]] = {"loo": leave_one_out}


def make_split(data: SequenceData, cfg: ProtocolConfig, max_len: int) -> Split:
    try:
        fn = PROTOCOLS[cfg.name]
    except KeyError:
        raise ValueError(f"unknown protocol {cfg.name!r}; available: {', '.join(PROTOCOLS)}") from None
    return fn(data, cfg, max_len)
