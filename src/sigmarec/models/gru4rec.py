"""GRU4Rec (Hidasi et al., 2016) in its next-item form: a GRU over the item sequence, trained on every position."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from sigmarec.models.base import ModelConfig, NextItemModel
from sigmarec.models.layers.dropout import FastDropout
from sigmarec.models.layers.init import init_weights
from sigmarec.models.layers.losses import NextItemLoss


@dataclass
class GRU4RecConfig(ModelConfig):
    hidden_size: int = 64  # item embedding / output size
    gru_size: int = 128
    n_layers: int = 1
    dropout: float = 0.3
    loss: NextItemLoss = "ce"  # ce | bce | sampled
    n_negatives: int = 100
    init_std: float | None = None  # None: PyTorch defaults (N(0, 1) embeddings); 0.02-style inits stall the GRU


def roll_rows(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Roll each row of ``x`` [B, L, ...] left by ``shift[b]`` positions (batched gather)."""
    L = x.shape[1]
    idx = (torch.arange(L, device=x.device)[None, :] + shift[:, None]) % L
    if x.dim() == 3:
        idx = idx.unsqueeze(-1).expand(-1, -1, x.shape[2])
    return torch.gather(x, 1, idx)


class GRU4Rec(NextItemModel):
    """Embedding -> dropout -> GRU -> linear to item space; scores are dot products with item embeddings.

    Batches are left-padded; the GRU runs on packed right-aligned sequences so padding never enters
    its state.
    """

    config_class = GRU4RecConfig

    def __init__(self, cfg: GRU4RecConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        self.item = nn.Embedding(n_items + 1, cfg.hidden_size, padding_idx=0)
        self.drop = FastDropout(cfg.dropout)
        self.gru = nn.GRU(cfg.hidden_size, cfg.gru_size, cfg.n_layers, batch_first=True, dropout=cfg.dropout if cfg.n_layers > 1 else 0.0)
        self.out = nn.Linear(cfg.gru_size, cfg.hidden_size)
        if cfg.init_std is not None:
            init_weights(self.item, cfg.init_std)
            init_weights(self.out, cfg.init_std)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        L = inputs.shape[1]
        lengths = (inputs != 0).sum(1).clamp(min=1)
        pad = L - lengths
        x = roll_rows(self.drop(self.item(inputs)), pad)  # right-align... i.e. items first, padding last
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=L)
        out = roll_rows(out, -pad)  # back to left padding
        return self.out(self.drop(out))
