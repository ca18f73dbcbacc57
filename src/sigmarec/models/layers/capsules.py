"""Multi-interest building blocks shared by MIND and ComiRec (``models/mind.py``, ``models/comirec.py``).

* ``squash``: the capsule non-linearity ``v = ||s||^2 / (1 + ||s||^2) * s / ||s||``.
* ``dynamic_routing``: behaviour-to-interest routing (MIND's B2I routing, ComiRec-DR), batched over
  users, positions and interests; only the few routing iterations are a Python loop.
* ``CapsuleLayer``: bilinear map(s) from item embeddings to prediction vectors + routing. ``maps="shared"``
  is MIND's single map ``S``; ``maps="per_position"`` is ComiRec-DR's ``W_ij`` for input position i
  (counted back from the newest item) and interest j.
* ``label_aware_attention``: MIND's training read-out ``softmax(pow(<v_k, e_target>, p))``;
  ``p = inf`` is ComiRec's argmax read-out.
* ``MultiInterestRecommender``: the model shell the three share: item table, one random prefix per
  window and step, label-aware read-out of the K interests with the target, ``next_item_loss``;
  scoring = max over interests (``SequentialRecommender.score_all``).

Padding (item id 0) gets zero coupling / attention everywhere, and every per-position table is indexed
from the newest item backwards, so extra left padding never changes a representation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from sigmarec.data.batching import Batch
from sigmarec.models.base import SPLIT_POINT_TRAINING, SequentialRecommender
from sigmarec.models.layers.dropout import FastDropout
from sigmarec.models.layers.init import init_weights
from sigmarec.models.layers.losses import next_item_loss
from sigmarec.models.layers.prefixes import random_prefixes

RoutingInit = Literal["normal", "fixed", "zeros"]  # initial routing logits (see the configs)


def squash(s: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``||s||^2 / (1 + ||s||^2) * s / ||s||`` along ``dim``, written as ``s * ||s|| / (1 + ||s||^2)``:
    exact (no epsilon), 0 at 0, and a finite gradient there (the norm's gradient at 0 is taken as 0)."""
    n = torch.linalg.vector_norm(s, dim=dim, keepdim=True)
    return s * (n / (1 + n * n))


@dataclass
class RoutingStep:
    """One routing iteration: the squashed interests ``[B, K, d]`` and the coupling ``[B, K, L]`` that made them."""

    interests: torch.Tensor
    coupling: torch.Tensor


@dataclass
class Routing:
    """Result of ``dynamic_routing``: the final interests ``[B, K, d]``, the final coupling coefficients
    ``[B, K, L]`` (softmax over interests, 0 at padding) and every iteration's step."""

    interests: torch.Tensor
    coupling: torch.Tensor
    trace: list[RoutingStep] = field(default_factory=list)


def dynamic_routing(u_hat: torch.Tensor, mask: torch.Tensor, logits: torch.Tensor, iterations: int = 3,
                    detach: bool = True) -> Routing:
    """Route L behaviour capsules to K interest capsules.

    ``u_hat`` [B, K, L, d] (or [B, 1, L, d] when one map serves all interests, as in MIND): the
    prediction vector of behaviour i for interest j. ``mask`` [B, L]: real positions. ``logits``
    [B or 1, K, L]: the initial routing logits ``b_ij``. Each iteration: ``c = softmax_j(b)`` (over
    interests; 0 at padding), ``s_j = sum_i c_ij u_hat_j|i``, ``v_j = squash(s_j)``, ``b_ij += <u_hat_j|i, v_j>``.
    With ``detach`` (MIND, ComiRec) the iterations before the last see ``u_hat`` through a
    stop-gradient, so the coupling is a constant for autograd and gradients reach ``u_hat`` only
    through the last iteration's weighted sum.
    """
    if iterations < 1:
        raise ValueError(f"routing needs at least one iteration, got {iterations}")
    B, L = mask.shape
    K = logits.shape[-2]
    keep = mask.unsqueeze(1).to(u_hat.dtype)  # [B, 1, L]
    u_iter = u_hat.detach() if detach else u_hat
    b = logits.to(u_hat.dtype).expand(B, K, L)
    trace: list[RoutingStep] = []
    for it in range(iterations):
        c = torch.softmax(b, dim=1) * keep  # [B, K, L]
        last = it == iterations - 1
        u = u_hat if last else u_iter
        v = squash((c.unsqueeze(2) @ u).squeeze(2))  # [B, K, 1, L] @ [B, K|1, L, d] -> [B, K, d]
        trace.append(RoutingStep(v, c))
        if not last:
            b = b + (u_iter @ v.unsqueeze(-1)).squeeze(-1)  # [B, K|1, L, d] @ [B, K, d, 1] -> [B, K, L]
    return Routing(v, c, trace)


def newest_aligned(table: torch.Tensor, width: int, dim: int = 0) -> torch.Tensor:
    """The last ``width`` entries of a per-position ``table`` along ``dim`` (entry max_len - 1 = newest
    item), matching the columns of a left-padded ``[B, width]`` input."""
    if width > table.shape[dim]:
        raise ValueError(f"input width {width} exceeds the {table.shape[dim]} positions of the model (max_len)")
    return table.narrow(dim, table.shape[dim] - width, width)


class CapsuleLayer(nn.Module):
    """Item embeddings ``[B, L, d]`` -> K interest capsules ``[B, K, d]`` by bilinear maps and routing.

    ``maps``: ``shared`` = MIND's one ``d x d`` map ``S`` for every behaviour and interest (no bias, as
    in the paper's Eq. 4); ``per_position`` = ComiRec-DR's ``W_ij`` per input position i and interest
    j (``[max_len, K, d, d]``; position max_len - 1 = the newest item).

    ``routing_init`` (the initial logits ``b_ij``):

    * ``normal``: training draws fresh ``N(0, routing_init_std^2)`` logits per user and step (MIND,
      which needs them to break the symmetry of its shared map), with the global torch RNG; eval uses
      one fixed draw of the same distribution, the buffer ``routing_logits`` [K, max_len] made at
      construction (saved with the checkpoint), so eval scores are reproducible.
    * ``fixed``: that buffer in training too (deterministic routing everywhere).
    * ``zeros``: ``b = 0`` in training and eval (ComiRec-DR's code; its per-interest maps already
      tell the interests apart).

    The buffer, like the per-position maps, is indexed from the newest item backwards, so left padding
    never shifts it; padding gets zero coupling whatever its logits.
    """

    def __init__(self, d: int, n_interests: int, max_len: int, maps: str = "shared", iterations: int = 3,
                 routing_init: str = "normal", routing_init_std: float = 1.0, detach: bool = True,
                 map_init_std: float = 1.0) -> None:
        super().__init__()
        if maps not in ("shared", "per_position"):
            raise ValueError(f"capsule maps must be 'shared' or 'per_position', got {maps!r}")
        if routing_init not in ("normal", "fixed", "zeros"):
            raise ValueError(f"routing_init must be 'normal', 'fixed' or 'zeros', got {routing_init!r}")
        if iterations < 1:
            raise ValueError(f"routing needs at least one iteration, got {iterations}")
        self.maps, self.iterations, self.detach = maps, iterations, detach
        self.routing_init, self.routing_init_std = routing_init, routing_init_std
        shape = (d, d) if maps == "shared" else (max_len, n_interests, d, d)
        self.weight = nn.Parameter(torch.empty(shape))
        # std 1 as in ComiRec's code: u_hat = W e is sqrt(d) times the item scale, so squashed interests
        # start near norm 1; at 1/sqrt(d) the squash (~||s||^2 for small s) shrinks them ~1000x
        nn.init.normal_(self.weight, std=map_init_std)
        fixed = torch.zeros(n_interests, max_len)
        if routing_init != "zeros":
            fixed = torch.randn(n_interests, max_len) * routing_init_std
        self.register_buffer("routing_logits", fixed)

    def predictions(self, e: torch.Tensor) -> torch.Tensor:
        """Prediction vectors ``u_hat`` ``[B, K, L, d]`` (``[B, 1, L, d]`` for the shared map)."""
        if self.maps == "shared":
            return (e @ self.weight.T).unsqueeze(1)
        w = newest_aligned(self.weight, e.shape[1])  # [L, K, d_out, d_in]
        return torch.einsum("lkoi,bli->bklo", w, e)

    def initial_logits(self, batch: int, width: int) -> torch.Tensor:
        fixed = newest_aligned(self.routing_logits, width, dim=1)
        if self.training and self.routing_init == "normal":
            return torch.randn(batch, *fixed.shape, device=fixed.device, dtype=fixed.dtype) * self.routing_init_std
        return fixed.unsqueeze(0)

    def forward(self, e: torch.Tensor, mask: torch.Tensor, iterations: int | None = None) -> Routing:
        logits = self.initial_logits(e.shape[0], e.shape[1])
        return dynamic_routing(self.predictions(e), mask, logits, iterations or self.iterations, self.detach)


def label_aware_attention(interests: torch.Tensor, target: torch.Tensor, power: float) -> tuple[torch.Tensor, torch.Tensor]:
    """MIND's label-aware read-out: ``v_u = sum_k w_k v_k`` with ``w = softmax_k(pow(<v_k, e_target>, p))``.

    ``interests`` [B, K, d], ``target`` [B, d]; returns the read-out ``[B, d]`` and the weights ``[B, K]``.
    ``pow`` keeps the sign (``sign(x) |x|^p``): the paper's ``x^p`` for p = 1 and any odd p and for
    non-negative scores; for even p it keeps the attention increasing in the score (as the paper's
    "p -> inf selects the interest with the largest value" presumes) instead of favouring strongly
    anti-aligned interests, and it is defined for non-integer p. A finite p tends to the argmax only where
    the best score exceeds 1 (``|x|^p -> 0`` below 1). ``p = 0``: uniform weights (the mean);
    ``p = inf``: one-hot on the argmax (ComiRec's read-out; the gradient reaches the chosen interest only).
    """
    scores = (interests @ target.unsqueeze(-1)).squeeze(-1)  # [B, K]
    K = scores.shape[1]
    if power < 0:
        raise ValueError(f"label-aware attention power must be >= 0, got {power}")
    if math.isinf(power):
        weights = F.one_hot(scores.argmax(dim=1), K).to(interests.dtype)
    elif power == 0:
        weights = torch.full_like(scores, 1.0 / K)
    else:
        # clamp: no infinite gradient of |x|^p at 0 for p < 1
        weights = torch.softmax(torch.sign(scores) * scores.abs().clamp_min(1e-12).pow(power), dim=1)
    return (weights.unsqueeze(-1) * interests).sum(1), weights


class MultiInterestRecommender(SequentialRecommender):
    """Shell of the multi-interest models: an item table (shared by input and output, as in MIND and
    ComiRec) with optional input dropout; subclasses implement ``extract``.

    Training (``loss``): one random prefix per window and step (``random_prefixes``, global RNG), its
    K interests, the label-aware read-out with the next item's embedding (``attention_power`` of the
    config), and ``next_item_loss`` (``ce`` = full softmax by default, ``sampled`` = the originals'
    sampled softmax). Inference: ``user_representation`` = the K interests, scored by the max over
    interests (the inherited ``score_all``).
    """

    train_defaults = SPLIT_POINT_TRAINING

    def __init__(self, cfg, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        if cfg.n_interests < 1:
            raise ValueError(f"model.n_interests must be >= 1, got {cfg.n_interests}")
        if cfg.attention_power < 0:
            raise ValueError(f"model.attention_power must be >= 0 (inf = argmax), got {cfg.attention_power}")
        self.item = nn.Embedding(n_items + 1, cfg.hidden_size, padding_idx=0)
        self.drop = FastDropout(cfg.dropout)
        init_weights(self.item, cfg.init_std)
        with torch.no_grad():
            self.item.weight[0].zero_()

    def extract(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Interests ``[B, K, d]`` and the weights ``[B, K, L]`` of the positions behind them
        (routing coupling or attention; 0 at padding) from left-padded ``inputs`` [B, L <= max_len]."""
        raise NotImplementedError

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.drop(self.item(inputs))

    def user_representation(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.extract(inputs[:, -self.max_len:])[0]

    def item_embeddings(self) -> torch.Tensor:
        return self.item.weight

    def loss(self, batch: Batch) -> torch.Tensor:
        s = random_prefixes(batch.inputs, batch.targets)
        prefix = s.prefix[:, -self.max_len:]
        width = int((prefix != 0).sum(1).max().clamp(min=1))  # drop the columns that are padding in every row
        interests, _ = self.extract(prefix[:, -width:])
        user, _ = label_aware_attention(interests, self.item(s.next_item), self.cfg.attention_power)
        return next_item_loss(user, s.next_item, self.item.weight, self.cfg.loss, self.cfg.n_negatives)
