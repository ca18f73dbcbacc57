"""The linear warm-up of a loss weight by training step, shared by the VAE models (SIGMA, HNVM, ContrastVAE, SVAE)."""

from __future__ import annotations

import torch


def annealed_weight(step: torch.Tensor, cap: float, steps: int) -> torch.Tensor:
    """``min(cap, step / steps)`` (``cap`` from the start when ``steps <= 0``) on the step counter's device, so a
    training step needs no host sync; computed in float64, then float32 (the value a Python float would give)."""
    if steps <= 0:
        return torch.tensor(cap, device=step.device)
    return (step.double() / steps).clamp(max=cap).float()
