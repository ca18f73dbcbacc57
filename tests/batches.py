"""Hand-built model inputs for the model tests: left-padded sequences and training batches."""

import torch

from sigmarec.data.batching import Batch


def left_padded(seqs: list[list[int]], width: int) -> torch.Tensor:
    """Item-id lists as a left-padded ``[len(seqs), width]`` tensor (0 = padding)."""
    out = torch.zeros(len(seqs), width, dtype=torch.long)
    for r, s in enumerate(seqs):
        if len(s):
            out[r, width - len(s):] = torch.as_tensor(s)
    return out


def make_batch(seqs: list[list[int]], width: int) -> Batch:
    """Windows -> inputs ``w[:-1]`` and next-item targets ``w[1:]`` (0 where there is none), as the
    training batcher builds them."""
    w = left_padded(seqs, width + 1)
    inputs, targets = w[:, :-1].clone(), w[:, 1:].clone()
    targets[inputs == 0] = 0
    return Batch(inputs, targets, torch.arange(len(seqs)))


def fit(model: torch.nn.Module, batch: Batch, steps: int, opt: torch.optim.Optimizer) -> None:
    """``steps`` optimiser steps on one batch's training loss, as the trainer takes them (``model(batch)``,
    then the model's ``on_train_step`` hook)."""
    for _ in range(steps):
        loss = model(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.on_train_step()
