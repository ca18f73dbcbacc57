"""Most-popular baseline: every user gets the same ranking, by training popularity.

Written as a next-item model with a one-dimensional item table and a constant user vector, so it
trains through the same loop and losses as every other model and never sees validation or test
targets: with the full softmax (``loss=ce``) the item scores converge to the log-frequencies of the
training targets (plus a constant). No sequence information is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sigmarec.models.base import ModelConfig, NextItemModel
from sigmarec.models.layers.losses import NextItemLoss


@dataclass
class PopConfig(ModelConfig):
    loss: NextItemLoss = "ce"  # ce: scores converge to log training frequencies | bce | sampled
    n_negatives: int = 100  # for loss=sampled


class Pop(NextItemModel):
    """One learned score per item; the user representation is the constant 1."""

    config_class = PopConfig

    def __init__(self, cfg: PopConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        self.item = nn.Embedding(n_items + 1, 1)
        nn.init.zeros_(self.item.weight)

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.ones(*inputs.shape, 1, device=inputs.device, dtype=self.item.weight.dtype)
