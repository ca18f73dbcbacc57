"""Training samples cut from a batch at one random point per window (the ComiRec / DSS recipe).

Models that build a user representation for one prefix at a time (multi-interest extractors,
whose interests over a prefix are not a causal function of per-position states) train on one
prefix per window and step instead of every position. The split point is drawn uniformly among
the positions that have a target, with the caller's generator, so runs stay reproducible.
Everything is one batched gather; no Python loop over rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PrefixSample:
    """``prefix`` [B, L]: the items up to the split, left-padded (newest in the last column);
    ``next_item`` [B]: the item right after the split; ``future`` [B, L]: every later item of the
    window, reversed and left-padded, so its last column is ``next_item`` and its first real column
    the window's last item (the "reversed future subsequence" of DSS); ``rows`` [B]: batch rows."""

    prefix: torch.Tensor
    next_item: torch.Tensor
    future: torch.Tensor
    rows: torch.Tensor


def shift_right(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Move each row of ``x`` [B, L] ``shift[b] >= 0`` columns to the right, filling with 0 (padding)."""
    L = x.shape[1]
    src = torch.arange(L, device=x.device)[None, :] - shift[:, None]
    return torch.where(src >= 0, torch.gather(x, 1, src.clamp(min=0)), torch.zeros_like(x))


def random_prefixes(inputs: torch.Tensor, targets: torch.Tensor, generator: torch.Generator | None = None) -> PrefixSample:
    """One split point per row, uniform over the positions ``t`` with ``targets[b, t] > 0``.

    The prefix is ``inputs[b, :t+1]``, right-aligned; the next item ``targets[b, t]``; the future
    ``targets[b, t:]`` reversed. Rows without any target are dropped (``rows`` says which remain).
    """
    valid = targets > 0
    rows = torch.nonzero(valid.any(dim=1)).squeeze(1)
    inputs, targets, valid = inputs[rows], targets[rows], valid[rows]
    L = inputs.shape[1]
    # uniform choice among valid positions: the argmax of uniform noise restricted to them
    noise = torch.rand(inputs.shape, generator=generator, device=inputs.device)
    t = torch.where(valid, noise, torch.full_like(noise, -1.0)).argmax(dim=1)
    prefix = shift_right(inputs, L - 1 - t)
    next_item = targets.gather(1, t[:, None]).squeeze(1)
    later = torch.arange(L, device=inputs.device)[None, :] >= t[:, None]
    future = torch.where(later, targets, torch.zeros_like(targets)).flip(1)  # reversed: t lands at column L-1-t
    future = shift_right(future, t)  # ... and moves to the last column
    return PrefixSample(prefix, next_item, future, rows)
