"""The one interface every model implements; trainer, evaluator and server use nothing else."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
from torch import nn

from sigmarec.config import check, check_options
from sigmarec.data.batching import Batch
from sigmarec.models.layers.losses import next_item_loss


# Training defaults of the models that learn from one random split point per window and step (SINE, DSS, MIND,
# ComiRec): an epoch gives each window one target instead of every position, so validation NDCG creeps up for
# hundreds of epochs and the library's 200 epochs / patience 10 stop them on an early plateau (Office R@40 under
# those defaults: MIND .0373, ComiRec-SA .0436, ComiRec-DR .0324). With these, the BENCHMARKS.md runs reached their
# best validation NDCG@20 at epochs 82-711 on Office (3 seeds each).
SPLIT_POINT_TRAINING: dict[str, dict[str, Any]] = {"train": {"epochs": 1000, "patience": 40}}


class ModelConfig:
    """Base of every model's config dataclass: the rules for the fields models share, checked when the config
    is built (before any data is read), whichever model declares them. A model adds its own in ``__post_init__``
    (calling this one)."""

    def __post_init__(self) -> None:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        for name, value in values.items():
            if name.endswith("dropout"):
                check(f"model.{name}", 0.0 <= value < 1.0, "a probability in [0, 1)", value)
        zero_allowed = getattr(self, "zero_allowed", ())  # e.g. LightGCN's n_layers = 0 (plain MF)
        for name in ("hidden_size", "n_layers", "n_heads", "n_interests", "n_negatives"):
            if name in values:
                low = 0 if name in zero_allowed else 1
                check(f"model.{name}", values[name] >= low, f"an integer >= {low}", values[name])
        for name in ("init_std", "temperature"):
            if values.get(name) is not None:  # None: the layer's own initialisation
                check(f"model.{name}", math.isfinite(values[name]) and values[name] > 0, "a positive number", values[name])
        if "n_heads" in values and "hidden_size" in values:
            check("model.hidden_size", values["hidden_size"] % values["n_heads"] == 0,
                  f"a multiple of model.n_heads ({values['n_heads']})", values["hidden_size"])


def loss_parts(out: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model's ``loss()`` result as a dict whose ``loss`` key is the scalar to minimise."""
    return out if isinstance(out, dict) else {"loss": out}


class SequentialRecommender(nn.Module):
    """A model = a loss from a batch + user representations that score all items.

    ``user_representation`` returns one vector per user ``[B, d]`` or K interest vectors
    ``[B, K, d]``; ``item_embeddings`` returns ``[N + 1, d]`` (row 0 = padding). Scores are dot
    products, max over interests for K vectors. Models with another scoring rule override
    ``score_all``.
    """

    config_class: ClassVar[type]
    # Extra inputs the model needs besides item ids, passed by keyword to ``user_representation`` and
    # ``score_all`` by the evaluator and the server: ``session_starts`` (bool [B, L], True where a
    # session opens; the first real position is always True) and ``users`` (int64 [B] internal user
    # ids, -1 for a user the training data does not know) and ``new_session`` (bool [B], True where the
    # item to score opens a new session after the inputs rather than continuing the newest one).
    # Most models need none.
    context: ClassVar[frozenset[str]] = frozenset()
    # Training settings this model needs to converge, as config sections (e.g. ``{"train": {"epochs": 1000}}``):
    # a layer of the resolver above the code defaults and below data set, preset, file and --set.
    train_defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, cfg: Any, n_items: int, max_len: int) -> None:
        super().__init__()
        if dataclasses.is_dataclass(cfg):
            check_options(cfg, "model")  # the Literal fields' options, for configs built in code
        self.cfg = cfg
        self.n_items = n_items
        self.max_len = max_len

    @classmethod
    def from_data(cls, cfg: Any, data: Any, max_len: int, split: Any = None) -> "SequentialRecommender":
        """Build the model for a data set (``SequenceData``) and its ``Split``; models that need more than the
        number of items (user features, the training interactions' graph) override this."""
        return cls(cfg, data.n_items, max_len)

    def loss(self, batch: Batch) -> torch.Tensor | dict[str, torch.Tensor]:
        """Training loss of one batch (a scalar, or a dict with key ``loss`` plus parts to log)."""
        raise NotImplementedError

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The loss dict of one batch (``loss`` plus parts to log). The trainer calls the module, so a wrapper
        (``DistributedDataParallel``, ``torch.compile``) sees the training computation."""
        return loss_parts(self.loss(batch))

    def on_train_step(self) -> None:
        """Called by the trainer after each optimizer step: per-step schedules (e.g. SIGMA's KL annealing)
        advance here, never inside the loss, so evaluating a loss changes no state."""

    def user_representation(self, inputs: torch.Tensor, **context: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` or ``[B, K, d]`` from left-padded item ids ``[B, L]`` (last column = newest item)
        and the extra inputs named in ``context``."""
        raise NotImplementedError

    def item_embeddings(self) -> torch.Tensor:
        raise NotImplementedError

    def score_all(self, inputs: torch.Tensor, **context: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, N + 1]`` of every item for each input sequence."""
        rep = self.user_representation(inputs, **context)
        items = self.item_embeddings()
        if rep.dim() == 3:
            return torch.einsum("bkd,nd->bkn", rep, items).amax(dim=1)
        return rep @ items.T

    def on_epoch_start(self, epoch: int) -> None:
        """Hook for schedules that depend on the epoch (e.g. warm-up); default does nothing."""


class NextItemModel(SequentialRecommender):
    """A model whose hidden state at position t scores item t+1 against the item table ``self.item``.

    Subclasses implement ``encode(inputs) -> [B, L, d]``; the config provides ``loss`` and
    ``n_negatives`` (see ``layers/losses.py``). The user representation is the newest position.
    """

    item: nn.Embedding

    def encode(self, inputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, batch: Batch) -> torch.Tensor:
        h = self.encode(batch.inputs)
        mask = batch.targets > 0
        return next_item_loss(h[mask], batch.targets[mask], self.item.weight, self.cfg.loss, self.cfg.n_negatives)

    def user_representation(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.encode(inputs)[:, -1]

    def item_embeddings(self) -> torch.Tensor:
        return self.item.weight
