"""Exact full-softmax cross-entropy computed over item chunks: the loss and gradients of
``F.cross_entropy(hidden @ items.T, targets)`` without ever holding the ``[M, N]`` logits.

The forward pass keeps a running logsumexp per row over chunks of ``chunk`` items; the backward pass recomputes
each chunk's logits and turns them into the softmax gradient with the saved logsumexp (the recomputation costs one
more ``[M, chunk]`` matmul per chunk, the price of memory ``O(M x chunk)`` instead of ``O(M x N)``). This is what
keeps exact training possible at 10^6 items (issue 20); at a few thousand items the plain ``ce`` is faster.
"""

from __future__ import annotations

import torch


class _ChunkedCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, chunk: int) -> torch.Tensor:
        acc = torch.promote_types(hidden.dtype, torch.float32)  # float32, or float64 for float64 inputs
        lse = torch.full((hidden.shape[0],), float("-inf"), device=hidden.device, dtype=acc)
        for start in range(0, items.shape[0], chunk):
            logits = (hidden @ items[start:start + chunk].T).to(acc)
            lse = torch.logaddexp(lse, torch.logsumexp(logits, dim=1))
        target_logits = (hidden * items[targets]).sum(-1).to(acc)
        ctx.save_for_backward(hidden, items, targets, lse)
        ctx.chunk = chunk
        return (lse - target_logits).mean()

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        hidden, items, targets, lse = ctx.saved_tensors
        acc = lse.dtype
        scale = grad_out.to(acc) / hidden.shape[0]
        need_h, need_i = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        h, grad_h = hidden.to(acc), torch.zeros(hidden.shape, device=hidden.device, dtype=acc) if need_h else None
        grad_i = torch.zeros(items.shape, device=items.device, dtype=acc) if need_i else None
        for start in range(0, items.shape[0], ctx.chunk):
            block = items[start:start + ctx.chunk]
            probs = torch.exp((hidden @ block.T).to(acc) - lse[:, None]) * scale  # d loss / d logits, softmax part
            if need_h:
                grad_h += probs @ block.to(acc)
            if need_i:
                grad_i[start:start + ctx.chunk] = probs.T @ h
        if need_h:  # the target logit's part: -1 / M on each row's target
            grad_h -= scale * items[targets].to(acc)
        if need_i:
            grad_i.index_add_(0, targets, -scale * h)
        return (grad_h.to(hidden.dtype) if need_h else None, grad_i.to(items.dtype) if need_i else None, None, None)


def chunked_cross_entropy(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Mean ``-log softmax(hidden @ items.T)[row, targets[row]]`` over rows; ``hidden`` [M, d], ``items`` [N, d],
    ``targets`` [M] in ``0..N-1``. Same value and gradients as ``F.cross_entropy`` (up to float32 summation
    order), memory ``O(M x chunk)``."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return _ChunkedCrossEntropy.apply(hidden, items, targets, chunk)
