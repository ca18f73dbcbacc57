"""Batches cut on the fly from the flat item array (no per-interaction rows are ever stored)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from sigmarec.data.protocols import Split


def gather_left_padded(flat: np.ndarray, starts: np.ndarray, ends: np.ndarray, length: int | None = None) -> np.ndarray:
    """The last ``length`` items of each ``flat[start:end]``, left-padded with 0 into one matrix.

    With ``length=None`` the width is the longest range. Columns that are padding in every row are
    dropped, so short batches stay cheap.
    """
    lengths = ends - starts
    width = int(lengths.max()) if len(lengths) else 0
    if length is not None:
        width = min(width, length)
    width = max(width, 1)
    idx = ends[:, None] - width + np.arange(width)[None, :]
    valid = idx >= starts[:, None]
    out = np.where(valid, flat[np.where(valid, idx, 0)], 0)
    return out.astype(np.int64, copy=False)


def gather_session_starts(session_starts: np.ndarray | None, starts: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray | None:
    """Flat session-start flags (``SequenceData.session_starts``) laid out like
    ``gather_left_padded(items, starts, ends, width)`` (bool ``[B, width]``; the first real column of
    every row is a start: a window may open mid-session). ``None`` when there are no sessions."""
    if session_starts is None:
        return None
    flags = gather_left_padded(np.asarray(session_starts, dtype=np.int64), starts, ends, width).astype(bool)
    lengths = np.minimum(ends - starts, flags.shape[1])
    rows = np.flatnonzero(lengths > 0)
    flags[rows, flags.shape[1] - lengths[rows]] = True
    return flags


@dataclass
class Batch:
    """One training batch: left-padded ``inputs`` [B, L] and next-item ``targets`` [B, L] (0 = none),
    the internal ``users`` [B], and, when the data has sessions, ``session_starts`` [B, L] (bool: the
    item at this position opens a session; the first real position of every row is always a start)
    and ``target_session_starts`` [B, L] (the target at this position opens a new session)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    users: torch.Tensor
    session_starts: torch.Tensor | None = None
    target_session_starts: torch.Tensor | None = None

    def to(self, device: torch.device) -> "Batch":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(self.inputs.to(device), self.targets.to(device), self.users.to(device), move(self.session_starts),
                     move(self.target_session_starts))


def batch_plan(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, bucket: bool = True) -> list[np.ndarray]:
    """Group training windows into batches.

    ``bucket=False``: a random permutation cut every ``batch_size`` windows. ``bucket=True``:
    windows sorted by length (random order among equal lengths), cut so each batch holds about
    ``batch_size * mean length`` target positions, and the batches shuffled. Each step then sees a
    similar number of targets while padding, which costs compute in every layer, nearly vanishes.
    """
    n = len(lengths)
    if not bucket:
        order = rng.permutation(n)
        return [order[i : i + batch_size] for i in range(0, n, batch_size)]
    order = np.lexsort((rng.random(n), lengths))
    budget = batch_size * max(float(lengths.mean()), 1.0)
    cum = np.cumsum(lengths[order])
    cut = np.flatnonzero(np.diff((cum // budget).astype(np.int64))) + 1
    batches = np.split(order, cut)
    return [batches[i] for i in rng.permutation(len(batches))]


def train_batches(split: Split, batch_size: int, max_len: int, rng: np.random.Generator, bucket: bool = True) -> Iterator[Batch]:
    """Yield training batches; each window of up to ``max_len + 1`` items gives inputs ``w[:-1]``
    and targets ``w[1:]``."""
    flat = split.data.items
    lengths = np.minimum(split.train_ends - split.train_starts, max_len + 1) - 1
    for sel in batch_plan(lengths, batch_size, rng, bucket):
        w = gather_left_padded(flat, split.train_starts[sel], split.train_ends[sel], max_len + 1)
        if w.shape[1] < 2:
            continue
        inputs, targets = w[:, :-1], w[:, 1:].copy()
        targets[inputs == 0] = 0
        flags = gather_session_starts(split.data.session_starts, split.train_starts[sel], split.train_ends[sel], w.shape[1])
        starts = target_starts = None
        if flags is not None:
            starts = torch.from_numpy(flags[:, :-1].copy())  # the window's first item is flagged (it may open mid-session)
            target_starts = torch.from_numpy(flags[:, 1:] & (targets > 0))
        yield Batch(torch.from_numpy(inputs.copy()), torch.from_numpy(targets), torch.from_numpy(split.train_users[sel]),
                    starts, target_starts)


def n_train_batches(split: Split, batch_size: int, max_len: int, bucket: bool = True) -> int:
    if not bucket:
        return -(-len(split.train_starts) // batch_size)
    lengths = np.minimum(split.train_ends - split.train_starts, max_len + 1) - 1
    return len(batch_plan(lengths, batch_size, np.random.default_rng(0), True))
