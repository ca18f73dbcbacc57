"""ContrastVAE (Wang et al., CIKM 2022): a Transformer sequence VAE with a contrastive term between two views.

Attentive VAE (Section 4.1): two causal Transformer encoders give ``mu_t`` and ``log sigma_t^2`` at every position
of the left-padded sequence, ``z_t = mu_t + sigma_t * eps`` is decoded by a causal Transformer into ``h_t``, which
scores item t+1 against the shared item table. ContrastELBO (Section 4.2): a second view ``z'`` of the same
sequence, and ``L = rec(z) + rec(z') + beta (KL(z) + KL(z')) + lambda InfoNCE(u, u')`` with ``u = sum_t z_t`` over
the real positions, cosine similarity / ``temperature`` and in-batch negatives from both views (NT-Xent).
The second view (Section 4.3, ``augmentation``):

* ``variational`` (the authors' setting on Office, Toys and Tools): ``z' = mu' + alpha sigma' eps`` with one learned
  ``alpha = sigmoid(a)`` (initially 0.5), regularised by the variational-dropout prior term
  ``-(0.5 log alpha + c1 alpha + c2 alpha^2 + c3 alpha^3)`` (Molchanov et al. 2017's approximation);
* ``model`` (their setting on Beauty): ``z' = mu' + Dropout_p(sigma')``, the view differing by the dropout of a second
  pass through the same encoders;
* ``data``: the encoders see the sequence with a random 60% window of its items shuffled (the reference code's
  effective operator: its random choice among crop, mask and reorder always picks reorder);
* ``none``: a plain attentive VAE (one view, no contrastive term).

Inference scores all items from the decoder on ``mu`` at the newest position. Choices that differ from the
reference code, with reasons, are beside the config fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from sigmarec.config import check
from sigmarec.data.batching import Batch
from sigmarec.models.base import ModelConfig, SequentialRecommender
from sigmarec.models.layers.anneal import annealed_weight
from sigmarec.models.layers.gaussian import kl_standard_normal
from sigmarec.models.layers.init import init_weights
from sigmarec.models.layers.losses import NextItemLoss, next_item_loss
from sigmarec.models.layers.transformer import CausalEncoder

# -log prior of the variational-dropout rate alpha, up to a constant (Molchanov et al. 2017, Eq. 14)
VD_C1, VD_C2, VD_C3 = 1.16145124, -1.50204118, 0.58629921


@dataclass
class ContrastVAEConfig(ModelConfig):
    hidden_size: int = 128  # authors: 128
    n_layers: int = 1  # Transformer layers in each encoder and in the decoder (authors: 1)
    n_heads: int = 4  # authors: 4
    dropout: float = 0.3  # hidden dropout (authors: 0.3)
    attn_dropout: float = 0.0  # authors: 0.0 by default and on Beauty, 0.3 on Office, Toys and Tools
    augmentation: Literal["variational", "model", "data", "none"] = "variational"  # the second view (module docstring)
    contrast_weight: float = 0.3  # lambda of the InfoNCE term (authors: 0.3; 0.6 on Beauty, 0.4 on Tools)
    temperature: float = 0.5  # of the InfoNCE cosine similarities (authors: 0.5)
    reparam_dropout: float = 0.2  # p of the dropout on sigma' for augmentation=model (authors: 0.2; 0.1 on Beauty)
    reorder_fraction: float = 0.6  # length of the shuffled window for augmentation=data (authors: beta = 0.6)
    kl_cap: float = 0.2  # beta = min(kl_cap, step / anneal_steps) over training steps (authors: 0.2 in every setting)
    anneal_steps: int = 10000  # (authors: 10k; 20k on Office)
    kl_reduce: Literal["slots", "real"] = "slots"  # how the KL of a batch is averaged. slots: summed over the real
    # positions and divided by batch x max_len, the weight the reference's mean over every slot of the padded window
    # gives them (the padding's own KL terms only train themselves to zero there, and are left out here); real: the
    # mean over real positions (beta then weighs about max_len / mean length times more on short-sequence data)
    loss: NextItemLoss = "ce"  # reconstruction: ce = full softmax (library default) | bce = the reference code's, one
    # sampled negative per position | sampled
    n_negatives: int = 100  # for loss=sampled
    init_std: float = 0.02  # truncated normal for the item table and the Transformers (authors: normal, std 0.02)

    def __post_init__(self) -> None:
        super().__post_init__()
        check("model.contrast_weight", self.contrast_weight >= 0, "a number >= 0", self.contrast_weight)
        check("model.kl_cap", self.kl_cap >= 0, "a number >= 0", self.kl_cap)
        check("model.anneal_steps", self.anneal_steps >= 0, "an integer >= 0", self.anneal_steps)
        check("model.reparam_dropout", 0 <= self.reparam_dropout < 1, "a probability in [0, 1)", self.reparam_dropout)
        check("model.reorder_fraction", 0 < self.reorder_fraction <= 1, "a fraction in (0, 1]", self.reorder_fraction)


def nt_xent(u1: torch.Tensor, u2: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE over 2B vectors: each row's positive is its other view, the other 2B - 2 rows its negatives."""
    u = F.normalize(torch.cat([u1, u2]).float(), dim=-1)
    sim = u @ u.T / temperature
    n = u1.shape[0]
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=u.device), float("-inf"))
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(u.device)
    return F.cross_entropy(sim, positive)


def shuffle_windows(inputs: torch.Tensor, fraction: float) -> torch.Tensor:
    """Each left-padded row with a random window of ``fraction`` of its items shuffled (batched: a window's
    columns get random sort keys inside the window's range, every other column keeps its own index)."""
    B, L = inputs.shape
    n = (inputs > 0).sum(1)
    w = (n.float() * fraction).long().clamp_min(1)
    start = L - n + (torch.rand(B, device=inputs.device) * (n - w + 1).float()).long()
    col = torch.arange(L, device=inputs.device).expand(B, L)
    inside = (col >= start[:, None]) & (col < (start + w)[:, None])
    keys = torch.where(inside, start[:, None] + torch.rand(B, L, device=inputs.device) * w[:, None], col.float())
    return inputs.gather(1, keys.argsort(dim=1))


class ContrastVAE(SequentialRecommender):
    """See the module docstring."""

    config_class = ContrastVAEConfig
    # the authors train up to 400 epochs with patience 200; beta rises over 10-20k steps (hundreds of epochs)
    train_defaults = {"train": {"epochs": 400, "patience": 40}}

    def __init__(self, cfg: ContrastVAEConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        d = cfg.hidden_size
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)

        def stack(input_dropout: float | None = None) -> CausalEncoder:
            return CausalEncoder(d, max_len, cfg.n_layers, cfg.n_heads, cfg.dropout, cfg.attn_dropout, input_dropout=input_dropout)

        self.enc_mu, self.enc_logvar, self.decoder = stack(), stack(), stack(0.0)
        self.alpha_logit = nn.Parameter(torch.zeros(())) if cfg.augmentation == "variational" else None
        init_weights(self, cfg.init_std)
        with torch.no_grad():
            self.item.weight[0].zero_()
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def on_train_step(self) -> None:
        self.step += 1

    def kl_weight(self) -> torch.Tensor:
        """beta on the step counter's device (no host sync)."""
        return annealed_weight(self.step, self.cfg.kl_cap, self.cfg.anneal_steps)

    def _embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """Item vectors scaled by sqrt(d) (as in SASRec), the input of both encoders."""
        return self.item(inputs) * self.cfg.hidden_size**0.5

    def posterior(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._embed(inputs)
        return self.enc_mu(x, inputs), self.enc_logvar(x, inputs)

    def _kl(self, mu: torch.Tensor, logvar: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        kl = kl_standard_normal(mu[real].float(), logvar[real].float())
        return kl.sum() / (real.shape[0] * self.max_len) if self.cfg.kl_reduce == "slots" else kl.mean()

    def _second_view(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z', mu', logvar')`` of the configured augmentation."""
        c = self.cfg
        if c.augmentation == "data":
            mu, logvar = self.posterior(shuffle_windows(inputs, c.reorder_fraction))
            return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar), mu, logvar
        mu, logvar = self.posterior(inputs)  # a second pass: its dropout differs from the first view's
        sigma = torch.exp(0.5 * logvar)
        if c.augmentation == "model":
            return mu + F.dropout(sigma, c.reparam_dropout, self.training), mu, logvar
        alpha = torch.sigmoid(self.alpha_logit)
        return mu + alpha * sigma * torch.randn_like(mu), mu, logvar

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.cfg
        inputs, targets = batch.inputs, batch.targets
        mask, real = targets > 0, inputs > 0
        tgt = targets[mask]
        beta = self.kl_weight()
        mu, logvar = self.posterior(inputs)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        parts = {"recon": next_item_loss(self.decoder(z, inputs)[mask], tgt, self.item.weight, c.loss, c.n_negatives),
                 "kl": self._kl(mu, logvar, real)}
        total = parts["recon"] + beta * parts["kl"]
        if c.augmentation != "none":
            z2, mu2, logvar2 = self._second_view(inputs)
            parts["recon2"] = next_item_loss(self.decoder(z2, inputs)[mask], tgt, self.item.weight, c.loss, c.n_negatives)
            parts["kl2"] = self._kl(mu2, logvar2, real)
            fill = real.unsqueeze(-1).to(z.dtype)
            parts["contrast"] = nt_xent((z * fill).sum(1), (z2 * fill).sum(1), c.temperature)
            total = total + parts["recon2"] + beta * parts["kl2"] + c.contrast_weight * parts["contrast"]
            if self.alpha_logit is not None:
                alpha = torch.sigmoid(self.alpha_logit)
                parts["alpha"] = alpha
                parts["alpha_prior"] = -(0.5 * torch.log(alpha) + VD_C1 * alpha + VD_C2 * alpha**2 + VD_C3 * alpha**3)
                total = total + parts["alpha_prior"]
        parts["beta"] = beta
        parts["loss"] = total
        return {k: v if k == "loss" else v.detach() for k, v in parts.items()}

    def user_representation(self, inputs: torch.Tensor) -> torch.Tensor:
        mu = self.enc_mu(self._embed(inputs), inputs)
        return self.decoder(mu, inputs)[:, -1]

    def item_embeddings(self) -> torch.Tensor:
        return self.item.weight
