"""Multi-interest building blocks of SIGMA's MIE-VAE (Section 3.2), all batched over users,
positions and categories: item-to-category probabilities, soft interests with their intensities,
and hard interests from a GRU over every per-category subsequence for every prefix at once."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence


def category_probs(items: torch.Tensor, categories: torch.Tensor, tau: float) -> torch.Tensor:
    """``a_i^j = softmax_j(g_j^T v_i / tau)`` on L2-normalised items and categories: ``[..., d] -> [..., K]``."""
    return torch.softmax(F.normalize(items, dim=-1) @ F.normalize(categories, dim=-1).T / tau, dim=-1)


def soft_interests(v: torch.Tensor, a: torch.Tensor, valid: torch.Tensor, pool: str = "sum") -> tuple[torch.Tensor, torch.Tensor]:
    """Soft interests ``h_t^j`` ``[B, L, K, d]`` and intensities ``alpha_t^j`` ``[B, L, K]`` of every prefix.

    ``h_t^j = sum_{i<=t} a_i^j v_i`` (``pool="sum"``, the paper) or that sum divided by
    ``sum_{i<=t} a_i^j`` (``pool="mean"``, a weighted average whose scale does not grow with t);
    ``alpha_t^j = sum_{i<=t} a_i^j / sum_{i<=t} sum_l a_i^l``. Padding (``valid`` false) counts nowhere.
    """
    a = a * valid.unsqueeze(-1).to(a.dtype)
    mass = a.cumsum(1)  # [B, L, K]
    h = (a.unsqueeze(-1) * v.unsqueeze(2)).cumsum(1)  # [B, L, K, d]
    if pool == "mean":
        h = h / mass.clamp_min(1e-6).unsqueeze(-1)
    elif pool != "sum":
        raise ValueError(f"soft interest pool must be 'sum' or 'mean', got {pool!r}")
    alpha = mass / mass.sum(-1, keepdim=True).clamp_min(1e-12)
    return h, alpha


def interest_intensities(a: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``alpha_T^j`` ``[B, K]`` of whole sequences: the mean of the real items' ``a_i^j`` (``a`` [B, L, K])."""
    a = a * valid.unsqueeze(-1).to(a.dtype)
    return a.sum(1) / valid.sum(1, keepdim=True).clamp_min(1).to(a.dtype)


def hard_assignment(a: torch.Tensor, mode: str, gumbel_tau: float = 1.0, training: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Each item's category ``[...]`` and a weight ``[...]`` equal to 1 in value.

    ``mode="gumbel"``: in training the category is drawn by a straight-through Gumbel-softmax on
    ``log a``, and the weight carries the soft sample's gradient to the categories; ``"argmax"``:
    the most probable category, weight without gradient. Evaluation always uses the argmax.
    """
    if mode not in ("gumbel", "argmax"):
        raise ValueError(f"hard_assignment must be 'gumbel' or 'argmax', got {mode!r}")
    if mode == "argmax" or not training:
        cat = a.argmax(-1)
        return cat, torch.ones_like(a[..., 0])
    y = F.gumbel_softmax(torch.log(a.clamp_min(1e-12)), tau=gumbel_tau, hard=False)
    cat = y.argmax(-1)
    y_cat = y.gather(-1, cat.unsqueeze(-1)).squeeze(-1)
    return cat, y_cat - y_cat.detach() + 1.0


def last_index_per_category(cat: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """``[B, L, K]``: the latest position ``i <= t`` whose item is in category j, or -1 if none."""
    B, L = cat.shape
    onehot = F.one_hot(cat, k).bool() & valid.unsqueeze(-1)
    pos = torch.arange(L, device=cat.device).view(1, L, 1).expand(B, L, k)
    return torch.where(onehot, pos, torch.full_like(pos, -1)).cummax(1).values


def _pack_rows(lengths: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor) -> tuple[PackedSequence, torch.Tensor]:
    """A ``PackedSequence`` holding ``values[i]`` at step ``cols[i]`` of row ``rows[i]`` (rows of ``lengths``,
    every (row, step < length) given exactly once), and each value's slot in the packed data."""
    order = torch.argsort(lengths, descending=True, stable=True)  # sorted position -> row
    sorted_pos = torch.empty_like(order)
    sorted_pos[order] = torch.arange(len(order), device=order.device)
    steps = torch.arange(int(lengths.max()), device=lengths.device)
    batch_sizes = (lengths.unsqueeze(0) > steps.unsqueeze(1)).sum(1)  # rows still running at each step
    offsets = batch_sizes.cumsum(0) - batch_sizes
    slot = offsets[cols] + sorted_pos[rows]
    data = values.new_empty(values.shape).index_put((slot,), values)
    return PackedSequence(data, batch_sizes.cpu(), order, sorted_pos), slot


class HardInterestGRU(nn.Module):
    """``r_t^j``: the state of a GRU run over user b's category-j subsequence up to position t.

    Vectorised: each item's rank inside its (user, category) subsequence is a cumulative count;
    the items are scattered straight into a ``PackedSequence`` with a row per non-empty (user,
    category) pair (rows sorted by length, step c holding the rows longer than c), a single
    ``nn.GRU`` call runs all rows, each item's output is gathered back to its position, and every
    prefix t takes, per category, the output at that category's latest item (a running ``cummax``
    of indices). Packing skips the padding steps a right-padded batch would compute: the rows'
    lengths vary 2-3x around their mean, and the packed GRU ran 2.3x faster on Office batches.
    """

    def __init__(self, d: int, layers: int = 2, bias: bool = False) -> None:
        super().__init__()
        self.gru = nn.GRU(d, d, layers, batch_first=True, bias=bias)

    def forward(self, v: torch.Tensor, cat: torch.Tensor, weight: torch.Tensor, valid: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``v`` [B, L, d] item vectors, ``cat`` [B, L] categories, ``weight`` [B, L] (scales the GRU
        input; 1 in value), ``valid`` [B, L]. Returns ``r`` [B, L, K, d] and ``has`` [B, L, K]
        (false where category j has no item up to t; r is zero there)."""
        B, L, d = v.shape
        onehot = F.one_hot(cat, k) * valid.unsqueeze(-1)  # [B, L, K] long
        counts = onehot.cumsum(1)
        rank = counts.gather(2, cat.unsqueeze(-1)).squeeze(-1) - 1  # position inside the subsequence
        sizes = counts[:, -1]  # [B, K]
        nonempty = sizes > 0
        row_of = nonempty.flatten().cumsum(0).view(B, k) - 1  # row index of each non-empty (b, j)
        n_rows = int(nonempty.sum())
        last = last_index_per_category(cat, valid, k)
        if n_rows == 0:
            return v.new_zeros(B, L, k, d), last >= 0
        b_idx, i_idx = valid.nonzero(as_tuple=True)
        rows = row_of[b_idx, cat[b_idx, i_idx]]
        cols = rank[b_idx, i_idx]
        packed, slot = _pack_rows(sizes[nonempty], rows, cols, v[b_idx, i_idx] * weight[b_idx, i_idx].unsqueeze(-1))
        out, _ = self.gru(packed)
        out = out.data.to(v.dtype)  # under CUDA autocast cuDNN runs the GRU in float16; index_put needs one dtype
        per_item = v.new_zeros(B, L, d).index_put((b_idx, i_idx), out[slot])
        has = last >= 0
        r = per_item.gather(1, last.clamp_min(0).view(B, L * k, 1).expand(-1, -1, d)).view(B, L, k, d)
        return r * has.unsqueeze(-1).to(r.dtype), has
