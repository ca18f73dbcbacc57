"""Full-ranking evaluation: masking, target ranks, metrics and catalogue coverage.

Scores are ``[B, N+1]`` tensors over item ids ``0..N`` where column 0 is padding and is never
ranked. Everything is batched torch on the scores' device; there are no Python loops over users
or items.

Conventions
-----------
* Ranks are 0-based: rank 0 means the target is the top item.
* Ties count against the target: an item whose score equals the target's is placed above it,
  so a model that scores every item the same gets the worst possible rank.
* ``-inf`` marks an item as removed (padding, or excluded history); it never counts as ranked
  above the target.
* NaN scores are treated as ``-inf`` (a NaN item is never ranked above the target; a NaN target
  is ranked below every valid item).
* If the target's own score is ``-inf`` (or NaN), its rank is the number of other valid
  (non-``-inf``, non-padding) items, i.e. it is placed after all of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

NEG_INF = float("-inf")

__all__ = [
    "CoverageCounter",
    "RankAccumulator",
    "mask_scores",
    "metrics_from_ranks",
    "target_ranks",
]


def _check_scores_targets(scores: Tensor, targets: Tensor) -> None:
    if scores.dim() != 2:
        raise ValueError(f"scores must be [B, N+1], got shape {tuple(scores.shape)}")
    if targets.dim() != 1 or targets.shape[0] != scores.shape[0]:
        raise ValueError(
            f"targets must be [B] with B={scores.shape[0]}, got shape {tuple(targets.shape)}"
        )


def mask_scores(scores: Tensor, history: Tensor, exclude_history: bool = True) -> Tensor:
    """Return a masked copy of ``scores`` (``[B, N+1]``).

    Column 0 (padding) is always ``-inf``. With ``exclude_history`` every item of the row's
    ``history`` (``[B, H]`` int64, 0-padded) is ``-inf`` too, the target included: the ranking is
    what a deployed system would show, independent of the target, so a target the user already
    consumed counts as a miss. Keep history (``exclude_history=False``) for repeat-consumption
    data. The input tensor is not modified.
    """
    out = scores.clone()
    if exclude_history and history.numel() > 0:
        if history.dim() != 2 or history.shape[0] != scores.shape[0]:
            raise ValueError(f"history must be [B, H] with B={scores.shape[0]}, got shape {tuple(history.shape)}")
        out.scatter_(1, history.to(device=scores.device, dtype=torch.long), NEG_INF)
    out[:, 0] = NEG_INF
    return out


def target_ranks(scores: Tensor, targets: Tensor) -> Tensor:
    """0-based rank of each row's target: the number of *other* items scoring ``>=`` it.

    Computed by comparing every score with the target's score (no sort). Padding (column 0),
    ``-inf`` and NaN items never count; ties count against the target. A target whose own score
    is ``-inf``/NaN gets rank = number of other valid items. Returns int64 ``[B]``.
    """
    _check_scores_targets(scores, targets)
    tgt = targets.to(device=scores.device, dtype=torch.long).unsqueeze(1)
    t = scores.gather(1, tgt)  # [B, 1]
    # NaN never compares >=, -inf never reaches a finite target; the target counts itself once
    ranks = (scores[:, 1:] >= t).sum(dim=1, dtype=torch.long) - 1
    bad = ~(t[:, 0] > NEG_INF)  # target scored -inf or NaN: after every valid item
    if bool(bad.any()):
        ranks[bad] = (scores[bad, 1:] > NEG_INF).sum(dim=1, dtype=torch.long)
    return ranks


def metrics_from_ranks(ranks: np.ndarray | Tensor, ks: Sequence[int]) -> dict[str, float]:
    """Average ranking metrics over users from 0-based target ranks (one target per user).

    Keys: ``recall@K``, ``hit@K`` (equal to recall with one target), ``ndcg@K``
    (``1/log2(rank+2)`` if ``rank < K`` else 0), ``precision@K`` (``hit/K``), ``mrr``
    (``1/(rank+1)``, no cutoff) and ``n`` (int, number of users). With no users every metric
    is NaN and ``n`` is 0.
    """
    if isinstance(ranks, Tensor):
        ranks = ranks.detach().cpu().numpy()
    r = np.asarray(ranks, dtype=np.float64).reshape(-1)
    n = int(r.size)
    out: dict[str, float] = {}
    for k in ks:
        k = int(k)
        if k <= 0:
            raise ValueError(f"cutoffs must be positive, got {k}")
        if n == 0:
            hit = ndcg = float("nan")
        else:
            inside = r < k
            hit = float(inside.mean())
            ndcg = float(np.where(inside, 1.0 / np.log2(r + 2.0), 0.0).mean())
        out[f"recall@{k}"] = hit
        out[f"hit@{k}"] = hit
        out[f"ndcg@{k}"] = ndcg
        out[f"precision@{k}"] = hit / k
    out["mrr"] = float((1.0 / (r + 1.0)).mean()) if n else float("nan")
    out["n"] = n  # type: ignore[assignment]
    return out


class CoverageCounter:
    """Catalogue coverage of top-K lists: distinct items recommended to anyone / ``n_items``.

    Keeps, per item, the best (smallest) 0-based position at which it appeared in any row's
    top-``k_max`` list, so ``coverage@K`` for every ``K <= k_max`` comes from ``O(N)`` memory.
    Items whose (masked) score is ``-inf`` are not counted even if ``topk`` returns them.
    """

    def __init__(self) -> None:
        self._best_pos: Tensor | None = None  # int64 [N+1], k_max-sentinel when never seen
        self._k_max: int | None = None

    def update(self, scores: Tensor, k_max: int) -> None:
        """Record the top-``k_max`` items of each row of already-masked ``scores``."""
        if scores.dim() != 2:
            raise ValueError(f"scores must be [B, N+1], got shape {tuple(scores.shape)}")
        if self._k_max is None:
            self._k_max = int(k_max)
        elif int(k_max) != self._k_max:
            raise ValueError(f"k_max changed between updates ({self._k_max} -> {k_max})")
        n_cols = scores.shape[1]
        if self._best_pos is None:
            self._best_pos = torch.full((n_cols,), self._k_max, dtype=torch.long, device=scores.device)
        elif self._best_pos.shape[0] != n_cols:
            raise ValueError(f"number of score columns changed ({self._best_pos.shape[0]} -> {n_cols})")
        if scores.shape[0] == 0:
            return
        k = min(self._k_max, n_cols)
        vals, idx = torch.topk(scores, k, dim=1)
        pos = torch.arange(k, device=scores.device).expand_as(idx)
        pos = torch.where((vals == NEG_INF) | torch.isnan(vals), torch.full_like(pos, self._k_max), pos)
        best = self._best_pos.to(scores.device)
        best.scatter_reduce_(0, idx.reshape(-1), pos.reshape(-1), reduce="amin")
        best[0] = self._k_max  # padding is never an item
        self._best_pos = best

    def result(self, ks: Sequence[int], n_items: int | None = None) -> dict[str, float]:
        """``coverage@K`` for each ``K`` (must be ``<= k_max``); ``n_items`` defaults to N."""
        if self._best_pos is None:
            return {f"coverage@{int(k)}": float("nan") for k in ks}
        if n_items is None:
            n_items = self._best_pos.shape[0] - 1
        out = {}
        for k in ks:
            k = int(k)
            if k > self._k_max:  # type: ignore[operator]
                raise ValueError(f"coverage@{k} needs k <= k_max={self._k_max}")
            out[f"coverage@{k}"] = int((self._best_pos < k).sum()) / n_items
        return out


class RankAccumulator:
    """Collects target ranks batch by batch and turns them into averaged metrics.

    Use :meth:`add` with precomputed ranks, or :meth:`add_scores` to mask, rank and (if a
    :class:`CoverageCounter` is attached) update coverage in one call.
    """

    def __init__(self, coverage: CoverageCounter | None = None, k_max: int | None = None) -> None:
        if coverage is not None and k_max is None:
            raise ValueError("k_max is required when a CoverageCounter is attached")
        self.coverage = coverage
        self.k_max = k_max
        self._ranks: list[np.ndarray] = []

    def add(self, ranks: np.ndarray | Tensor) -> None:
        if isinstance(ranks, Tensor):
            ranks = ranks.detach().cpu().numpy()
        self._ranks.append(np.asarray(ranks, dtype=np.int64).reshape(-1))

    def add_scores(
        self,
        scores: Tensor,
        history: Tensor,
        targets: Tensor,
        exclude_history: bool = True,
    ) -> Tensor:
        """Mask ``scores``, record the target ranks (and coverage); returns the ranks."""
        masked = mask_scores(scores, history, exclude_history=exclude_history)
        ranks = target_ranks(masked, targets)
        self.add(ranks)
        if self.coverage is not None:
            self.coverage.update(masked, self.k_max)  # type: ignore[arg-type]
        return ranks

    @property
    def ranks(self) -> np.ndarray:
        if not self._ranks:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate(self._ranks)

    def result(self, ks: Sequence[int], n_items: int | None = None) -> dict[str, float]:
        out = metrics_from_ranks(self.ranks, ks)
        if self.coverage is not None:
            out.update(self.coverage.result(ks, n_items))
        return out
