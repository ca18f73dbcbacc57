"""MIND (Li et al., 2019, "Multi-Interest Network with Dynamic Routing for Recommendation at Tmall").

Behaviour-to-interest (B2I) dynamic routing: every item of the history is mapped by one shared
bilinear map ``S`` (``u_hat_i = S e_i``, the same for all interests), routed to K interest capsules
(3 iterations, squash, coupling softmax over interests, stop-gradient on the iterations before the
last, routing logits initialised from a normal distribution to break the symmetry of the shared map),
then passed through a ReLU layer. Training reads the interests out with label-aware attention
``softmax(pow(<v_k, e_target>, p))``, p = 2; inference scores every item by the max over interests.

No user-profile features exist here, so the paper's "concatenate the profile, then ReLU layers" is
one ``d -> d`` ReLU layer on each capsule (ComiRec's MIND baseline does the same); the dynamic
interest number ``K'_u = max(1, min(K, log2 |I_u|))`` is not used (fixed K, as in ComiRec's
reproduction). Choices the paper leaves open are fields of ``MINDConfig`` (defaults documented there).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from sigmarec.models.base import ModelConfig
from sigmarec.models.layers.capsules import CapsuleLayer, MultiInterestRecommender, RoutingInit
from sigmarec.models.layers.losses import NextItemLoss


@dataclass
class MINDConfig(ModelConfig):
    hidden_size: int = 64  # d: items and interests (ComiRec's setting for all baselines)
    n_interests: int = 4  # K (ComiRec's default)
    routing_iterations: int = 3  # MIND / ComiRec: 3
    routing_init: RoutingInit = "normal"  # initial routing logits b_ij. normal = MIND: fresh N(0, std^2) per user and step in
    # training (the shared map gives every interest the same prediction vectors, so b = 0 would make all K interests
    # identical); eval uses one fixed draw stored as a buffer (reproducible scores). fixed = that buffer in training
    # too | zeros (degenerate here: K copies of one interest)
    routing_init_std: float = 1.0  # ComiRec's MIND code: truncated normal, std 1 (plain normal here, as the paper)
    detach_routing: bool = True  # stop-gradient on u_hat in the iterations before the last (MIND, ComiRec's code)
    relu_layer: bool = True  # d -> d ReLU layer on each capsule (the paper's ReLU layers, without the profile)
    attention_power: float = 2.0  # p of the label-aware attention (paper: 2; inf = argmax; 0 = mean); sign kept,
    # see layers/capsules.py::label_aware_attention
    dropout: float = 0.0  # on input item embeddings; the original has none
    loss: NextItemLoss = "ce"  # ce = full softmax (library convention) | sampled = the original's sampled softmax | bce
    n_negatives: int = 100  # for loss=sampled
    init_std: float = 0.02  # item table (truncated normal); the map S is N(0, 1) (ComiRec's code, see CapsuleLayer),
    # the ReLU layer PyTorch's default weight init and a zero bias


class MIND(MultiInterestRecommender):
    """MIND; see the module docstring. ``extract`` returns the K interests and the routing coupling."""

    config_class = MINDConfig

    def __init__(self, cfg: MINDConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        d = cfg.hidden_size
        self.capsules = CapsuleLayer(d, cfg.n_interests, max_len, maps="shared", iterations=cfg.routing_iterations,
                                     routing_init=cfg.routing_init, routing_init_std=cfg.routing_init_std,
                                     detach=cfg.detach_routing)
        self.proj = nn.Sequential(nn.Linear(d, d), nn.ReLU()) if cfg.relu_layer else nn.Identity()
        if cfg.relu_layer:
            # zero bias (TensorFlow's dense default, ComiRec's code): the capsules start tiny (squash is
            # quadratic near 0), and PyTorch's uniform bias would give every user the same relu(bias)
            nn.init.zeros_(self.proj[0].bias)

    def extract(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        routing = self.capsules(self.embed(inputs), inputs > 0)
        return self.proj(routing.interests), routing.coupling
