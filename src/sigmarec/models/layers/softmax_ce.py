"""Full-softmax cross-entropy ``F.cross_entropy(hidden @ items.T, targets)`` as one autograd node.

The loss every ``ce`` model trains with spends most of an epoch on the ``[M, N]`` logits (positions x items).
Through ``F.cross_entropy`` that tensor is written and read by the matmul, ``log_softmax``, a zero-filled
``nll_loss`` gradient, its scatter and ``log_softmax``'s backward (which exponentiates again). Here the forward
pass keeps the softmax probabilities (one ``[M, N]`` tensor, as ``log_softmax`` keeps its output) and the
backward pass feeds them straight to the two gradient matmuls; the target's ``-1`` enters as a ``[M, d]``
correction (``- items[targets]``, and ``- hidden`` added onto the targets' rows), so the big tensor is never
touched again. Same value and gradients up to float32 rounding (``tests/test_chunked_ce.py``); faster in
``benchmarks/ce_speed.py``. Single backward only (no double backward, which no model here needs).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

TINY = 1e-30  # a target probability below this (loss > 69 nats) is recomputed from its logsumexp, never log(0)


class _SoftmaxCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        acc = torch.promote_types(hidden.dtype, torch.float32)  # float32 (also under autocast), float64 stays
        logits = hidden @ items.T
        ctx.mm_dtype = logits.dtype  # bfloat16 under CUDA autocast: the backward matmuls use it too
        logits = logits.to(acc)
        probs = torch.softmax(logits, dim=1)
        p_target = probs.gather(1, targets[:, None]).squeeze(1)
        row_loss = -torch.log(p_target)
        low = p_target < TINY
        if bool(low.any()):  # underflowed target probability: its exact loss is logsumexp - target logit
            rows = low.nonzero().squeeze(1)
            row_loss[rows] = torch.logsumexp(logits[rows], dim=1) - logits[rows, targets[rows]]
        ctx.save_for_backward(hidden, items, targets, probs)
        return row_loss.mean()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        hidden, items, targets, probs = ctx.saved_tensors
        scale = grad_out / hidden.shape[0]
        p, h, it = probs.to(ctx.mm_dtype), hidden.to(ctx.mm_dtype), items.to(ctx.mm_dtype)
        grad_h = grad_i = None
        if ctx.needs_input_grad[0]:  # (softmax - onehot) @ items
            grad_h = (((p @ it) - it[targets]) * scale).to(hidden.dtype)
        if ctx.needs_input_grad[1]:  # (softmax - onehot).T @ hidden
            grad_i = ((p.T @ h).index_add_(0, targets, h, alpha=-1) * scale).to(items.dtype)
        return grad_h, grad_i, None


def softmax_cross_entropy(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean ``-log softmax(hidden @ items.T)[row, targets[row]]``; ``hidden`` [M, d], ``items`` [N, d], ``targets``
    [M] in ``0..N-1``. Equal to ``F.cross_entropy(hidden @ items.T, targets)``, with less memory traffic."""
    if hidden.shape[0] == 0:  # F.cross_entropy's mean over no rows (nan), kept differentiable
        return (hidden @ items.T).sum() * float("nan")
    return _SoftmaxCrossEntropy.apply(hidden, items, targets)
