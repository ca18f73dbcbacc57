"""Synthetic multi-interest sequences with planted ground truth.

The generative story (all randomness from one ``numpy.random.default_rng(seed)``):

* **Items and categories.** ``n_items`` items are shuffled and cut into ``n_categories`` non-empty
  blocks of uneven size (sizes from a Dirichlet). Inside a category, item ``k`` (by planted
  popularity rank) has popularity weight ``1 / (k + 1) ** popularity_skew``.
* **Transition chains.** Each item has ``n_successors`` distinct likely successors, drawn uniformly
  from the *other* items of its own category, with weights ``1, decay, decay**2, ...``
  (normalised). This is a sparse Markov chain per category.
* **Users.** Each user has ``interests_per_user`` (inclusive range) distinct categories with
  intensities from ``Dirichlet(interest_concentration)``, stored strongest first.
* **Walk.** At the first step the current interest is drawn by intensity; at every later step it is
  re-drawn by intensity with probability ``switch_prob`` (the redraw may land on the same
  interest, so the category actually changes with probability ``switch_prob * (1 - sum p_i^2)``
  and the long-run share of each interest is its intensity). The next item then follows the
  current category's chain from the last item the user saw *in that category*, with probability
  ``transition_strength``; otherwise (or when the user has no item of that category yet) it is a
  popularity draw within the category.
* **Focused sessions** (``session_focus=True``, catalog name ``synthetic-sessions``): the interest
  is re-drawn only when a session opens, so a session stays within one interest.
* **Time.** Each step after the first opens a new session with probability
  ``1 / mean_session_len``. Gaps inside a session are ``session_gap_min + Exp(mean - min)``
  seconds, capped at ``session_gap_max``; gaps between sessions are log-normal around
  ``idle_gap_median_hours``, at least ``idle_gap_min_hours``. With the defaults every in-session
  gap is < 20 min and every idle gap >= 1 h, so a 30-minute threshold recovers the sessions
  exactly. Timestamps are strictly increasing per user.

The walk loops over time steps and is vectorised across users.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sigmarec.data.sequences import DataError, RawData

__all__ = ["SyntheticConfig", "generate"]


@dataclass
class SyntheticConfig:
    """Knobs of the synthetic generator (see the module docstring for the generative story)."""

    n_users: int = 2000
    n_items: int = 1000
    n_categories: int = 8
    category_size_concentration: float = 2.0  # Dirichlet alpha for category sizes (small = uneven)
    interests_per_user: tuple[int, int] = (2, 4)  # (min, max), inclusive
    interest_concentration: float = 1.0  # Dirichlet alpha for a user's interest intensities
    # sequence lengths: log-normal with this mean (before clipping), clipped to [min_len, max_len]
    min_len: int = 8
    max_len: int = 40
    mean_len: float = 24.0
    len_sigma: float = 0.5
    switch_prob: float = 0.3  # per step: probability of re-drawing the current interest
    transition_strength: float = 0.8  # probability of following the chain (else popularity draw)
    n_successors: int = 3  # likely successors per item (within its category)
    successor_decay: float = 0.5  # successor weights 1, decay, decay^2, ... (normalised)
    popularity_skew: float = 1.0  # Zipf exponent of popularity within a category
    # sessions
    mean_session_len: float = 5.0  # mean interactions per session (geometric)
    session_gap_mean: float = 180.0  # seconds, mean gap between interactions in a session
    session_gap_min: float = 5.0  # seconds
    session_gap_max: float = 1200.0  # seconds (cap, keeps sessions separable at 30 min)
    idle_gap_median_hours: float = 20.0  # median gap between sessions
    idle_gap_sigma: float = 1.0  # log-normal sigma of the idle gap
    idle_gap_min_hours: float = 1.0
    # focused sessions: the current interest is re-drawn (by intensity) at every session start and
    # never inside a session, so session boundaries carry signal (switch_prob is then unused); the
    # session starts come from a second random stream so the default data stay as they were
    session_focus: bool = False
    start_time: float = 1_600_000_000.0  # unix seconds; users start uniformly in a window after it
    start_spread_days: float = 30.0
    seed: int = 0

    def validate(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise DataError(f"SyntheticConfig: {msg}")

        need(self.n_users >= 1, f"n_users must be >= 1, got {self.n_users}")
        need(self.n_categories >= 1, f"n_categories must be >= 1, got {self.n_categories}")
        need(
            self.n_items >= self.n_categories,
            f"n_items ({self.n_items}) must be >= n_categories ({self.n_categories})",
        )
        lo, hi = self.interests_per_user
        need(
            1 <= lo <= hi <= self.n_categories,
            f"interests_per_user {self.interests_per_user} must satisfy 1 <= min <= max <= n_categories",
        )
        need(1 <= self.min_len <= self.max_len, f"need 1 <= min_len <= max_len, got {self.min_len}, {self.max_len}")
        need(self.mean_len > 0 and self.len_sigma >= 0, "mean_len must be > 0 and len_sigma >= 0")
        for name in ("switch_prob", "transition_strength"):
            v = getattr(self, name)
            need(0.0 <= v <= 1.0, f"{name} must be in [0, 1], got {v}")
        need(self.n_successors >= 1, f"n_successors must be >= 1, got {self.n_successors}")
        need(self.successor_decay > 0, f"successor_decay must be > 0, got {self.successor_decay}")
        need(self.popularity_skew >= 0, f"popularity_skew must be >= 0, got {self.popularity_skew}")
        need(self.category_size_concentration > 0, "category_size_concentration must be > 0")
        need(self.interest_concentration > 0, "interest_concentration must be > 0")
        need(self.mean_session_len >= 1, f"mean_session_len must be >= 1, got {self.mean_session_len}")
        need(
            0 < self.session_gap_min <= self.session_gap_mean <= self.session_gap_max,
            "need 0 < session_gap_min <= session_gap_mean <= session_gap_max",
        )
        need(self.idle_gap_median_hours > 0 and self.idle_gap_min_hours > 0, "idle gaps must be > 0")
        need(self.idle_gap_sigma >= 0, "idle_gap_sigma must be >= 0")
        need(self.start_spread_days >= 0, "start_spread_days must be >= 0")


def generate(cfg: SyntheticConfig | None = None) -> RawData:
    """Draw a synthetic data set; deterministic in ``cfg`` (including ``cfg.seed``)."""
    cfg = cfg if cfg is not None else SyntheticConfig()
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    U, N, K = cfg.n_users, cfg.n_items, cfg.n_categories

    # ---- items -> categories, popularity ranks ----
    sizes = 1 + rng.multinomial(N - K, rng.dirichlet(np.full(K, cfg.category_size_concentration)))
    cat_end = np.cumsum(sizes)
    cat_start = cat_end - sizes
    order = rng.permutation(N)  # order[cat_start[c] + rank] = item with that popularity rank in c
    item_cat = np.empty(N, dtype=np.int64)
    item_rank = np.empty(N, dtype=np.int64)
    pos_cat = np.repeat(np.arange(K), sizes)  # category of each position in `order`
    pos_rank = np.arange(N) - cat_start[pos_cat]
    item_cat[order] = pos_cat
    item_rank[order] = pos_rank
    # popularity keys: category + within-category cumulative probability (last of each == c + 1)
    pop_w = 1.0 / (pos_rank + 1.0) ** cfg.popularity_skew
    keys = np.empty(N)
    for c in range(K):
        s, e = cat_start[c], cat_end[c]
        cum = np.cumsum(pop_w[s:e])
        cum /= cum[-1]
        cum[-1] = 1.0
        keys[s:e] = c + cum

    def popularity_draw(cat: np.ndarray, u: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(keys, cat + u, side="right")
        pos = np.clip(pos, cat_start[cat], cat_end[cat] - 1)
        return order[pos]

    # ---- per-item successors within the category ----
    S = cfg.n_successors
    succ = np.empty((N, S), dtype=np.int64)
    succ_cum = np.ones((N, S))
    base_w = cfg.successor_decay ** np.arange(S, dtype=np.float64)
    for c in range(K):
        m = int(sizes[c])
        members = order[cat_start[c] : cat_end[c]]
        if m == 1:
            succ[members] = members[0]
            continue
        s_c = min(S, m - 1)
        offs = rng.integers(1, m, size=(m, s_c))  # distinct non-zero offsets -> distinct, not self
        while True:
            srt = np.sort(offs, axis=1)
            dup = np.any(srt[:, 1:] == srt[:, :-1], axis=1) if s_c > 1 else np.zeros(m, dtype=bool)
            if not dup.any():
                break
            offs[dup] = rng.integers(1, m, size=(int(dup.sum()), s_c))
        local = (np.arange(m)[:, None] + offs) % m
        succ[members, :s_c] = members[local]
        succ[members, s_c:] = members[local[:, :1]]  # padding, never drawn (weight 0)
        w = base_w[:s_c] / base_w[:s_c].sum()
        cum = np.cumsum(w)
        cum[-1] = 1.0
        succ_cum[members, :s_c] = cum

    # ---- users: interests and intensities (strongest first) ----
    lo, hi = cfg.interests_per_user
    n_int = rng.integers(lo, hi + 1, size=U)
    M = int(hi)
    picks = np.argsort(rng.random((U, K)), axis=1)[:, :M]
    gam = rng.gamma(cfg.interest_concentration, size=(U, M))
    valid = np.arange(M)[None, :] < n_int[:, None]
    gam = np.where(valid, gam, 0.0)
    tot = gam.sum(axis=1, keepdims=True)
    gam = np.where(tot > 0, gam, valid.astype(np.float64))  # guard against underflow to all zeros
    probs = gam / gam.sum(axis=1, keepdims=True)
    srt = np.argsort(-probs, axis=1, kind="stable")
    probs = np.take_along_axis(probs, srt, axis=1)
    interests = np.take_along_axis(picks, srt, axis=1)
    interests = np.where(probs > 0, interests, -1)  # only padding (invalid slots) has zero weight
    n_int = (interests >= 0).sum(axis=1)
    int_cum = np.cumsum(probs, axis=1)
    int_cum[np.arange(U), n_int - 1] = 1.0

    def draw_slot(u: np.ndarray) -> np.ndarray:
        return np.minimum((int_cum < u[:, None]).sum(axis=1), n_int - 1)

    # ---- lengths ----
    mu = np.log(cfg.mean_len) - 0.5 * cfg.len_sigma**2
    lengths = np.clip(np.rint(rng.lognormal(mu, cfg.len_sigma, size=U)), cfg.min_len, cfg.max_len).astype(np.int64)
    L = int(lengths.max())

    # ---- walk: loop over steps, vectorised over users ----
    ar = np.arange(U)
    u_switch = rng.random((L, U))
    u_slot = rng.random((L, U))
    u_follow = rng.random((L, U))
    u_pop = rng.random((L, U))
    u_succ = rng.random((L, U))
    last = np.full((U, M), -1, dtype=np.int64)
    seq = np.empty((U, L), dtype=np.int64)
    focused_starts = None
    if cfg.session_focus:
        focused_starts = np.random.default_rng([cfg.seed, 1]).random((U, L)) < 1.0 / cfg.mean_session_len
    cur = draw_slot(u_slot[0])
    for t in range(L):
        if t > 0:
            sw = focused_starts[:, t] if focused_starts is not None else u_switch[t] < cfg.switch_prob
            cur = np.where(sw, draw_slot(u_slot[t]), cur)
        cat = interests[ar, cur]
        prev = last[ar, cur]
        pop_item = popularity_draw(cat, u_pop[t])
        prev0 = np.maximum(prev, 0)
        col = np.minimum((succ_cum[prev0] < u_succ[t][:, None]).sum(axis=1), S - 1)
        chain_item = succ[prev0, col]
        follow = (prev >= 0) & (u_follow[t] < cfg.transition_strength)
        new = np.where(follow, chain_item, pop_item)
        seq[:, t] = new
        last[ar, cur] = new

    # ---- timestamps: sessions ----
    new_session = focused_starts if focused_starts is not None else rng.random((U, L)) < 1.0 / cfg.mean_session_len
    within = cfg.session_gap_min + rng.exponential(cfg.session_gap_mean - cfg.session_gap_min, size=(U, L))
    within = np.minimum(within, cfg.session_gap_max)
    idle = rng.lognormal(np.log(cfg.idle_gap_median_hours * 3600.0), cfg.idle_gap_sigma, size=(U, L))
    idle = np.maximum(idle, cfg.idle_gap_min_hours * 3600.0)
    gaps = np.where(new_session, idle, within)
    gaps[:, 0] = 0.0
    start = cfg.start_time + rng.random(U) * cfg.start_spread_days * 86400.0
    ts = start[:, None] + np.cumsum(gaps, axis=1)

    # ---- assemble ----
    mask = np.arange(L)[None, :] < lengths[:, None]
    flat_items = seq[mask]
    user_names = np.array([f"u{i}" for i in range(U)], dtype=object)
    item_names = np.array([f"i{j}" for j in range(N)], dtype=object)
    interactions = pd.DataFrame(
        {
            "user": np.repeat(user_names, lengths),
            "item": item_names[flat_items],
            "timestamp": ts[mask].astype(np.float64),
            "rating": np.full(len(flat_items), np.nan),
        }
    )
    item_side = pd.DataFrame(
        {
            "category": [f"c{c}" for c in item_cat],
            "name": [f"c{c}-item{r}" for c, r in zip(item_cat, item_rank)],
        },
        index=pd.Index(item_names, name="item"),
    )
    user_side = pd.DataFrame(
        {
            "interests": [" ".join(f"c{c}" for c in row[:k]) for row, k in zip(interests, n_int)],
            "intensities": [" ".join(f"{p:.4f}" for p in row[:k]) for row, k in zip(probs, n_int)],
        },
        index=pd.Index(user_names, name="user"),
    )
    return RawData(
        interactions=interactions,
        source=f"synthetic(seed={cfg.seed})",
        item_side=item_side,
        user_side=user_side,
    )
