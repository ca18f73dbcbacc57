"""SINE (Tan et al., WSDM 2021, "Sparse-Interest Network for Sequential Recommendation").

A large pool of L concept prototypes ``C`` [L, D]; each user activates K of them and gets one
interest vector per active concept; an aggregation module predicts the user's next intention and
mixes the K interests into the single vector that scores the next item. Equations (Section 3):

* **Concept activation** (Eq. 1-2): self-attentive pooling ``a = softmax_t(tanh(X W1) W2)``,
  ``z_u = a^T X``; scores ``s^u = C z_u``; ``idx = top-K(s^u)``;
  ``C^u = C[idx] * sigmoid(s^u[idx])`` (the gate lets gradients reach the scores through the
  discrete selection). See ``SINE.activate_concepts``.
* **Intention assignment** (Eq. 3): ``P(k|t) = softmax_k(LayerNorm1(x_t W3) . LayerNorm2(C^u_k))``.
* **Attention weighting** (Eq. 4): one self-attentive layer per active-concept slot k, on the item
  embeddings plus learned positions: ``P(t|k) = softmax_t(tanh((X + P) W_{k,1}) W_{k,2})``.
* **Interest embeddings** (Eq. 5): ``phi_k = LayerNorm3(sum_t P(k|t) P(t|k) x_t)``.
* **Interest aggregation** (Eq. 6-8): intention sequence ``X^ = P^u C^u`` (P^u [n, K] = P(k|t)),
  ``C_apt = LayerNorm4(softmax_t(tanh(X^ W5) W4)^T X^)``, ``e = softmax_k(C_apt . phi_k / tau)``,
  ``v^u = sum_k e_k phi_k``.
* **Training** (Eq. 9-11): next-item loss of ``v^u`` against the item table ``H`` (which also
  embeds the inputs unless ``tie_embeddings=false``) + ``lambda * L_c`` with the covariance regulariser ``L_c = 1/2 (||M||_F^2 -
  ||diag M||_F^2)``, ``M = 1/D (C - C_bar)(C - C_bar)^T`` (``covariance_regularizer``). The
  regulariser is added whenever ``reg_weight != 0``, whatever the next-item loss.

Following the paper (not the authors' TensorFlow code nor the known PyTorch port): Eq. 3 is the
plain product of the two LayerNorms (no cosine / 0.07), P(k|t) does not multiply the attention
logits, Eq. 7-8 aggregate as written, and the regulariser is the covariance one on ``C``. Note
that a product of two LayerNorm outputs is, at unit gains, D times the cosine of the centred
vectors: Eq. 3 runs at an effective temperature 1/D and Eq. 7 at tau/D. At D = 64 and the default
init, e (Eq. 7) starts nearly one-hot (mean entropy 0.015 nats of log 4 = 1.39) and P(k|t) peaked
(0.40 nats); the LayerNorm gains are learned and can soften both.

Library conventions: one user representation per prefix, so training uses one random prefix per
window and step (``layers/prefixes.py``). Padding is masked in every softmax over positions and
positions count back from the newest item, so left padding never changes a representation.

Choices the paper leaves open (fields of ``SINEConfig``):

* ``C_bar`` in ``M`` is the per-concept mean over the D coordinates: ``M`` [L, L] divided by D is
  then the covariance between concepts with the D coordinates as samples (DeCov, the paper's
  reference [5]), and ``L_c`` is 0 exactly when the centred prototypes are mutually orthogonal.
* Eq. 6 reuses the name ``W3`` for its attention projection; read as a clash of names (Eq. 6 pairs
  it with its own ``W4`` as Eq. 1 pairs ``W1`` with ``W2``), it gets its own matrix ``W5`` by
  default; ``share_w3=true`` ties it to Eq. 3's ``W3``.
* ``W_{k,1}`` and ``W_{k,2}`` of Eq. 4 are per slot k (the k-th activated concept, ordered by
  score), as the superscript says; the paper's equations have no biases, and neither does this.
* Positions enter Eq. 4 only (the paper adds them "here"); Eq. 1, 3, 5 and 6 see the item vectors.
* No dropout in the paper; ``dropout`` (default 0) drops input item-vector coordinates.
* The input items are embedded with the table ``H`` that Eq. 9 scores (the encoder's parameters
  "include H"); ``tie_embeddings=false`` gives the inputs their own table. Tied, ``v^u`` is a
  LayerNorm of non-negative mixtures of the input item vectors, so it cannot map an item to a
  different successor the way a Transformer can: on a toy set of cyclic walks (next = last +
  stride; 8 users, d = 16, 100 Adam steps at lr 1e-2) the full-softmax loss went from 3.0 to
  2.3-2.5 tied and to 1.5-1.8 untied (seeds 0-2), where SASRec gets below 0.04.
* Inference: the paper retrieves with the aggregated ``v^u`` (Section 3.3: the aggregator exists to
  pick the interest at inference, where no label is available; tau = 0.1 "to enforce the aggregator
  select the most preferred intention for inference"; the label-aware alternative with K x N
  retrieval is the ablation SINE-label). ``inference=aggregate`` is therefore the default;
  ``inference=interests`` returns the K interests, scored by the max over them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from sigmarec.data.batching import Batch
from sigmarec.models.base import SPLIT_POINT_TRAINING, ModelConfig, SequentialRecommender
from sigmarec.models.layers.dropout import FastDropout
from sigmarec.models.layers.init import init_weights
from sigmarec.models.layers.losses import NextItemLoss, next_item_loss
from sigmarec.models.layers.prefixes import random_prefixes



@dataclass
class SINEConfig(ModelConfig):
    hidden_size: int = 64  # D: items, concepts, interests (paper: 128; 64 is the library's default width)
    n_interests: int = 4  # K active concepts per user (paper Table 3: 4 on MovieLens and Amazon, 8 on Taobao)
    n_concepts: int = 500  # L concept pool (paper Table 3: 500 on Amazon, the benchmarks' domain; 50 ML, 1000 Taobao)
    tau: float = 0.1  # temperature of the aggregation softmax, Eq. 7 (paper: 0.1)
    reg_weight: float = 0.5  # lambda of Eq. 11 on the covariance regulariser (paper: 0.5; 0 switches it off)
    dropout: float = 0.0  # on the input item vectors (the paper uses none)
    loss: NextItemLoss = "ce"  # ce = Eq. 9 full softmax (library default) | sampled = the paper's sampled softmax | bce
    n_negatives: int = 10  # for loss=sampled (paper: 10 on Amazon/Taobao, 5 on MovieLens)
    inference: Literal["aggregate", "interests"] = "aggregate"  # aggregate = v^u of Eq. 8, as the paper retrieves | interests = K vectors, max-scored
    share_w3: bool = False  # Eq. 6 uses Eq. 3's W3 (true) or its own matrix (false: the name read as a clash)
    tie_embeddings: bool = True  # one table H for input items and scored items (paper, Eq. 9); false: separate input table
    init_std: float = 0.02  # truncated-normal std of embeddings, concepts and projections (library default)


def masked_softmax(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis with ``valid`` false entries at exactly 0 (no NaN for all-invalid rows)."""
    return logits.masked_fill(~valid, torch.finfo(logits.dtype).min).softmax(-1)


def covariance_regularizer(concepts: torch.Tensor) -> torch.Tensor:
    """Eq. 10: ``1/2 (||M||_F^2 - ||diag M||_F^2)`` with ``M = 1/D (C - C_bar)(C - C_bar)^T``, ``C`` [L, D],
    ``C_bar`` each concept's mean over its D coordinates; computed in float32 outside autocast."""
    with torch.autocast(concepts.device.type, enabled=False):
        c = concepts.float()
        c = c - c.mean(dim=1, keepdim=True)
        m = c @ c.T / c.shape[1]
        return 0.5 * (m.pow(2).sum() - m.diagonal().pow(2).sum())


class SINE(SequentialRecommender):
    """SINE; see the module docstring. ``user_representation``: ``v^u`` ``[B, D]`` (inference=aggregate)
    or the K interests ``[B, K, D]`` (inference=interests)."""

    config_class = SINEConfig
    train_defaults = SPLIT_POINT_TRAINING

    def __init__(self, cfg: SINEConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        self._check(cfg)
        d, K = cfg.hidden_size, cfg.n_interests
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)  # H: scores items (Eq. 9), and embeds inputs if tied
        self.input_item = None if cfg.tie_embeddings else nn.Embedding(n_items + 1, d, padding_idx=0)
        self.drop = FastDropout(cfg.dropout)
        # Eq. 1-2: concept pool and the self-attentive pooling that activates it
        self.concepts = nn.Parameter(torch.empty(cfg.n_concepts, d))
        self.w1 = nn.Linear(d, d, bias=False)
        self.w2 = nn.Linear(d, 1, bias=False)
        # Eq. 3: intention assignment
        self.w3 = nn.Linear(d, d, bias=False)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        # Eq. 4-5: one self-attentive layer per active slot, on items + positions
        self.pos = nn.Embedding(max_len, d)
        self.wk1 = nn.Parameter(torch.empty(K, d, d))
        self.wk2 = nn.Parameter(torch.empty(K, d))
        self.ln3 = nn.LayerNorm(d)
        # Eq. 6: next-intention prediction
        self.w5 = None if cfg.share_w3 else nn.Linear(d, d, bias=False)
        self.w4 = nn.Linear(d, 1, bias=False)
        self.ln4 = nn.LayerNorm(d)
        init_weights(self, cfg.init_std)
        std = cfg.init_std
        for p in (self.concepts, self.wk1, self.wk2):
            nn.init.trunc_normal_(p, std=std, a=-2 * std, b=2 * std)
        with torch.no_grad():
            for table in (self.item, self.input_item):
                if table is not None:
                    table.weight[0].zero_()

    @staticmethod
    def _check(cfg: SINEConfig) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"model.{name} {why}, got {getattr(cfg, name)!r}")

        if cfg.hidden_size < 1:
            raise bad("hidden_size", "must be >= 1")
        if cfg.n_interests < 1:
            raise bad("n_interests", "must be >= 1")
        if cfg.n_concepts < cfg.n_interests:
            raise ValueError(f"model.n_interests ({cfg.n_interests}) must not exceed model.n_concepts ({cfg.n_concepts}): "
                             "top-K activation picks K of the L concepts")
        if not cfg.tau > 0:
            raise bad("tau", "must be > 0")
        if cfg.reg_weight < 0:
            raise bad("reg_weight", "must be >= 0")
        if cfg.loss == "sampled" and cfg.n_negatives < 1:
            raise bad("n_negatives", "must be >= 1 with loss=sampled")

    # ---- sparse-interest extraction (Section 3.2) ----
    def _embed(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.shape[1] > self.max_len:
            raise ValueError(f"sequence length {inputs.shape[1]} exceeds max_len {self.max_len}")
        table = self.item if self.input_item is None else self.input_item
        return self.drop(table(inputs))  # padding rows stay 0

    def _activate(self, x: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
        a = masked_softmax(self.w2(torch.tanh(self.w1(x))).squeeze(-1), valid)  # Eq. 1, [B, n]
        z = torch.einsum("bn,bnd->bd", a, x)
        scores = z @ self.concepts.T  # s^u [B, L]
        top, idx = scores.topk(self.cfg.n_interests, dim=1)  # rank(s^u, K), sorted by score
        gates = torch.sigmoid(top)
        return {"scores": scores, "idx": idx, "gates": gates, "concepts": self.concepts[idx] * gates.unsqueeze(-1)}

    def activate_concepts(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eq. 1-2: ``scores`` s^u [B, L], ``idx`` of the K active concepts [B, K] (largest score first),
        their ``gates`` sigmoid(s^u[idx]) [B, K] and the gated prototypes ``concepts`` C^u [B, K, D]."""
        return self._activate(self._embed(inputs), inputs > 0)

    def encode(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything from left-padded ``inputs`` [B, n]: the activation of ``activate_concepts`` plus
        ``assign`` P(k|t) [B, n, K], ``attention`` P(t|k) [B, K, n], ``interests`` phi [B, K, D],
        ``intention`` C_apt [B, D], ``weights`` e [B, K] and ``user`` v^u [B, D]."""
        c = self.cfg
        valid = inputs > 0
        n = inputs.shape[1]
        x = self._embed(inputs)
        out = self._activate(x, valid)
        cu = out["concepts"]
        # Eq. 3
        assign = torch.einsum("bnd,bkd->bnk", self.ln1(self.w3(x)), self.ln2(cu)).softmax(-1)
        # Eq. 4: positions count back from the newest item (last column = row max_len - 1)
        h = torch.tanh(torch.einsum("bnd,kde->bkne", x + self.pos.weight[self.max_len - n:], self.wk1))
        attention = masked_softmax(torch.einsum("bkne,ke->bkn", h, self.wk2), valid.unsqueeze(1))
        # Eq. 5
        interests = self.ln3(torch.einsum("bkn,bnd->bkd", assign.transpose(1, 2) * attention, x))
        # Eq. 6
        xhat = torch.einsum("bnk,bkd->bnd", assign, cu)
        proj = self.w3 if self.w5 is None else self.w5
        b = masked_softmax(self.w4(torch.tanh(proj(xhat))).squeeze(-1), valid)
        intention = self.ln4(torch.einsum("bn,bnd->bd", b, xhat))
        # Eq. 7-8 (elementwise products: under autocast these stay in LayerNorm's float32)
        weights = ((interests * intention.unsqueeze(1)).sum(-1) / c.tau).softmax(-1)
        user = (weights.unsqueeze(-1) * interests).sum(1)
        out.update(assign=assign, attention=attention, interests=interests, intention=intention, weights=weights, user=user)
        return out

    # ---- training (Section 3.4) ----
    def covariance_regularizer(self) -> torch.Tensor:
        """L_c of Eq. 10 on the whole concept pool."""
        return covariance_regularizer(self.concepts)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.cfg
        sample = random_prefixes(batch.inputs, batch.targets)  # global RNG: the trainer seeds it per epoch
        prefix = sample.prefix
        width = max(int((prefix > 0).sum(1).max()), 1) if prefix.shape[0] else 1
        prefix = prefix[:, prefix.shape[1] - width:]  # drop all-padding columns (padding-invariant model)
        user = self.encode(prefix)["user"]
        rec = next_item_loss(user, sample.next_item, self.item.weight, c.loss, c.n_negatives)
        reg = self.covariance_regularizer() if c.reg_weight != 0 else torch.zeros((), device=user.device)
        return {"loss": rec + c.reg_weight * reg, "recon": rec.detach(), "reg": reg.detach()}

    # ---- inference ----
    def user_representation(self, inputs: torch.Tensor) -> torch.Tensor:
        out = self.encode(inputs)
        return out["user"] if self.cfg.inference == "aggregate" else out["interests"]

    def item_embeddings(self) -> torch.Tensor:
        return self.item.weight
