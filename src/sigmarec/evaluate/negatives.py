"""Negative sampling for sampled-metric evaluation (vectorised numpy) and sampled ranks.

Sampled metrics are *not* equivalent to full ranking; they are offered for comparison with
papers that report them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["sample_negatives", "sampled_ranks"]

# Rejection rounds before the remaining (hard) rows switch to exact Gumbel-top-k sampling.
_MAX_REJECTION_ROUNDS = 16
# Users processed together are chosen so that one candidate block stays around this many entries.
_BLOCK_ELEMS = 1 << 23


def sample_negatives(
    histories_flat: np.ndarray,
    histories_offsets: np.ndarray,
    targets: np.ndarray,
    n_items: int,
    n: int,
    sampler: str = "uniform",
    popularity: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Draw ``n`` distinct negative item ids in ``1..n_items`` for each of ``U`` users.

    A negative is never the user's target nor an item of the user's history
    (``histories_flat[offsets[u]:offsets[u+1]]``). ``sampler="uniform"`` draws uniformly over the
    eligible items; ``sampler="popularity"`` draws proportionally to ``popularity`` (counts per
    item id ``0..N``; items with zero count are never drawn), without replacement (successive
    sampling). Padding 0 is never drawn. Deterministic given ``seed``.

    Works by rejection: candidate blocks are drawn for all unfinished users at once, invalid ones
    are rejected with a sorted ``user*(N+1)+item`` key lookup, duplicates are removed per row, and
    only unfinished rows are redrawn. Rows still unfinished after a few rounds (nearly exhausted
    catalogues) are completed exactly with Gumbel-top-k over their eligible items.

    Returns int64 ``[U, n]``. Raises ``ValueError`` if some user has fewer than ``n`` eligible
    items.
    """
    flat = np.asarray(histories_flat, dtype=np.int64).reshape(-1)
    offsets = np.asarray(histories_offsets, dtype=np.int64).reshape(-1)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1)
    n_items = int(n_items)
    n = int(n)
    n_users = targets.shape[0]
    if offsets.shape[0] != n_users + 1:
        raise ValueError(f"histories_offsets must have U+1={n_users + 1} entries, got {offsets.shape[0]}")
    if offsets[0] != 0 or offsets[-1] != flat.shape[0] or np.any(np.diff(offsets) < 0):
        raise ValueError("histories_offsets must start at 0, be non-decreasing and end at len(histories_flat)")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    if flat.size and (flat.min() < 0 or flat.max() > n_items):
        raise ValueError(f"history item ids must lie in 0..{n_items}")
    if n_users and (targets.min() < 0 or targets.max() > n_items):
        raise ValueError(f"target item ids must lie in 0..{n_items}")

    # Drawable items and their probabilities (index 0 = padding, never drawable).
    if sampler == "uniform":
        probs = None
        drawable = np.ones(n_items + 1, dtype=bool)
    elif sampler == "popularity":
        if popularity is None:
            raise ValueError("sampler='popularity' needs the popularity counts")
        pop = np.asarray(popularity, dtype=np.float64).reshape(-1)
        if pop.shape[0] != n_items + 1:
            raise ValueError(f"popularity must have n_items+1={n_items + 1} entries (ids 0..N), got {pop.shape[0]}")
        if not np.all(np.isfinite(pop)) or np.any(pop < 0):
            raise ValueError("popularity counts must be finite and non-negative")
        pop = pop.copy()
        pop[0] = 0.0
        if pop.sum() <= 0:
            raise ValueError("popularity counts of items 1..N sum to zero")
        probs = pop / pop.sum()
        drawable = pop > 0
    else:
        raise ValueError(f"unknown sampler {sampler!r}; expected 'uniform' or 'popularity'")
    drawable[0] = False

    out = np.zeros((n_users, n), dtype=np.int64)
    if n_users == 0 or n == 0:
        return out

    # Forbidden (user, item) pairs as sorted unique keys.
    width = n_items + 1
    lengths = np.diff(offsets)
    users_of_flat = np.repeat(np.arange(n_users, dtype=np.int64), lengths)
    keys = np.concatenate([users_of_flat * width + flat, np.arange(n_users, dtype=np.int64) * width + targets])
    keys.sort()
    keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]  # unique (np.unique is slow here)

    # Eligibility check: drawable items minus the user's forbidden drawable items.
    forbidden_drawable = drawable[keys % width]
    n_forbidden = np.bincount(keys[forbidden_drawable] // width, minlength=n_users)
    eligible = int(drawable.sum()) - n_forbidden
    short = np.flatnonzero(eligible < n)
    if short.size:
        u = int(short[0])
        raise ValueError(
            f"cannot sample {n} negatives: user index {u} has only {int(eligible[u])} eligible items "
            f"({short.size} user(s) affected; n_items={n_items}, sampler={sampler!r})"
        )

    rng = np.random.default_rng(seed)
    cdf = None if probs is None else np.cumsum(probs[1:])
    chunk = max(1, _BLOCK_ELEMS // (4 * n + 16))
    for start in range(0, n_users, chunk):
        stop = min(start + chunk, n_users)
        _fill_chunk(out, start, stop, keys, width, n_items, n, rng, probs, cdf, drawable, eligible)
    return out


def _draw(rng: np.random.Generator, size: tuple[int, int], n_items: int, cdf: np.ndarray | None) -> np.ndarray:
    if cdf is None:
        return rng.integers(1, n_items + 1, size=size, dtype=np.int64)
    u = rng.random(size) * cdf[-1]
    return np.minimum(np.searchsorted(cdf, u, side="right"), n_items - 1).astype(np.int64) + 1


def _is_forbidden(keys: np.ndarray, query: np.ndarray) -> np.ndarray:
    if keys.size == 0:
        return np.zeros(query.shape, dtype=bool)
    pos = np.searchsorted(keys, query)
    pos = np.minimum(pos, keys.size - 1)
    return keys[pos] == query


def _fill_chunk(
    out: np.ndarray,
    start: int,
    stop: int,
    keys: np.ndarray,
    width: int,
    n_items: int,
    n: int,
    rng: np.random.Generator,
    probs: np.ndarray | None,
    cdf: np.ndarray | None,
    drawable: np.ndarray,
    eligible: np.ndarray,
) -> None:
    users = np.arange(start, stop, dtype=np.int64)
    filled = np.zeros(users.size, dtype=np.int64)  # per chunk row
    block = out[start:stop]  # view
    n_drawable = int(drawable.sum())

    for _ in range(_MAX_REJECTION_ROUNDS):
        rows = np.flatnonzero(filled < n)
        if rows.size == 0:
            return
        need = n - filled[rows]
        # Block size from the typical acceptance rate (remaining eligible / drawable, exact for
        # uniform); rows that stay short after the rounds are finished exactly below.
        rate = float(np.median((eligible[users[rows]] - filled[rows]) / n_drawable))
        m = min(int(np.ceil(int(need.max()) * 1.5 / max(rate, 0.25))), 4 * n) + 8
        cand = _draw(rng, (rows.size, m), n_items, cdf)
        bad = _is_forbidden(keys, users[rows, None] * width + cand)
        cand[bad] = -1

        # Dedupe against what the row already has and within the block (first occurrence wins).
        have = np.where(np.arange(n)[None, :] < filled[rows, None], block[rows], -1)
        both = np.concatenate([have, cand], axis=1)
        order = np.argsort(both, axis=1, kind="stable")
        srt = np.take_along_axis(both, order, axis=1)
        dup_sorted = np.zeros(srt.shape, dtype=bool)
        dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
        dup = np.empty_like(dup_sorted)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        new_ok = (cand >= 0) & ~dup[:, n:]

        # Take the first `need` valid candidates of each row, in draw order.
        cum = np.cumsum(new_ok, axis=1)
        take = new_ok & (cum <= need[:, None])
        r_idx, c_idx = np.nonzero(take)
        dest = filled[rows][r_idx] + cum[r_idx, c_idx] - 1
        block[rows[r_idx], dest] = cand[r_idx, c_idx]
        filled[rows] += take.sum(axis=1)

    rows = np.flatnonzero(filled < n)
    step = max(1, _BLOCK_ELEMS // width)
    for i in range(0, rows.size, step):
        _exact_fill(block, rows[i : i + step], users, filled, keys, width, n_items, n, rng, probs, drawable)


def _exact_fill(
    block: np.ndarray,
    rows: np.ndarray,
    users: np.ndarray,
    filled: np.ndarray,
    keys: np.ndarray,
    width: int,
    n_items: int,
    n: int,
    rng: np.random.Generator,
    probs: np.ndarray | None,
    drawable: np.ndarray,
) -> None:
    """Complete the given rows exactly: Gumbel-top-k over each row's remaining eligible items."""
    logp = np.zeros(width) if probs is None else np.log(np.where(probs > 0, probs, 1.0))
    z = logp[None, :] + rng.gumbel(size=(rows.size, width))
    z[:, ~drawable] = -np.inf
    # Forbidden items of these users.
    sel_users = users[rows]
    key_users = keys // width
    in_sel = np.isin(key_users, sel_users)
    local = np.searchsorted(sel_users, key_users[in_sel])
    z[local, keys[in_sel] % width] = -np.inf
    # Already chosen items.
    have_mask = np.arange(n)[None, :] < filled[rows, None]
    r_idx, c_idx = np.nonzero(have_mask)
    z[r_idx, block[rows][r_idx, c_idx]] = -np.inf
    need = n - filled[rows]
    kmax = int(need.max())
    top = np.argsort(-z, axis=1, kind="stable")[:, :kmax]
    take = np.arange(kmax)[None, :] < need[:, None]
    r_idx, c_idx = np.nonzero(take)
    block[rows[r_idx], filled[rows][r_idx] + c_idx] = top[r_idx, c_idx]
    filled[rows] = n


def sampled_ranks(target_scores: Tensor, negative_scores: Tensor) -> Tensor:
    """0-based rank of the target among sampled negatives: count of negatives scoring ``>=`` it.

    Ties count against the target. NaN scores are treated as ``-inf`` (a NaN target is ranked
    below every negative). Returns int64 ``[B]``.
    """
    if negative_scores.dim() != 2 or target_scores.dim() != 1 or target_scores.shape[0] != negative_scores.shape[0]:
        raise ValueError(
            f"expected target_scores [B] and negative_scores [B, n], got {tuple(target_scores.shape)} "
            f"and {tuple(negative_scores.shape)}"
        )
    t = torch.nan_to_num(target_scores, nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))
    s = torch.nan_to_num(negative_scores, nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))
    return (s >= t.unsqueeze(1)).sum(dim=1, dtype=torch.long)
