"""Next-item losses over the positions that have a target (shared by all sequence models)."""

from __future__ import annotations

import typing
from typing import Literal

import torch
import torch.nn.functional as F

from sigmarec.models.layers.chunked_ce import chunked_cross_entropy

NextItemLoss = Literal["ce", "ce_chunked", "bce", "sampled"]  # the next-item losses every model offers
CE_CHUNK = 8192  # items per chunk of ce_chunked: [M, 8192] float32 logits at a time
LOSSES: tuple[str, ...] = typing.get_args(NextItemLoss)


def next_item_loss(hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor, kind: str = "ce", n_negatives: int = 100,
                   temperature: float = 1.0) -> torch.Tensor:
    """Mean loss over rows of ``hidden`` [M, d] with ``targets`` [M] (all > 0); ``items`` [N + 1, d].

    - ``ce``: full softmax cross-entropy over all items (padding excluded).
    - ``ce_chunked``: the same loss and gradients computed over chunks of ``CE_CHUNK`` items, never holding the
      ``[M, N]`` logits (``layers/chunked_ce.py``): for catalogs of 10^5-10^6 items.
    - ``bce``: binary cross-entropy, target vs one uniformly sampled negative per position
      (the loss of the original SASRec and of the papers' baselines).
    - ``sampled``: softmax over the target and ``n_negatives`` uniform negatives shared by the batch;
      a negative that equals the row's target is masked out.
    """
    n_items = items.shape[0] - 1
    if temperature != 1.0:
        hidden = hidden / temperature  # scale the small [M, d] side, not the [M, N] logits
    if kind == "ce":
        # padding is left out by scoring rows 1..N only (no in-place -inf, which autograd would copy)
        return F.cross_entropy((hidden @ items[1:].T).float(), targets - 1)
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
    raise ValueError(f"unknown loss {kind!r}; expected one of {LOSSES}")


def bpr_loss(hidden: torch.Tensor, targets: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """BPR (Rendle et al.): mean ``-log sigmoid(s_target - s_neg)``, one uniform negative != target per row."""
    n_items = items.shape[0] - 1
    neg = torch.randint(1, n_items + 1, targets.shape, device=targets.device)
    neg = torch.where(neg == targets, neg % n_items + 1, neg)
    diff = (hidden * (items[targets] - items[neg])).sum(-1)
    return F.softplus(-diff.float()).mean()
