"""DT4SR (Fan et al., CIKM 2021): items and sequences as elliptical Gaussians, ranked by Wasserstein distance.

Every item has a mean embedding and a covariance embedding (diagonal, made positive by ``elu(x) + 1``), and so does
every position (Section 4.1). Two causal Transformers read the sequence's mean embeddings and its covariance
embeddings (Section 4.2; the covariance stream's input and output pass through ``elu + 1``), giving at position t
a Gaussian ``N(mu_t, diag(sigma_t))``. The score of item i is the negative squared 2-Wasserstein distance
(Section 4.3): ``-W2^2 = -(||mu_t - mu_i||^2 + ||sqrt(sigma_t) - sqrt(sigma_i)||^2)``.

That distance is an exact dot product of augmented vectors, ``[2 mu_t, 2 s_t, -1, -(|mu_t|^2 + |s_t|^2)] .
[mu_i, s_i, |mu_i|^2 + |s_i|^2, 1]`` with ``s = sqrt(sigma)``, so the evaluator, export and inner-product retrieval
rank by it unchanged and every library loss applies to the true distance (``loss=ce``: a softmax over ``-W2^2``,
the library default; ``bce``: the paper's pairwise form with one sampled negative per position).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sigmarec.models.base import ModelConfig, SequentialRecommender
from sigmarec.models.layers.init import init_weights
from sigmarec.models.layers.losses import NextItemLoss, next_item_loss
from sigmarec.models.layers.transformer import CausalEncoder


@dataclass
class DT4SRConfig(ModelConfig):
    hidden_size: int = 64  # d of the mean and of the covariance embeddings (paper: 64)
    n_layers: int = 2  # per stream (paper: SASRec's 2)
    n_heads: int = 2
    dropout: float = 0.5  # the library's SASRec dropout (paper: tuned per data set, 0.1-0.7)
    attn_dropout: float = 0.5
    loss: NextItemLoss = "ce"  # ce = softmax over -W2^2 of all items (library default) | bce = the paper's, one sampled
    # negative per position | sampled
    n_negatives: int = 100  # for loss=sampled
    init_std: float = 0.02


def positive(x: torch.Tensor) -> torch.Tensor:
    """``elu(x) + 1``: the covariance diagonals' positive map (Section 4.1)."""
    return F.elu(x) + 1.0


class DT4SR(SequentialRecommender):
    """See the module docstring. ``user_representation`` and ``item_embeddings`` are the augmented vectors."""

    config_class = DT4SRConfig

    def __init__(self, cfg: DT4SRConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        d = cfg.hidden_size
        self.item_mean = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.item_cov = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.mean_stream = CausalEncoder(d, max_len, cfg.n_layers, cfg.n_heads, cfg.dropout, cfg.attn_dropout)
        self.cov_stream = CausalEncoder(d, max_len, cfg.n_layers, cfg.n_heads, cfg.dropout, cfg.attn_dropout)
        init_weights(self, cfg.init_std)
        with torch.no_grad():
            self.item_mean.weight[0].zero_()
            self.item_cov.weight[0].zero_()

    def distributions(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``[B, L, d]`` and covariance diagonal ``[B, L, d]`` (positive) at every position."""
        scale = self.cfg.hidden_size**0.5
        mean = self.mean_stream(self.item_mean(inputs) * scale, inputs)
        cov = positive(self.cov_stream(positive(self.item_cov(inputs) * scale), inputs))
        return mean, cov

    @staticmethod
    def _user_vectors(mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        s = cov.sqrt()
        norm = mean.pow(2).sum(-1, keepdim=True) + s.pow(2).sum(-1, keepdim=True)
        return torch.cat([2 * mean, 2 * s, -torch.ones_like(norm), -norm], dim=-1)

    def loss(self, batch) -> torch.Tensor:
        mean, cov = self.distributions(batch.inputs)
        mask = batch.targets > 0
        users = self._user_vectors(mean[mask], cov[mask])
        return next_item_loss(users, batch.targets[mask], self.item_embeddings(), self.cfg.loss, self.cfg.n_negatives)

    def user_representation(self, inputs: torch.Tensor) -> torch.Tensor:
        mean, cov = self.distributions(inputs)
        return self._user_vectors(mean[:, -1], cov[:, -1])

    def item_embeddings(self) -> torch.Tensor:
        """``[N + 1, 2d + 2]``: ``[mu_i, s_i, |mu_i|^2 + |s_i|^2, 1]``."""
        mean, s = self.item_mean.weight, positive(self.item_cov.weight).sqrt()
        norm = mean.pow(2).sum(-1, keepdim=True) + s.pow(2).sum(-1, keepdim=True)
        return torch.cat([mean, s, norm, torch.ones_like(norm)], dim=-1)

    def wasserstein(self, inputs: torch.Tensor) -> torch.Tensor:
        """``W2^2`` ``[B, N + 1]`` between each sequence's newest Gaussian and every item's (for tests and analysis)."""
        mean, cov = self.distributions(inputs)
        mu_u, s_u = mean[:, -1], cov[:, -1].sqrt()
        mu_i, s_i = self.item_mean.weight, positive(self.item_cov.weight).sqrt()
        return torch.cdist(mu_u, mu_i).pow(2) + torch.cdist(s_u, s_i).pow(2)
