"""LightGCN (He et al., SIGIR 2020): user and item embeddings smoothed over the user-item graph.

The graph is the training interactions (``Split.train_interactions``: never a validation or test target) as a
bipartite adjacency ``A`` over users and items, normalised ``A_hat = D^-1/2 A D^-1/2`` (Eq. 7-8). Propagation
``E^(k+1) = A_hat E^(k)`` is one sparse-dense product per layer (no dense [nodes x nodes] matrix), and the final
embedding is the mean over layers 0..K (Eq. 8, alpha_k = 1 / (K + 1)). Scores are dot products of the final
vectors (Eq. 9); loss BPR with one uniform negative per training pair (Eq. 10), or the library's losses. L2
regularisation is ``train.weight_decay``. The graph is rebuilt from the data and split whenever the run is loaded,
so it is not stored in checkpoints; a user the graph does not hold is folded in as the mean of its history's
final item vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from sigmarec.data.batching import Batch
from sigmarec.models.base import ModelConfig, SequentialRecommender
from sigmarec.models.bprmf import PAIRWISE_TRAINING, pair_loss, user_vectors, window_pairs
from sigmarec.models.layers.losses import NextItemLoss


@dataclass
class LightGCNConfig(ModelConfig):
    hidden_size: int = 64  # paper: 64
    n_layers: int = 3  # K propagation layers (paper: 3 in the main results)
    loss: Literal["bpr", NextItemLoss] = "bpr"  # bpr: the paper's | ce: full softmax | bce | sampled
    n_negatives: int = 100  # for loss=sampled
    init_std: float = 0.1  # normal init of the layer-0 embeddings (the authors' code: std 0.1)
    zero_allowed = ("n_layers",)  # 0 layers = matrix factorisation (a class attribute, not a setting)


def normalised_adjacency(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` as a sparse COO tensor over ``n_users + n_items + 1`` nodes (users first, then items
    0..N; item 0, the padding, and users without training items are isolated)."""
    n = n_users + n_items + 1
    rows = np.concatenate([users, n_users + items])
    cols = np.concatenate([n_users + items, users])
    degree = np.bincount(rows, minlength=n).astype(np.float64)
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1.0)), 0.0)
    values = inv_sqrt[rows] * inv_sqrt[cols]
    index = torch.from_numpy(np.stack([rows, cols]).astype(np.int64))
    return torch.sparse_coo_tensor(index, torch.from_numpy(values).float(), (n, n), check_invariants=True).coalesce()


class LightGCN(SequentialRecommender):
    """See the module docstring. Context input: ``users`` (internal ids, -1 = unknown)."""

    config_class = LightGCNConfig
    context = frozenset({"users"})
    train_defaults = PAIRWISE_TRAINING

    def __init__(self, cfg: LightGCNConfig, n_items: int, max_len: int, n_users: int = 0,
                 interactions: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        super().__init__(cfg, n_items, max_len)
        self.n_users = n_users
        self.embedding = nn.Embedding(n_users + n_items + 1, cfg.hidden_size)  # users, then items 0..N
        nn.init.normal_(self.embedding.weight, std=cfg.init_std)
        users, items = interactions if interactions is not None else (np.zeros(0, np.int64), np.zeros(0, np.int64))
        # not persistent: rebuilt from the data and split on load (and safetensors stores no sparse tensors)
        self.register_buffer("adjacency", normalised_adjacency(users, items, n_users, n_items), persistent=False)

    @classmethod
    def from_data(cls, cfg: LightGCNConfig, data, max_len: int, split=None) -> "LightGCN":
        if split is None:
            raise ValueError("LightGCN is built from the training interactions: pass the split to from_data")
        return cls(cfg, data.n_items, max_len, n_users=data.n_users, interactions=split.train_interactions())

    def propagate(self) -> torch.Tensor:
        """Final embeddings ``[users + items, d]``: the mean of ``A_hat^k E`` over k = 0..K (Eq. 8)."""
        e = self.embedding.weight
        total = e
        for _ in range(self.cfg.n_layers):
            e = torch.sparse.mm(self.adjacency, e)
            total = total + e
        return total / (self.cfg.n_layers + 1)

    def loss(self, batch: Batch) -> torch.Tensor:
        final = self.propagate()
        rows, items = window_pairs(batch)
        users = user_vectors(final[: self.n_users], final[self.n_users:], batch.inputs, batch.users)
        return pair_loss(users[rows], items, final[self.n_users:], self.cfg.loss, self.cfg.n_negatives)

    def user_representation(self, inputs: torch.Tensor, users: torch.Tensor | None = None) -> torch.Tensor:
        final = self.propagate()
        return user_vectors(final[: self.n_users], final[self.n_users:], inputs, users)

    def item_embeddings(self) -> torch.Tensor:
        return self.propagate()[self.n_users:]
