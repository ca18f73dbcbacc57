"""BPR-MF (Rendle et al., UAI 2009): matrix factorisation trained by Bayesian personalised ranking.

A user is a learned vector ``p_u``, an item a vector ``q_i``; the score is ``p_u . q_i`` (Eq. 3 with MF as the
model). Training pairs are every (user, item) of the training windows (the inputs and the newest target of each
window; the sequence order is ignored); the loss (Eq. 4, "BPR-Opt") is ``-log sigmoid(p_u.q_i - p_u.q_j)`` with one
uniform negative j per pair (``loss=bpr``, the paper's), or the library's full softmax over all items (``loss=ce``).
L2 regularisation is ``train.weight_decay``. A user the training data does not know (id -1, e.g. a new history
sent to the server, or the user-split protocol's held-out users) is folded in as the mean of its history's item
vectors, the usual cold-start fallback for MF.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from sigmarec.data.batching import Batch
from sigmarec.models.base import ModelConfig, SequentialRecommender
from sigmarec.models.layers.losses import NextItemLoss, bpr_loss, next_item_loss

# one (user, item) pair is one BPR example, seen once an epoch with one negative: the MF papers train for hundreds
# of epochs (LightGCN's code: up to 1000), so the library's 200 epochs / patience 10 would stop on an early plateau
PAIRWISE_TRAINING = {"train": {"epochs": 1000, "patience": 40}}


@dataclass
class BPRMFConfig(ModelConfig):
    hidden_size: int = 64  # factors (LightGCN's comparison: 64)
    loss: Literal["bpr", NextItemLoss] = "bpr"  # bpr: the paper's pairwise loss, one uniform negative |
    # ce: full softmax over all items | bce | sampled
    n_negatives: int = 100  # for loss=sampled
    init_std: float = 0.1  # normal init of both tables (LightGCN's code uses std 0.1)


def window_pairs(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, item) of every item of the batch's windows: all real inputs and each row's newest target."""
    seq = torch.cat([batch.inputs, batch.targets[:, -1:]], dim=1)
    rows, cols = (seq > 0).nonzero(as_tuple=True)
    return rows, seq[rows, cols]


def user_vectors(table: torch.Tensor, item_vectors: torch.Tensor, inputs: torch.Tensor,
                 users: torch.Tensor | None) -> torch.Tensor:
    """``[B, d]``: each known user's row of ``table``; an unknown one (id -1, outside the table, or no ids at all)
    folded in as the mean of its real input items' vectors (zero for an empty row)."""
    real = (inputs > 0).unsqueeze(-1).to(item_vectors.dtype)
    folded = (item_vectors[inputs] * real).sum(1) / real.sum(1).clamp_min(1.0)
    if users is None or table.shape[0] == 0:
        return folded
    known = (users >= 0) & (users < table.shape[0])
    return torch.where(known.unsqueeze(-1), table[users.clamp(0, table.shape[0] - 1)], folded)


def pair_loss(users: torch.Tensor, items: torch.Tensor, table: torch.Tensor, kind: str, n_negatives: int) -> torch.Tensor:
    """BPR over (user vector, positive item) rows with uniform negatives, or a next-item loss of the library."""
    if kind == "bpr":
        return bpr_loss(users, items, table)
    return next_item_loss(users, items, table, kind, n_negatives)


class BPRMF(SequentialRecommender):
    """See the module docstring. Context input: ``users`` (internal ids, -1 = unknown)."""

    config_class = BPRMFConfig
    context = frozenset({"users"})
    train_defaults = PAIRWISE_TRAINING

    def __init__(self, cfg: BPRMFConfig, n_items: int, max_len: int, n_users: int = 0) -> None:
        super().__init__(cfg, n_items, max_len)
        self.n_users = n_users
        self.user = nn.Embedding(n_users, cfg.hidden_size)
        self.item = nn.Embedding(n_items + 1, cfg.hidden_size, padding_idx=0)
        nn.init.normal_(self.user.weight, std=cfg.init_std)
        nn.init.normal_(self.item.weight, std=cfg.init_std)
        with torch.no_grad():
            self.item.weight[0].zero_()

    @classmethod
    def from_data(cls, cfg: BPRMFConfig, data, max_len: int, split=None) -> "BPRMF":
        return cls(cfg, data.n_items, max_len, n_users=data.n_users)

    def loss(self, batch: Batch) -> torch.Tensor:
        rows, items = window_pairs(batch)
        users = user_vectors(self.user.weight, self.item.weight, batch.inputs, batch.users)
        return pair_loss(users[rows], items, self.item.weight, self.cfg.loss, self.cfg.n_negatives)

    def user_representation(self, inputs: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        return user_vectors(self.user.weight, self.item.weight, inputs, users)

    def item_embeddings(self) -> torch.Tensor:
        return self.item.weight
