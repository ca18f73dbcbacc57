"""Most-popular baseline: every user gets the same ranking, by training popularity.

``scores=count`` (default): an item's score is ``log(1 + n_i)``, ``n_i`` the number of times it is a training
target (``Split.train_targets``, never a validation or test target): the log-frequencies the learned scores
converge to, and RecBole's Pop up to the first item of each sequence. The ranking is fixed when
the model is built; training only fits a positive temperature on the log counts (the full softmax's
calibration), which moves no item past another, so every seed and epoch rank alike.

``scores=learned`` (the behaviour before issue 16): a one-dimensional item table trained by the usual
next-item loss from zero; with ``loss=ce`` it drifts towards the log-frequencies of the training targets but
peaks on validation after one or two epochs at a seed-dependent ranking (Office R@40 .0202-.0245).
No sequence information is used in either mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from sigmarec.config import check
from sigmarec.models.base import ModelConfig, NextItemModel
from sigmarec.models.layers.losses import NextItemLoss


@dataclass
class PopConfig(ModelConfig):
    scores: Literal["count", "learned"] = "count"  # count = log(1 + training-target count), a fixed ranking |
    # learned = a score per item trained by the next-item loss (seed-dependent, peaks at epoch 1-2). Office valid
    # R@40 of counted scores: .0332 (targets), .0290 (training users or all occurrences)
    recent: int = 0  # count only each user's newest `recent` training targets (0 = all). Recent popularity is a
    # different, stronger baseline on time-ordered logs (Office valid R@40 .0834 with recent=1), not Table 1's row
    loss: NextItemLoss = "ce"  # ce: learned scores converge to log training frequencies | bce | sampled
    n_negatives: int = 100  # for loss=sampled

    def __post_init__(self) -> None:
        super().__post_init__()
        check("model.recent", self.recent >= 0, "an integer >= 0 (0 = every training target)", self.recent)


class Pop(NextItemModel):
    """One score per item; the user representation is the constant 1 (``scores=learned``) or the learned
    temperature (``scores=count``)."""

    config_class = PopConfig
    train_defaults = {"train": {"epochs": 20, "patience": 2}}  # a fixed ranking: nothing to wait for

    def __init__(self, cfg: PopConfig, n_items: int, max_len: int, counts: np.ndarray | None = None) -> None:
        super().__init__(cfg, n_items, max_len)
        self.item = nn.Embedding(n_items + 1, 1)
        nn.init.zeros_(self.item.weight)
        if cfg.scores == "count":
            self.item.weight.requires_grad_(False)  # a buffer in effect, saved with the checkpoint
            if counts is not None:
                with torch.no_grad():
                    self.item.weight[:, 0] = torch.log1p(torch.as_tensor(counts, dtype=torch.float32))
            self.log_temperature = nn.Parameter(torch.zeros(()))

    @classmethod
    def from_data(cls, cfg: PopConfig, data, max_len: int, split=None) -> "Pop":
        counts = None
        if cfg.scores == "count":
            if split is None:
                raise ValueError("Pop with model.scores=count counts the training interactions: pass the split to from_data")
            counts = np.bincount(split.train_targets(cfg.recent), minlength=data.n_items + 1)
            counts[0] = 0
        return cls(cfg, data.n_items, max_len, counts=counts)

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        one = torch.ones(*inputs.shape, 1, device=inputs.device, dtype=self.item.weight.dtype)
        return one * self.log_temperature.exp() if self.cfg.scores == "count" else one
