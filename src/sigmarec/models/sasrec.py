"""SASRec (Kang & McAuley, 2018): causal self-attention over the item sequence, trained on every position."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sigmarec.models.base import ModelConfig, NextItemModel
from sigmarec.models.layers.init import init_weights
from sigmarec.models.layers.losses import NextItemLoss
from sigmarec.models.layers.transformer import CausalEncoder


@dataclass
class SASRecConfig(ModelConfig):
    hidden_size: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.5
    attn_dropout: float = 0.5
    loss: NextItemLoss = "ce"  # ce (full softmax, default) | bce (one sampled negative per position) | sampled
    n_negatives: int = 100  # for loss=sampled
    init_std: float = 0.02


class SASRec(NextItemModel):
    """Item embeddings (shared between input and output) + learned positions + causal Transformer.

    The hidden state at position t scores item t+1 by a dot product with its embedding.
    """

    config_class = SASRecConfig

    def __init__(self, cfg: SASRecConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        d = cfg.hidden_size
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.encoder = CausalEncoder(d, max_len, cfg.n_layers, cfg.n_heads, cfg.dropout, cfg.attn_dropout)
        init_weights(self, cfg.init_std)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.item(inputs) * self.cfg.hidden_size**0.5, inputs)
