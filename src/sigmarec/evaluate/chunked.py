"""Full-ranking evaluation over chunks of items (``eval.item_chunk``): each case's rank and its top-K without ever
holding a row's scores for the whole catalog, for catalogs where even one batch of ``[B, N + 1]`` scores is too
much (``eval.max_scores`` bounds memory by scoring fewer rows; this bounds it by scoring fewer items).

For the models scored by dot products (``SequentialRecommender.score_all``: one user vector, or the max over K
interest vectors). Same conventions as ``ranking.target_ranks``: padding and (with history exclusion) the input's
items never count, ties count against the target, a target scored -inf ranks after every valid item. The target's
own score comes from a product with its item vector rather than from its chunk's matmul, which can differ from it
in the last float32 bit; the target's column is left out of the count, so that difference never moves it past itself.
"""

from __future__ import annotations

import numpy as np
import torch

from sigmarec.data.batching import gather_left_padded
from sigmarec.evaluate.ranking import NEG_INF, CoverageCounter
from sigmarec.models.base import SequentialRecommender
from sigmarec.models.inputs import inference_inputs


def scores_by_dot_product(model: SequentialRecommender) -> bool:
    """Whether the model ranks by the base class's dot products (what chunked ranking reproduces)."""
    return type(model).score_all is SequentialRecommender.score_all


def _score(rep: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    return torch.einsum("bkd,nd->bkn", rep, block).amax(1) if rep.dim() == 3 else rep @ block.T


@torch.no_grad()
def chunked_ranks(model: SequentialRecommender, items: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                  targets: np.ndarray, max_len: int, device: torch.device, exclude_history: bool, chunk: int,
                  context_args: tuple = (None, None, None), k_max: int = 0,
                  coverage: CoverageCounter | None = None) -> np.ndarray:
    """0-based ranks ``[B]`` of ``targets`` after the histories ``items[starts:ends]``, scoring ``chunk`` items at
    a time; with ``coverage``, each row's top ``k_max`` (kept as a running top-K) is recorded in it."""
    inputs, context = inference_inputs(model, items, starts, ends, max_len, device, *context_args)
    rep = model.user_representation(inputs, **context).float()
    table = model.item_embeddings().float()
    n_cols = table.shape[0]
    tgt = torch.from_numpy(np.asarray(targets, dtype=np.int64)).to(device)
    rows = torch.arange(len(tgt), device=device)
    t = (rep * table[tgt]).sum(-1) if rep.dim() == 2 else (rep * table[tgt][:, None, :]).sum(-1).amax(1)
    history = torch.from_numpy(gather_left_padded(items, starts, ends)).to(device)
    if exclude_history:
        t = t.masked_fill((history == tgt[:, None]).any(1), NEG_INF)
    ge = torch.zeros(len(tgt), dtype=torch.long, device=device)
    valid = torch.zeros_like(ge)
    top_v = torch.empty(len(tgt), 0, device=device)
    top_i = torch.empty(len(tgt), 0, dtype=torch.long, device=device)
    for lo in range(0, n_cols, chunk):
        hi = min(lo + chunk, n_cols)
        s = _score(rep, table[lo:hi])
        if lo == 0:
            s[:, 0] = NEG_INF  # padding
        if exclude_history:
            h = history - lo
            ok = (history > 0) & (h >= 0) & (h < hi - lo)
            s[rows[:, None].expand_as(h)[ok], h[ok]] = NEG_INF
        if coverage is not None and k_max > 0:
            k = min(k_max, hi - lo)
            v, i = torch.topk(s, k, dim=1)
            top_v, idx = torch.topk(torch.cat([top_v, v], 1), min(k_max, top_v.shape[1] + k), dim=1)
            top_i = torch.cat([top_i, i + lo], 1).gather(1, idx)
        own = (tgt >= lo) & (tgt < hi)
        s[rows[own], tgt[own] - lo] = NEG_INF  # the target never counts against itself
        ge += (s >= t[:, None]).sum(1)
        valid += (s > NEG_INF).sum(1)
    if coverage is not None and k_max > 0:
        coverage.update_topk(top_v, top_i, k_max, n_cols)
    return torch.where(t > NEG_INF, ge, valid).cpu().numpy()
