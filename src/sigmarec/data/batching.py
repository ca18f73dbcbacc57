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


@dataclass
class Batch:
    """One training batch: left-padded ``inputs`` [B, L] and next-item ``targets`` [B, L] (0 = none)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    users: torch.Tensor

    def to(self, device: torch.device) -> "Batch":
        return Batch(self.inputs.to(device), self.targets.to(device), self.users.to(device))


def train_batches(split: Split, batch_size: int, max_len: int, rng: np.random.Generator) -> Iterator[Batch]:
    """Shuffle the training windows and yield batches; each window of ``max_len + 1`` items gives
    inputs ``w[:-1]`` and targets ``w[1:]``."""
    order = rng.permutation(len(split.train_starts))
    flat = split.data.items
    for i in range(0, len(order), batch_size):
        sel = order[i : i + batch_size]
        w = gather_left_padded(flat, split.train_starts[sel], split.train_ends[sel], max_len + 1)
        if w.shape[1] < 2:
            continue
        inputs, targets = w[:, :-1], w[:, 1:].copy()
        targets[inputs == 0] = 0
        yield Batch(torch.from_numpy(inputs.copy()), torch.from_numpy(targets), torch.from_numpy(split.train_users[sel]))


def n_train_batches(split: Split, batch_size: int) -> int:
    return -(-len(split.train_starts) // batch_size)
