"""Dropout whose mask costs a quarter of one random draw per element.

Same semantics as ``nn.Dropout`` (inverted scaling, identity in eval mode). On CPU the random
numbers dominate dropout's cost: ``bernoulli_`` took about half of a SASRec training step, and a
float ``rand_like`` (one 32-bit draw per element) still about 4 ms per 2M elements. Here one full-range
64-bit draw is split into four uniform 16-bit integers, one per element, so the mask takes about a
quarter of the generator's work; the drop probability is rounded to a multiple of 1/65536.
"""

from __future__ import annotations

import torch
from torch import nn

_LEVELS = 1 << 16


def dropout_keep_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """Bool tensor shaped like ``x``, each entry false with probability ``round(p * 65536) / 65536``, independently."""
    n, threshold = x.numel(), round(p * _LEVELS) - _LEVELS // 2
    if threshold >= _LEVELS // 2:  # p rounds to 1 (and 32768 would wrap around in an int16 comparison)
        return torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    bits = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device).random_(-(1 << 63), None)
    u = bits.view(torch.int16)[:n].view(x.shape)  # uniform on [-32768, 32767]
    return u >= threshold


class FastDropout(nn.Module):
    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        scale = dropout_keep_mask(x, self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * scale

    def extra_repr(self) -> str:
        return f"p={self.p}"
