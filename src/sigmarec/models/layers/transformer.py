"""Causal Transformer encoder over left-padded sequences (shared by SASRec and the VAE models)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sigmarec.models.layers.dropout import FastDropout


def causal_padding_mask(inputs: torch.Tensor) -> torch.Tensor:
    """Boolean attention mask ``[B, 1, L, L]``: position i sees real items j <= i, and always itself
    (so rows of padding never attend to nothing and produce NaN)."""
    L = inputs.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=inputs.device).tril()
    valid = (inputs != 0)[:, None, None, :]
    eye = torch.eye(L, dtype=torch.bool, device=inputs.device)
    return (causal & valid) | eye


class TransformerBlock(nn.Module):
    """Pre-LayerNorm self-attention + position-wise feed-forward, both with residuals."""

    def __init__(self, d: int, heads: int, dropout: float, attn_dropout: float, ff_mult: int = 4, activation: str = "gelu"):
        super().__init__()
        if d % heads:
            raise ValueError(f"hidden size {d} must be divisible by the number of heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(
            nn.Linear(d, ff_mult * d), nn.GELU() if activation == "gelu" else nn.ReLU(), FastDropout(dropout), nn.Linear(ff_mult * d, d)
        )
        self.drop = FastDropout(dropout)
        self.attn_dropout = attn_dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, L, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.attn_dropout if self.training else 0.0)
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(B, L, d)))
        return x + self.drop(self.ff(self.norm2(x)))


def padding_mask(inputs: torch.Tensor) -> torch.Tensor:
    """Bidirectional attention mask ``[B, 1, L, L]``: every position sees every real item (and itself)."""
    L = inputs.shape[1]
    eye = torch.eye(L, dtype=torch.bool, device=inputs.device)
    return (inputs != 0)[:, None, None, :] | eye


class CausalEncoder(nn.Module):
    """Item embeddings (given) + learned positions -> ``n_layers`` causal blocks -> LayerNorm.

    Positions count back from the newest item (the last column uses row ``max_len - 1``), which is
    the SASRec layout and keeps outputs independent of how much left padding a batch carries.
    ``causal=False`` lets every position attend to the whole sequence (BERT4Rec).
    """

    def __init__(self, d: int, max_len: int, n_layers: int, heads: int, dropout: float, attn_dropout: float, activation: str = "gelu",
                 input_dropout: float | None = None, causal: bool = True):
        super().__init__()
        self.pos = nn.Embedding(max_len, d)
        self.blocks = nn.ModuleList(TransformerBlock(d, heads, dropout, attn_dropout, activation=activation) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d)
        self.drop = FastDropout(dropout if input_dropout is None else input_dropout)
        self.max_len = max_len
        self.causal = causal

    def forward(self, x: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        L = inputs.shape[1]
        if L > self.max_len:
            raise ValueError(f"sequence length {L} exceeds max_len {self.max_len}")
        x = self.drop(x + self.pos.weight[self.max_len - L :])
        pad = (inputs == 0).unsqueeze(-1)
        x = x.masked_fill(pad, 0.0)
        mask = causal_padding_mask(inputs) if self.causal else padding_mask(inputs)
        for block in self.blocks:
            x = block(x, mask).masked_fill(pad, 0.0)
        return self.norm(x)
