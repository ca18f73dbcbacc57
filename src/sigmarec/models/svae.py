"""SVAE (Sachdeva et al., WSDM 2019): a recurrent VAE with a Gaussian latent at every step of the sequence.

Items are embedded and read by a GRU; at each step t an MLP of the GRU state gives ``mu_t`` and ``log sigma_t^2``
(Section 3.2), ``z_t ~ N(mu_t, sigma_t^2)`` with a standard normal prior, and a decoder MLP of ``z_t`` gives a
multinomial distribution over all items for the next items (Eq. 6-8): the ``n_next`` items after position t
(the paper's "next-k"; 1 = the next item). Loss: the negative ELBO per target, ``-log p(next items | z_t) +
beta KL(q(z_t) || N(0, I))`` with beta annealed linearly per step to ``kl_cap`` (as Mult-VAE, which SVAE extends).
The decoder's last layer ``W h + b`` scores items; its bias is folded into the dot product (``[h, 1] . [W, b]``)
so scoring is the library's plain dot product. Inference uses ``mu`` at the newest position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from sigmarec.config import check
from sigmarec.data.batching import Batch
from sigmarec.models.base import ModelConfig, SequentialRecommender
from sigmarec.models.layers.anneal import annealed_weight
from sigmarec.models.gru4rec import roll_rows
from sigmarec.models.layers.dropout import FastDropout
from sigmarec.models.layers.gaussian import kl_standard_normal
from sigmarec.models.layers.losses import NextItemLoss, next_item_loss


@dataclass
class SVAEConfig(ModelConfig):
    hidden_size: int = 256  # item embedding size (paper: 256)
    gru_size: int = 200  # GRU state and MLP hidden width (paper: 200)
    latent_size: int = 64  # z_t (paper: 64)
    dropout: float = 0.5  # on the item embeddings entering the GRU (Mult-VAE's input dropout; paper: not given)
    n_next: int = 1  # how many following items each step's multinomial explains (paper: next-k, k tuned per data set)
    kl_cap: float = 0.2  # beta = min(kl_cap, step / anneal_steps) (Mult-VAE's annealing to 0.2)
    anneal_steps: int = 20000
    loss: NextItemLoss = "ce"  # ce = the paper's multinomial likelihood (softmax over all items) | bce | sampled
    n_negatives: int = 100  # for loss=sampled

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("gru_size", "latent_size", "n_next"):
            check(f"model.{name}", getattr(self, name) >= 1, "an integer >= 1", getattr(self, name))
        check("model.kl_cap", self.kl_cap >= 0, "a number >= 0", self.kl_cap)
        check("model.anneal_steps", self.anneal_steps >= 0, "an integer >= 0", self.anneal_steps)


class SVAE(SequentialRecommender):
    """See the module docstring."""

    config_class = SVAEConfig

    def __init__(self, cfg: SVAEConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        g = cfg.gru_size
        self.item = nn.Embedding(n_items + 1, cfg.hidden_size, padding_idx=0)
        self.drop = FastDropout(cfg.dropout)
        self.gru = nn.GRU(cfg.hidden_size, g, batch_first=True)
        self.encoder = nn.Sequential(nn.Linear(g, g), nn.Tanh(), nn.Linear(g, 2 * cfg.latent_size))
        self.decoder = nn.Sequential(nn.Linear(cfg.latent_size, g), nn.Tanh())
        self.out = nn.Linear(g, n_items + 1)  # item scores W h + b (row 0 = padding)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def on_train_step(self) -> None:
        self.step += 1

    def kl_weight(self) -> torch.Tensor:
        return annealed_weight(self.step, self.cfg.kl_cap, self.cfg.anneal_steps)

    def posterior(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``mu, logvar`` ``[B, L, latent]``; left padding is skipped by the GRU (a zero state until the first item)."""
        L = inputs.shape[1]
        lengths = (inputs > 0).sum(1).clamp(min=1)
        pad = L - lengths
        x = roll_rows(self.drop(self.item(inputs)), pad)  # items first, padding last, for packing
        out, _ = self.gru(pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False))
        h = roll_rows(pad_packed_sequence(out, batch_first=True, total_length=L)[0], -pad)  # left padding again
        mu, logvar = self.encoder(h).chunk(2, dim=-1)
        return mu, logvar

    def _hidden(self, z: torch.Tensor) -> torch.Tensor:
        h = self.decoder(z)
        return torch.cat([h, h.new_ones(*h.shape[:-1], 1)], dim=-1)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.cfg
        mu, logvar = self.posterior(batch.inputs)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        h = self._hidden(z)
        mask = batch.targets > 0
        rows, targets = [], []
        for j in range(c.n_next):  # the j-th following item of each position (a loop over k, not over data)
            ahead = torch.zeros_like(batch.targets)
            ahead[:, : ahead.shape[1] - j] = batch.targets[:, j:]
            valid = mask & (ahead > 0)
            rows.append(h[valid])
            targets.append(ahead[valid])
        recon = next_item_loss(torch.cat(rows), torch.cat(targets), self.item_embeddings(), c.loss, c.n_negatives)
        kl = kl_standard_normal(mu[mask].float(), logvar[mask].float()).mean()
        beta = self.kl_weight()
        return {"loss": recon + beta * kl, "recon": recon.detach(), "kl": kl.detach(), "beta": beta}

    def user_representation(self, inputs: torch.Tensor) -> torch.Tensor:
        mu, _ = self.posterior(inputs)
        return self._hidden(mu[:, -1])

    def item_embeddings(self) -> torch.Tensor:
        """``[N + 1, gru_size + 1]``: the output layer's weights and biases."""
        return torch.cat([self.out.weight, self.out.bias.unsqueeze(-1)], dim=-1)
