"""Small building blocks of the variational session models: a linear layer on one-hot ids, a two-layer MLP."""

from __future__ import annotations

import torch
from torch import nn


class OneHotLinear(nn.Module):
    """A linear layer on one-hot user ids: one row per user plus a bias; index ``n`` (unknown user) is
    the all-zero one-hot vector, whose row is fixed at 0, so it maps to the bias alone."""

    def __init__(self, n: int, out: int) -> None:
        super().__init__()
        self.weight = nn.Embedding(n + 1, out, padding_idx=n)
        self.bias = nn.Parameter(torch.zeros(out))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.weight(idx) + self.bias


def mlp2(n_in: int, n_hidden: int, n_out: int, first: nn.Module | None = None) -> nn.Sequential:
    """Two-layer MLP with tanh (HNVM, Eq. 12); ``first`` replaces the first linear layer (one-hot input)."""
    return nn.Sequential(first if first is not None else nn.Linear(n_in, n_hidden), nn.Tanh(), nn.Linear(n_hidden, n_out))
