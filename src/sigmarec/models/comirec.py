"""ComiRec (Cen et al., 2020, "Controllable Multi-Interest Framework for Recommendation"): the two
multi-interest extraction modules, trained the same way.

* **ComiRec-DR**: dynamic routing as MIND (3 iterations, squash, coupling softmax over interests,
  stop-gradient on the iterations before the last) but with one bilinear map ``W_ij`` per input
  position i and interest j, ``u_hat_j|i = W_ij e_i``; routing logits start at 0 (the authors' code:
  the per-interest maps already separate the interests). Position i counts back from the newest
  item (max_len - 1 = newest), so left padding never shifts the maps.
* **ComiRec-SA**: additive self-attention with K heads. ``H`` = item + position embeddings
  ``[L, d]``; ``A = softmax_positions(W2 tanh(W1 H^T))`` ``[K, L]`` with ``W1`` ``[4d, d]`` and
  ``W2`` ``[K, 4d]``; interests ``V = A E`` where ``E`` are the item embeddings without positions
  (the authors' code: positions shape the attention only; ``values_with_positions`` uses ``H``).

Training (both): one random prefix per window and step, the interest with the largest dot product
with the target's embedding (argmax read-out, ``attention_power = inf``), ``next_item_loss``
(``ce`` by default; the paper's sampled softmax is ``loss=sampled``). Inference: max over interests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sigmarec.models.base import ModelConfig
from sigmarec.models.layers.capsules import CapsuleLayer, MultiInterestRecommender, RoutingInit, newest_aligned
from sigmarec.models.layers.init import init_weights
from sigmarec.models.layers.losses import NextItemLoss


@dataclass
class ComiRecDRConfig(ModelConfig):
    hidden_size: int = 64  # d (paper: 64)
    n_interests: int = 4  # K (paper: 4)
    routing_iterations: int = 3  # paper / code: 3
    routing_init: RoutingInit = "zeros"  # initial routing logits: zeros = the authors' code (deterministic everywhere) |
    # normal = fresh N(0, std^2) per user and step in training, a fixed stored draw at eval | fixed = that draw always
    routing_init_std: float = 1.0  # for routing_init=normal|fixed
    detach_routing: bool = True  # stop-gradient on u_hat in the iterations before the last (authors' code)
    map_init_std: float = 1.0  # W_ij ~ N(0, std^2), the authors' std 1: u_hat = W e is sqrt(d) times the item scale, so
    # the squashed interests start near norm 1 (at 1/sqrt(d) the squash shrinks them ~1000x and learning stalls)
    attention_power: float = float("inf")  # training read-out: inf = argmax (paper) | p of MIND's label-aware attention
    dropout: float = 0.0  # on input item embeddings; the original has none
    loss: NextItemLoss = "ce"  # ce = full softmax (library convention) | sampled = the paper's sampled softmax | bce
    n_negatives: int = 100  # for loss=sampled (the paper samples 10 per positive in a batch of 128)
    init_std: float = 0.02  # item table (truncated normal)


@dataclass
class ComiRecSAConfig(ModelConfig):
    hidden_size: int = 64  # d (paper: 64)
    n_interests: int = 4  # K = number of attention heads (paper: 4)
    attention_hidden: int = 256  # rows of W1: 4 * d in the paper; 0 = 4 * hidden_size
    positions: bool = True  # trainable position embeddings added to H (paper / code: add_pos=True)
    values_with_positions: bool = False  # V = A (E + P) instead of the authors' V = A E
    attention_power: float = float("inf")  # training read-out: inf = argmax (paper) | p of MIND's label-aware attention
    dropout: float = 0.0  # on input item embeddings; the original has none
    loss: NextItemLoss = "ce"  # ce = full softmax (library convention) | sampled = the paper's sampled softmax | bce
    n_negatives: int = 100  # for loss=sampled
    init_std: float = 0.02  # item and position tables (truncated normal); W1, W2 keep PyTorch's fan-in init
    # (std-0.02 weights on std-0.02 embeddings leave the attention uniform and its gradients ~1e-4)


class ComiRecDR(MultiInterestRecommender):
    """ComiRec-DR; see the module docstring. ``extract`` returns the K interests and the routing coupling."""

    config_class = ComiRecDRConfig

    def __init__(self, cfg: ComiRecDRConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        self.capsules = CapsuleLayer(cfg.hidden_size, cfg.n_interests, max_len, maps="per_position",
                                     iterations=cfg.routing_iterations, routing_init=cfg.routing_init,
                                     routing_init_std=cfg.routing_init_std, detach=cfg.detach_routing,
                                     map_init_std=cfg.map_init_std)

    def extract(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        routing = self.capsules(self.embed(inputs), inputs > 0)
        return routing.interests, routing.coupling


class ComiRecSA(MultiInterestRecommender):
    """ComiRec-SA; see the module docstring. ``extract`` returns the K interests and the attention
    ``A`` ``[B, K, L]`` (each row sums to 1 over the real positions, 0 at padding)."""

    config_class = ComiRecSAConfig

    def __init__(self, cfg: ComiRecSAConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        d = cfg.hidden_size
        hidden = cfg.attention_hidden or 4 * d
        self.position = nn.Embedding(max_len, d) if cfg.positions else None
        if self.position is not None:
            init_weights(self.position, cfg.init_std)
        self.w1 = nn.Linear(d, hidden)  # with bias (a dense tanh layer in the authors' code)
        self.w2 = nn.Linear(hidden, cfg.n_interests, bias=False)  # a per-head bias is constant over positions: cancels

    def attention(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``A`` ``[B, K, L]``: softmax over the real positions of ``W2 tanh(W1 h)``; exactly 0 at padding."""
        logits = self.w2(torch.tanh(self.w1(h))).transpose(1, 2)  # [B, K, L]
        # the dtype's lowest finite value, not -inf: a row of padding only gives a uniform (then zeroed) row, no NaN
        logits = logits.masked_fill(~mask.unsqueeze(1), torch.finfo(logits.dtype).min)
        return torch.softmax(logits, dim=-1) * mask.unsqueeze(1).to(logits.dtype)

    def extract(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embed(inputs)
        h = e
        if self.position is not None:
            h = e + newest_aligned(self.position.weight, inputs.shape[1])  # position max_len - 1 = newest
        a = self.attention(h, inputs > 0)
        return a @ (h if self.cfg.values_with_positions else e), a
