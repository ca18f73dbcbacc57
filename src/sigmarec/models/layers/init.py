"""Weight initialisation shared by the models (SASRec's scheme)."""

from __future__ import annotations

from torch import nn


def init_weights(module: nn.Module, std: float) -> None:
    """Truncated-normal init for embeddings and linear layers, zero biases, unit LayerNorm."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.trunc_normal_(m.weight, std=std, a=-2 * std, b=2 * std)
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
