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

from sigmarec.config import ConfigError, ProtocolConfig
from sigmarec.data.sequences import DataError, SequenceData
from sigmarec.data.sessions import session_offsets


@dataclass
class EvalSet:
    """Evaluation cases: the input of case ``r`` is ``items[starts[r]:ends[r]]``, its target ``targets[r]``.

    With ``target_ends`` the case has several targets, ``items[ends[r]:target_ends[r]]`` (duplicates
    count once), and ``targets[r]`` is the first of them.
    """

    users: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    targets: np.ndarray
    target_ends: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, rows: np.ndarray) -> "EvalSet":
        """The cases ``rows`` (in that order), e.g. one rank's share of a data-parallel evaluation."""
        return EvalSet(self.users[rows], self.starts[rows], self.ends[rows], self.targets[rows],
                       None if self.target_ends is None else self.target_ends[rows])


@dataclass
class Split:
    """Training windows (every position after a window's first item is a target) plus eval cases."""

    data: SequenceData
    train_users: np.ndarray
    train_starts: np.ndarray
    train_ends: np.ndarray
    valid: EvalSet
    test: EvalSet
    valid_trained: bool = False  # the validation cases are training data (protocol.train_on_valid): not held out

    def cases(self, which: str) -> EvalSet:
        """The ``valid`` or ``test`` cases; ``valid`` is refused when its targets were trained on."""
        if which not in ("valid", "test"):
            raise ValueError(f"evaluation split must be 'valid' or 'test', got {which!r}")
        if which == "valid" and self.valid_trained:
            raise ConfigError("the validation cases were trained on (protocol.train_on_valid: a refit), so they measure "
                              "nothing held out; evaluate the test split")
        return self.valid if which == "valid" else self.test

    @property
    def n_train_targets(self) -> int:
        return int(np.maximum(self.train_ends - self.train_starts - 1, 0).sum())

    def train_targets(self, last: int = 0) -> np.ndarray:
        """The items every training range predicts (each range's items after its first; int64), or with
        ``last > 0`` only each range's newest ``last`` targets: what a count of training popularity counts."""
        lengths = np.maximum(self.train_ends - self.train_starts - 1, 0)
        if last > 0:
            lengths = np.minimum(lengths, last)
        ends = np.repeat(self.train_ends, lengths)
        back = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # 0 = newest
        return self.data.items[ends - 1 - back].astype(np.int64)

    def train_interactions(self) -> tuple[np.ndarray, np.ndarray]:
        """The distinct (user, item) pairs of the training windows (int64 arrays, sorted by user then item): what a
        non-sequential model (BPR-MF, LightGCN) may learn from, never a validation or test target."""
        lengths = self.train_ends - self.train_starts
        users = np.repeat(self.train_users, lengths)
        first = np.repeat(self.train_starts - np.cumsum(lengths) + lengths, lengths)
        items = self.data.items[first + np.arange(int(lengths.sum()))]
        pairs = np.unique(np.stack([users.astype(np.int64), items]), axis=1)
        return pairs[0], pairs[1]


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
    ev = data.lengths >= 3
    if not ev.any():
        raise DataError(f"{data.name}: leave-one-out needs users with at least 3 interactions; none have")
    return _last_two_out(data, cfg, max_len, ev)


def _last_two_out(data: SequenceData, cfg: ProtocolConfig, max_len: int, ev: np.ndarray) -> Split:
    """Users where ``ev`` holds: last item tests, second-to-last validates, the rest trains; the
    other users train on everything."""
    users = np.arange(data.n_users)
    starts, ends = data.offsets[:-1], data.offsets[1:]
    tu, ts, te = make_windows(users, starts, np.where(ev, ends - 2, ends), max_len, cfg.train_windows)
    eu, es = users[ev], starts[ev]
    valid = EvalSet(eu, es, ends[ev] - 2, data.items[ends[ev] - 2])
    test = EvalSet(eu, es, ends[ev] - 1, data.items[ends[ev] - 1])
    return Split(data, tu, ts, te, valid, test)


def comirec_user_split(data: SequenceData, cfg: ProtocolConfig, max_len: int) -> Split:
    """The ComiRec protocol (Cen et al., 2020): users, not interactions, are split.

    Users with at least 2 items are shuffled with ``split_seed`` and divided by ``user_split``
    (train : valid : test, default 8:1:1); users with one item only train. Training users give
    their whole sequences as training windows. A held-out user's first ``floor(len *
    history_fraction)`` items (at least 1, at most len - 1) are the input and every later item is
    a target, so metrics are multi-target (see ``evaluate.ranking.metrics_from_ranks``).
    """
    share = np.asarray(cfg.user_split, dtype=np.float64)
    if share.shape != (3,) or (share < 0).any() or share[1:].sum() <= 0 or share.sum() <= 0:
        raise ConfigError(f"protocol.user_split must be three non-negative shares train, valid, test, got {cfg.user_split!r}")
    if not 0 < cfg.history_fraction < 1:
        raise ConfigError(f"protocol.history_fraction must be in (0, 1), got {cfg.history_fraction!r}")
    if cfg.split_seed < 0:
        raise ConfigError(f"protocol.split_seed must be an integer >= 0, got {cfg.split_seed!r}")
    starts, ends = data.offsets[:-1], data.offsets[1:]
    lengths = ends - starts
    eligible = np.flatnonzero(lengths >= 2)
    if len(eligible) < 3:
        raise DataError(f"{data.name}: the comirec protocol needs users with at least 2 interactions; {len(eligible)} have")
    order = np.random.default_rng(cfg.split_seed).permutation(eligible)
    share = share / share.sum()
    n_valid = max(int(round(len(order) * share[1])), 1 if share[1] > 0 else 0)
    n_test = max(int(round(len(order) * share[2])), 1 if share[2] > 0 else 0)
    valid_users, test_users = np.sort(order[:n_valid]), np.sort(order[n_valid : n_valid + n_test])
    held_out = np.zeros(data.n_users, dtype=bool)
    held_out[order[: n_valid + n_test]] = True
    train_users = np.flatnonzero(~held_out)
    tu, ts, te = make_windows(train_users, starts[train_users], ends[train_users], max_len, cfg.train_windows)

    def cases(users: np.ndarray) -> EvalSet:
        n_hist = np.clip(np.floor(lengths[users] * cfg.history_fraction).astype(np.int64), 1, lengths[users] - 1)
        cut = starts[users] + n_hist
        return EvalSet(users, starts[users], cut, data.items[cut], target_ends=ends[users])

    return Split(data, tu, ts, te, cases(valid_users), cases(test_users))


def _sessions(data: SequenceData, what: str) -> tuple[np.ndarray, np.ndarray]:
    if data.session_starts is None:
        raise DataError(f"{data.name}: the {what} protocol needs sessions, i.e. timestamps in the data (this source has none)")
    return session_offsets(data)


def session_loo(data: SequenceData, cfg: ProtocolConfig, max_len: int) -> Split:
    """HNVM's protocol (Section 4.2): per user, the last item of the last session is the test target
    and the item before it the validation target; the input is every earlier session plus the
    current session's prefix (models that declare ``session_starts`` see the boundaries). Users need
    at least 3 items and 2 sessions to be evaluated; the others only train."""
    _, per_user = _sessions(data, "session")
    ev = (data.lengths >= 3) & (np.diff(per_user) >= 2)
    if not ev.any():
        raise DataError(f"{data.name}: the session protocol needs users with at least 3 items in at least 2 sessions; none have")
    return _last_two_out(data, cfg, max_len, ev)


def next_session(data: SequenceData, cfg: ProtocolConfig, max_len: int) -> Split:
    """HNVM's next-session task (Section 5.4): the last session is the test set, every item in it a
    target, the input every earlier session; the second-to-last session validates the same way and
    training uses the sessions before it. Users with fewer than 3 sessions only train."""
    bounds, per_user = _sessions(data, "next_session")
    n_sessions = np.diff(per_user)
    starts, ends = data.offsets[:-1], data.offsets[1:]
    ev = n_sessions >= 3
    if not ev.any():
        raise DataError(f"{data.name}: the next_session protocol needs users with at least 3 sessions; none have")
    last = bounds[np.maximum(per_user[1:] - 1, 0)]  # where each user's last session begins
    before_last = bounds[np.maximum(per_user[1:] - 2, 0)]
    users = np.arange(data.n_users)
    tu, ts, te = make_windows(users, starts, np.where(ev, before_last, ends), max_len, cfg.train_windows)
    eu = users[ev]
    valid = EvalSet(eu, starts[ev], before_last[ev], data.items[before_last[ev]], target_ends=last[ev])
    test = EvalSet(eu, starts[ev], last[ev], data.items[last[ev]], target_ends=ends[ev])
    return Split(data, tu, ts, te, valid, test)


PROTOCOLS: dict[str, Callable[[SequenceData, ProtocolConfig, int], Split]] = {
    "loo": leave_one_out, "comirec": comirec_user_split, "session": session_loo, "next_session": next_session,
}


def with_validation_trained(split: Split, train_windows: str, max_len: int) -> Split:
    """The split with every validation case's whole range (its input and its targets: up to the item before the
    test case in leave-one-out, the validation session in next_session, a held-out user's sequence in comirec) as
    training windows in place of that user's own; the test cases are unchanged and never trained on."""
    v = split.valid
    ends = v.ends + 1 if v.target_ends is None else v.target_ends
    keep = ~np.isin(split.train_users, v.users)
    vu, vs, ve = make_windows(v.users, v.starts, ends, max_len, train_windows)
    users, starts, ends = (np.concatenate([a[keep], b]) for a, b in
                           ((split.train_users, vu), (split.train_starts, vs), (split.train_ends, ve)))
    order = np.lexsort((ends, users))
    return Split(split.data, users[order], starts[order], ends[order], split.valid, split.test, valid_trained=True)


def make_split(data: SequenceData, cfg: ProtocolConfig, max_len: int) -> Split:
    try:
        fn = PROTOCOLS[cfg.name]
    except KeyError:
        raise ValueError(f"unknown protocol {cfg.name!r}; available: {', '.join(PROTOCOLS)}") from None
    split = fn(data, cfg, max_len)
    return with_validation_trained(split, cfg.train_windows, max_len) if cfg.train_on_valid else split
