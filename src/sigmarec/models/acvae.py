"""ACVAE (Xie et al., WWW 2021): a sequential VAE with an implicit posterior trained by Adversarial Variational
Bayes, and a contrastive (mutual-information) term between the latents and the sequence.

Structure as the authors' released code builds it (the paper leaves the layer sizes to it):

* **Encoder** (the "recurrent and convolutional structure"): item embeddings (dropout) -> GRU -> ``h_t``; noise
  enters additively, ``v + tanh(W eps + b)`` with ``eps ~ N(0, I)`` (so the posterior is implicit: no mean or
  variance), before a 1x1 convolution and before a causal width-5 convolution over time (a residual branch,
  softplus activations), then a linear map to ``z_t``.
* **Decoder**: ``W2 tanh(W1 z_t + b1) + b2`` scores every item for the next one (softmax; the bias is folded into
  the dot product as ``[h, 1] . [W2, b2]``).
* **AVB** (replacing the KL): a discriminator ``T(e_t, z_t)`` (the current item's embedding and the latent;
  residual ELU blocks; per latent dimension, plus ``z^2 / 2`` so it starts near ``-log p(z)``) learns to tell
  posterior samples from prior samples ``eps ~ N(0, I)`` (logistic loss on detached inputs); the model adds
  ``kl_weight * mean T(e_t, z_t)``, computed with the discriminator's parameters frozen (so one optimizer steps
  both without the generator term moving the discriminator).
* **Contrastive term**: a GRU critic over ``[e_t ; z_t]`` scores true pairs against the latents of the next user
  in the batch (Deep-InfoMax / Jensen-Shannon form: ``softplus(-T) + softplus(T~)``), weight
  ``contrast_weight``; encoder and critic both minimise it.

Choices that differ from the released code, with reasons: one Adam optimizer for everything (the code steps the
discriminator and the critic with separate SGD optimizers; the library's trainer has one, and the frozen-parameter
generator term keeps the adversarial game); inference uses ``eps = 0`` (the code samples noise at evaluation too,
so its scores vary between runs of the same checkpoint; ``inference_noise=true`` restores that).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from sigmarec.config import check
from sigmarec.data.batching import Batch
from sigmarec.models.base import ModelConfig, SequentialRecommender
from sigmarec.models.gru4rec import roll_rows
from sigmarec.models.layers.dropout import FastDropout
from sigmarec.models.layers.losses import NextItemLoss, next_item_loss


@dataclass
class ACVAEConfig(ModelConfig):
    hidden_size: int = 128  # item embeddings (authors' code: 128)
    gru_size: int = 100  # (authors' code: 100)
    latent_size: int = 64  # z_t (authors' code: 64)
    decoder_size: int = 128  # decoder hidden width (authors' code: 128)
    critic_size: int = 128  # hidden width of the AVB discriminator and the contrastive critic (authors' code: 128)
    dropout: float = 0.5  # on item embeddings and in the encoder (authors' code: 0.5)
    critic_dropout: float = 0.2  # in the AVB discriminator (authors' code: 0.2)
    kl_weight: float = 0.05  # weight of the adversarial KL estimate (authors' code: 0.05, not annealed)
    contrast_weight: float = 0.1  # weight of the contrastive term (authors' code: 0.1)
    inference_noise: bool = False  # sample eps at inference as the authors' code does (False: eps = 0, deterministic)
    loss: NextItemLoss = "ce"  # ce = the paper's softmax over all items | bce | sampled
    n_negatives: int = 100  # for loss=sampled

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("gru_size", "latent_size", "decoder_size", "critic_size"):
            check(f"model.{name}", getattr(self, name) >= 1, "an integer >= 1", getattr(self, name))
        for name in ("kl_weight", "contrast_weight"):
            check(f"model.{name}", getattr(self, name) >= 0, "a number >= 0", getattr(self, name))


class AddNoise(nn.Module):
    """``v + tanh(W eps + b)``, ``eps ~ N(0, I)`` (or 0 when ``noise`` is off)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.map = nn.Linear(n, n)

    def forward(self, v: torch.Tensor, noise: bool) -> torch.Tensor:
        eps = torch.randn_like(v) if noise else torch.zeros_like(v)
        return v + torch.tanh(self.map(eps))


class Discriminator(nn.Module):
    """AVB's ``T(e, z)``: per latent dimension, plus ``z^2 / 2`` (the standard normal's negative log-density)."""

    def __init__(self, d_in: int, width: int, d_z: int, dropout: float) -> None:
        super().__init__()
        self.inp = nn.Sequential(nn.Linear(d_in + d_z, width), nn.Dropout(dropout))
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.ELU(), nn.Linear(width, width)) for _ in range(2))
        self.out = nn.Sequential(nn.Linear(width, d_z), nn.Dropout(dropout))

    def forward(self, e: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = self.inp(torch.cat([e, z], dim=-1))
        for block in self.blocks:
            h = F.elu(h + block(h))
        return self.out(h) + 0.5 * z.pow(2)


class ACVAE(SequentialRecommender):
    """See the module docstring."""

    config_class = ACVAEConfig
    # its validation NDCG creeps up for hundreds of epochs (adversarial KL, dropout 0.5): the library's 200 / 10
    # stopped Office seed 1 at epoch 127 (best 117, valid N@20 .0764); continued with patience 40 it was at .0805
    # (best epoch 191) and still rising (BENCHMARKS.md, issue 16's convergence check)
    train_defaults = {"train": {"epochs": 1000, "patience": 40}}

    def __init__(self, cfg: ACVAEConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        d, g, z = cfg.hidden_size, cfg.gru_size, cfg.latent_size
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.drop = FastDropout(cfg.dropout)
        self.gru = nn.GRU(d, g, batch_first=True)
        self.noise = AddNoise(g)
        self.conv_in = nn.Conv1d(g, g, 1)
        self.conv_mid = nn.Conv1d(g, 2 * g, 5, padding=4)  # causal: the last 4 outputs are dropped
        self.conv_out = nn.Conv1d(2 * g, g, 1)
        self.to_z = nn.Linear(g, z)
        self.decoder = nn.Sequential(nn.Linear(z, cfg.decoder_size), nn.Tanh())
        self.out = nn.Linear(cfg.decoder_size, n_items + 1)
        self.discriminator = Discriminator(d, cfg.critic_size, z, cfg.critic_dropout)
        self.critic = nn.GRU(d + z, cfg.critic_size, batch_first=True)
        self.critic_out = nn.Linear(cfg.critic_size, 1)

    def latents(self, inputs: torch.Tensor, noise: bool) -> torch.Tensor:
        """``z_t`` ``[B, L, latent]`` (zero at padding) from the GRU and the causal convolutions."""
        L = inputs.shape[1]
        real = (inputs > 0).unsqueeze(-1)
        lengths = real.squeeze(-1).sum(1).clamp(min=1)
        pad = L - lengths
        x = roll_rows(self.drop(self.item(inputs)), pad)
        out, _ = self.gru(pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False))
        h = roll_rows(pad_packed_sequence(out, batch_first=True, total_length=L)[0], -pad)
        keep = real.to(h.dtype)  # padding stays zero, as the convolutions' own padding (no noise leaks in)
        a = F.softplus(self.conv_in((self.noise(h, noise) * keep).transpose(1, 2)))
        b = F.softplus(self.conv_mid(self.noise(a.transpose(1, 2), noise).mul(keep).transpose(1, 2))[..., :L])
        y = self.drop(h + F.softplus(self.conv_out(b)).transpose(1, 2))
        return self.to_z(y) * keep

    def _scores_input(self, z: torch.Tensor) -> torch.Tensor:
        h = self.decoder(z)
        return torch.cat([h, h.new_ones(*h.shape[:-1], 1)], dim=-1)

    def _critic(self, e: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.critic_out(F.gelu(self.critic(torch.cat([e, z], dim=-1))[0])).squeeze(-1)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.cfg
        inputs, targets = batch.inputs, batch.targets
        mask, real = targets > 0, inputs > 0
        z = self.latents(inputs, noise=True)
        e = self.item(inputs)
        recon = next_item_loss(self._scores_input(z[mask]), targets[mask], self.item_embeddings(), c.loss, c.n_negatives)
        # AVB: the discriminator learns on detached samples; the model's KL estimate uses it with frozen parameters
        e_d, z_d = e[real].detach(), z[real].detach()
        t_post, t_prior = self.discriminator(e_d, z_d), self.discriminator(e_d, torch.randn_like(z_d))
        disc = (F.softplus(-t_post) + F.softplus(t_prior)).mean()
        frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        kl = functional_call(self.discriminator, frozen, (e[real], z[real])).mean(-1).mean()
        # contrastive (Jensen-Shannon MI estimate): true (e, z) pairs against the next row's latents
        t_true, t_false = self._critic(e, z), self._critic(e, z.roll(1, dims=0))
        contrast = (F.softplus(-t_true) + F.softplus(t_false))[real].mean()
        total = recon + c.kl_weight * kl + c.contrast_weight * contrast + disc
        return {"loss": total, "recon": recon.detach(), "kl": kl.detach(), "contrast": contrast.detach(), "disc": disc.detach()}

    def user_representation(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._scores_input(self.latents(inputs, noise=self.cfg.inference_noise)[:, -1])

    def item_embeddings(self) -> torch.Tensor:
        """``[N + 1, decoder_size + 1]``: the output layer's weights and biases."""
        return torch.cat([self.out.weight, self.out.bias.unsqueeze(-1)], dim=-1)
