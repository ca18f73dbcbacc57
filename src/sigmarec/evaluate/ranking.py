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

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from sigmarec.config import ConfigError

NEG_INF = float("-inf")

__all__ = [
    "CoverageCounter",
    "mask_scores",
    "metrics_from_ranks",
    "multi_target_ranks",
    "parse_metric",
    "per_case_metric",
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


def multi_target_ranks(scores: Tensor, targets: Tensor) -> Tensor:
    """0-based rank of every target of every row: ``targets`` ``[B, T]`` (0 = no target) -> ``[B, T]``
    int64, -1 where there is no target.

    Same conventions as :func:`target_ranks` (ties count against the target, ``-inf``/NaN items never
    count, a ``-inf``/NaN target goes after every valid item), computed with one sort per row and a
    binary search per target, so many targets per row cost no more memory than the scores.
    Targets must be distinct within a row.
    """
    if scores.dim() != 2 or targets.dim() != 2 or targets.shape[0] != scores.shape[0]:
        raise ValueError(f"need scores [B, N+1] and targets [B, T], got {tuple(scores.shape)} and {tuple(targets.shape)}")
    items = scores[:, 1:]
    items = torch.where(torch.isnan(items), NEG_INF, items)
    ordered = items.sort(dim=1).values.contiguous()  # ascending
    tgt = targets.to(device=scores.device, dtype=torch.long)
    t = scores.gather(1, tgt.clamp(min=0))
    t = torch.where(torch.isnan(t), NEG_INF, t).contiguous()
    at_least = items.shape[1] - torch.searchsorted(ordered, t, right=False)  # items scoring >= t, the target included
    ranks = at_least - 1
    n_valid = (ordered > NEG_INF).sum(dim=1, keepdim=True)
    ranks = torch.where(t > NEG_INF, ranks, n_valid.expand_as(ranks))
    return torch.where(tgt > 0, ranks, torch.full_like(ranks, -1))


def _rank_matrix(ranks: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``ranks`` ([U] or [U, T], -1 = no target) as float64 ``[U, T]``, its validity mask and targets per row;
    refuses a row without any target."""
    if isinstance(ranks, Tensor):
        ranks = ranks.detach().cpu().numpy()
    r = np.asarray(ranks, dtype=np.float64)
    r = r.reshape(-1, 1) if r.ndim <= 1 else r
    valid = r >= 0
    n_targets = valid.sum(axis=1)
    if r.shape[0] and not n_targets.all():
        raise ValueError("every user needs at least one target (a row of ranks is all -1)")
    return r, valid, n_targets


def metrics_from_ranks(ranks: np.ndarray | Tensor, ks: Sequence[int]) -> dict[str, float]:
    """Ranking metrics averaged over users from 0-based target ranks.

    ``ranks`` is ``[U]`` (one target per user) or ``[U, T]`` (several targets, -1 = none; the
    ComiRec protocol). With ``H`` the targets ranked inside the top K and ``|T|`` the user's targets:
    ``recall@K`` = H / |T|, ``hit@K`` = 1 if H > 0, ``precision@K`` = H / K, ``ndcg@K`` = DCG / IDCG with
    DCG summing ``1/log2(rank+2)`` over the hits and IDCG the same for ``min(|T|, K)`` perfect
    ranks, ``mrr@K`` = ``1/(best rank + 1)`` if that rank is inside the top K else 0, ``mrr`` the same
    without cutoff; ``n`` (int) is the number of users. With one
    target these are the usual single-target metrics (recall = hit). With no users every metric is NaN.
    """
    r, valid, n_targets = _rank_matrix(ranks)
    n = int(r.shape[0])
    gain = np.where(valid, 1.0 / np.log2(np.maximum(r, 0) + 2.0), 0.0)
    ideal = np.cumsum(1.0 / np.log2(np.arange(r.shape[1]) + 2.0))  # IDCG for 1..T targets
    out: dict[str, float] = {}
    for k in ks:
        k = int(k)
        if k <= 0:
            raise ValueError(f"cutoffs must be positive, got {k}")
        inside = valid & (r < k)
        hits = inside.sum(axis=1)
        idcg = ideal[np.minimum(n_targets, k) - 1] if n else np.zeros(0)
        mean = (lambda x: float(x.mean())) if n else (lambda x: float("nan"))
        out[f"recall@{k}"] = mean(hits / np.maximum(n_targets, 1))
        out[f"hit@{k}"] = mean(hits > 0)
        out[f"ndcg@{k}"] = mean(np.where(inside, gain, 0.0).sum(axis=1) / idcg)
        out[f"precision@{k}"] = mean(hits / k)
        first = np.where(inside, r, np.inf).min(axis=1) if n else np.zeros(0)
        out[f"mrr@{k}"] = mean(np.where(np.isfinite(first), 1.0 / (first + 1.0), 0.0))
    best = np.where(valid, r, np.inf).min(axis=1) if n else np.zeros(0)
    out["mrr"] = float((1.0 / (best + 1.0)).mean()) if n else float("nan")
    out["n"] = n  # type: ignore[assignment]
    return out


METRIC_NAMES = ("recall", "ndcg", "hit", "precision", "mrr")


def parse_metric(metric: str) -> tuple[str, int | None]:
    """``"ndcg@40"`` -> ``("ndcg", 40)``, ``"mrr"`` -> ``("mrr", None)``: a metric of
    :func:`metrics_from_ranks` at any positive cutoff. Raises ``ValueError`` for anything else."""
    known = "recall@K, ndcg@K, hit@K, precision@K, mrr@K or mrr (K a positive integer)"
    name, at, k = str(metric).strip().lower().partition("@")
    if name not in METRIC_NAMES:
        raise ConfigError(f"unknown metric {metric!r}; known: {known}")
    if not at:
        if name != "mrr":
            raise ConfigError(f"metric {metric!r} needs a cutoff, e.g. {name}@10")
        return name, None
    if not (k.isascii() and k.isdigit()) or int(k) <= 0:
        raise ConfigError(f"metric {metric!r}: the cutoff must be a positive integer; known: {known}")
    return name, int(k)


def per_case_metric(ranks: np.ndarray | Tensor, metric: str) -> np.ndarray:
    """The value of ``metric`` (see :func:`parse_metric`) for every case (row) of ``ranks``, float64 ``[U]``.

    Same definitions as :func:`metrics_from_ranks`, whose value is the mean of these: ``ranks`` is
    ``[U]`` (one target per case) or ``[U, T]`` (several, -1 = none)."""
    name, k = parse_metric(metric)
    r, valid, n_targets = _rank_matrix(ranks)
    if r.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    inside = valid if k is None else valid & (r < k)
    if name == "mrr":
        first = np.where(inside, r, np.inf).min(axis=1)
        return np.where(np.isfinite(first), 1.0 / (first + 1.0), 0.0)
    hits = inside.sum(axis=1)
    if name == "recall":
        return hits / n_targets
    if name == "hit":
        return (hits > 0).astype(np.float64)
    if name == "precision":
        return hits / k
    gain = np.where(inside, 1.0 / np.log2(np.maximum(r, 0) + 2.0), 0.0).sum(axis=1)
    ideal = np.cumsum(1.0 / np.log2(np.arange(r.shape[1]) + 2.0))  # IDCG for 1..T targets
    return gain / ideal[np.minimum(n_targets, k) - 1]


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
        vals, idx = torch.topk(scores, min(self._k_max, n_cols), dim=1)
        self.update_topk(vals, idx, k_max, n_cols)

    def update_topk(self, vals: Tensor, idx: Tensor, k_max: int, n_cols: int) -> None:
        """Record rows' top lists given as ``(values, item indices)`` ``[B, k]`` in descending order (what
        ``update`` takes from full scores; chunked evaluation keeps them as a running top-K)."""
        if self._k_max is None:
            self._k_max = int(k_max)
        if self._best_pos is None:
            self._best_pos = torch.full((n_cols,), self._k_max, dtype=torch.long, device=vals.device)
        k = idx.shape[1]
        if vals.shape[0] == 0 or k == 0:
            return
        pos = torch.arange(k, device=vals.device).expand_as(idx)
        pos = torch.where((vals == NEG_INF) | torch.isnan(vals), torch.full_like(pos, self._k_max), pos)
        best = self._best_pos.to(vals.device)
        best.scatter_reduce_(0, idx.reshape(-1), pos.reshape(-1), reduce="amin")
        best[0] = self._k_max  # padding is never an item
        self._best_pos = best

    def merge_min(self, reduce_min, n_cols: int, k_max: int) -> None:
        """Combine the counters of all ranks of a process group: ``reduce_min`` takes each item's best position
        over ranks, in place (``Distributed.min_``). A rank that scored nothing takes part with the sentinel."""
        if self._best_pos is None:
            self._k_max = int(k_max)
            self._best_pos = torch.full((n_cols,), self._k_max, dtype=torch.long)
        self._best_pos = reduce_min(self._best_pos.cpu())

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
