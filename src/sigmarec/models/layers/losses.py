"""Next-item losses over the positions that have a target (shared by all sequence models)."""

from __future__ import annotations

import typing
from typing import Literal

import torch
import torch.nn.functional as F

from sigmarec.models.layers.chunked_ce import chunked_cross_entropy
from sigmarec.models.layers.softmax_ce import softmax_cross_entropy

NextItemLoss = Literal["ce", "ce_chunked", "bce", "sampled", "sampled_logq"]  # the next-item losses every model offers
CE_CHUNK = 8192  # items per chunk of ce_chunked: [M, 8192] float32 logits at a time
LOSSES: tuple[str, ...] = typing.get_args(NextItemLoss)


def next_item_loss(hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor, kind: str = "ce", n_negatives: int = 100,
                   temperature: float = 1.0) -> torch.Tensor:
    """Mean loss over rows of ``hidden`` [M, d] with ``targets`` [M] (all > 0); ``items`` [N + 1, d].

    - ``ce``: full softmax cross-entropy over all items (padding excluded), as one fused autograd node
      (``layers/softmax_ce.py``: ``F.cross_entropy``'s value and gradients with less traffic over the logits).
    - ``ce_chunked``: the same loss and gradients computed over chunks of ``CE_CHUNK`` items, never holding the
      ``[M, N]`` logits (``layers/chunked_ce.py``): for catalogs of 10^5-10^6 items.
    - ``bce``: binary cross-entropy, target vs one uniformly sampled negative per position
      (the loss of the original SASRec and of the papers' baselines).
    - ``sampled``: softmax over the target and ``n_negatives`` uniform negatives shared by the batch;
      a negative that equals the row's target is masked out.
    - ``sampled_logq``: softmax over the row's target, the batch's other targets (in-batch negatives, drawn in
      proportion to popularity) and ``n_negatives`` uniform items, every logit (the target's too) less the log of
      that item's expected count among the candidates (logQ correction: Yi et al. 2019; TensorFlow's
      ``sampled_softmax_loss``); copies of the row's own target among the negatives are masked. Memory
      ``O(M x (M + n_negatives))``, for catalogs where even ``ce_chunked`` is too slow.
    """
    n_items = items.shape[0] - 1
    if temperature != 1.0:
        hidden = hidden / temperature  # scale the small [M, d] side, not the [M, N] logits
    if kind == "ce":
        # padding is left out by scoring rows 1..N only (no in-place -inf, which autograd would copy)
        return softmax_cross_entropy(hidden, items[1:], targets - 1)
    if kind == "ce_chunked":
        return chunked_cross_entropy(hidden, items[1:], targets - 1, CE_CHUNK)
    if kind == "bce":
        neg = torch.randint(1, n_items + 1, targets.shape, device=targets.device)
        neg = torch.where(neg == targets, neg % n_items + 1, neg)
        pos_logit = (hidden * items[targets]).sum(-1)
        neg_logit = (hidden * items[neg]).sum(-1)
        return F.softplus(-pos_logit.float()).mean() + F.softplus(neg_logit.float()).mean()
    if kind == "sampled":
        neg = torch.randint(1, n_items + 1, (n_negatives,), device=targets.device)
        pos_logit = (hidden * items[targets]).sum(-1, keepdim=True)
        neg_logit = hidden @ items[neg].T
        neg_logit = neg_logit.masked_fill(neg[None, :] == targets[:, None], float("-inf"))
        logits = torch.cat([pos_logit, neg_logit], dim=1).float()
        return F.cross_entropy(logits, torch.zeros_like(targets))
    if kind == "sampled_logq":
        return sampled_logq_loss(hidden, targets, items, n_negatives)
    raise ValueError(f"unknown loss {kind!r}; expected one of {LOSSES}")


def sampled_logq_loss(hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor, n_negatives: int) -> torch.Tensor:
    """The ``sampled_logq`` loss of :func:`next_item_loss`. Candidates: the ``M`` targets of the batch (row ``r``'s
    positive is candidate ``r``) and ``U = n_negatives`` uniform draws. Item ``i``'s expected count among them is
    ``c_i + U / N`` (``c_i`` its count among the batch's targets, the in-batch estimate of ``M p_i``)."""
    n_items, m = items.shape[0] - 1, targets.shape[0]
    uniform = torch.randint(1, n_items + 1, (n_negatives,), device=targets.device)
    cand = torch.cat([targets, uniform])
    counts = torch.zeros(n_items + 1, device=targets.device).index_add_(0, targets, torch.ones(m, device=targets.device))
    log_q = torch.log(counts[cand] + n_negatives / n_items)
    logits = (hidden @ items[cand].T).float() - log_q[None, :]
    rows = torch.arange(m, device=targets.device)
    accidental = cand[None, :] == targets[:, None]
    accidental[rows, rows] = False  # the positive itself stays
    return F.cross_entropy(logits.masked_fill(accidental, float("-inf")), rows)


def bpr_loss(hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """BPR (Rendle et al.): mean ``-log sigmoid(s_target - s_neg)``, one uniform negative != target per row."""
    n_items = items.shape[0] - 1
    neg = torch.randint(1, n_items + 1, targets.shape, device=targets.device)
    neg = torch.where(neg == targets, neg % n_items + 1, neg)
    diff = (hidden * (items[targets] - items[neg])).sum(-1)
    return F.softplus(-diff.float()).mean()
