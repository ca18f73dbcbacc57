"""DSS: "Disentangled Self-Supervision in Sequential Recommenders" (Ma, Zhou, Yang, Cui, Wang, Zhu; KDD 2020).

A sequence encoder that outputs K disentangled intention vectors ``phi^(k)`` per sequence, trained
with two losses on one random split point per training window (Section 4.2.2; the paper samples
(u, t) pairs uniformly, here each window of a batch gets one split drawn uniformly among its
targets by ``layers/prefixes.random_prefixes``):

* **seq2item** (Eq. 6): the K vectors of the earlier sequence ``x_1:t`` predict the next item
  ``x_t+1``; an item's score is the max over the K intentions. ``loss="inbatch"`` is Eq. 6 as
  written (max over K in the numerator, all in-batch next items x all K intentions in the
  denominator, 1/sqrt(D) scale); ``ce`` (default), ``bce`` and ``sampled`` score items by
  ``max_k <phi^(k), h_i>`` the way the library ranks them (see ``seq2item_loss``).
* **seq2seq** (Eq. 3): latent self-supervision. The reversed future ``x_T:t+1`` is encoded by the
  same encoder (with its own ``beta`` table) and, for every (sample, category), the earlier
  sequence's ``phi^(k)`` must pick its own future's ``phi^(k)`` among all (sample', k') future
  encodings of the batch (in-batch softmax, 1/sqrt(D) scale). Only the (sample, k) losses at or
  below the ``lambda``-quantile of the batch are kept ("selecting samples of high confidence",
  ``sum L 1[L <= tau]``; ``quantile_select``): pairs whose input and future share an intention.
* The objective is their sum ("overall training loss"), ``seq2seq_weight`` scaling the second term.

Encoder (Section 4.2.3):

* backbone: single-head causal SASRec (``CausalEncoder``) over item embeddings shared with the
  output table; its outputs ``z_i`` are the per-position intentions;
* intention clustering: ``p_k|i = softmax_k(LN1(z_i) . LN2(c_k) / sqrt(D))`` with K learned
  prototypes ``c_k``;
* intention weighting: ``p_i = softmax_i(key_i . query / sqrt(D))`` over the real
  positions, ``key~_i = LN3(alpha_i + z_i)``, ``key_i = key~_i + ReLU(W key~_i + b)``,
  ``query = LN4(alpha_t + z_t + b')``, with this layer's own position table ``alpha``;
* intention aggregation: ``phi^(k) = LN5(beta_k + sum_i p_k|i p_i z_i)``, with one ``beta`` table for
  input sequences and another for reversed future sequences.

Eq. 3 and Eq. 6 are the paper's numbers; the other parts go by the paper's headings.
Choices the paper leaves open are fields of ``DSSConfig`` (defaults and reasons there). The
ablation "remove seq2seq training" (Table 2, variant 1) is ``seq2seq=false``.
``user_representation`` returns the K intention vectors ``[B, K, D]`` of the input sequence; items
are ranked by the max over intentions of the dot product (the base class's ``score_all``).
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from sigmarec.data.batching import Batch
from sigmarec.models.base import SPLIT_POINT_TRAINING, ModelConfig, SequentialRecommender
from sigmarec.models.layers.init import init_weights
from sigmarec.models.layers.prefixes import random_prefixes
from sigmarec.models.layers.transformer import CausalEncoder

Seq2ItemLoss = Literal["ce", "bce", "sampled", "inbatch"]
SEQ2ITEM_LOSSES: tuple[str, ...] = typing.get_args(Seq2ItemLoss)


@dataclass
class DSSConfig(ModelConfig):
    # --- encoder ---
    hidden_size: int = 64  # D = 64: the library's default, so full-ranking comparisons with SASRec share a width (paper tunes D)
    n_layers: int = 2  # self-attention blocks of the SASRec backbone: 2 = SASRec's setting (paper tunes it by random search)
    n_heads: int = 1  # 1: the paper builds on the single-head SASRec (Section 5.4); more heads do not disentangle by themselves
    dropout: float = 0.5  # backbone hidden dropout: 0.5 = the library's SASRec default (paper tunes it); none in the disentangling layer
    attn_dropout: float = 0.5  # backbone attention dropout, as the library's SASRec
    n_interests: int = 4  # K = 4, the middle of the paper's grid {1, 2, 4, 8}
    # --- seq2seq self-supervision (Eq. 3 + sample selection) ---
    seq2seq: bool = True  # true: the paper's method; false: ablation "remove seq2seq training" (seq2item only, Table 2 (1))
    seq2seq_weight: float = 1.0  # factor on the seq2seq term: 1.0 = the paper's objective, the plain sum of both losses
    quantile: float = 0.5  # lambda = 0.5 (middle of the paper's grid 0.1..0.9): keep the seq2seq losses at or below the
    # lambda-quantile of the batch's B x K losses, i.e. the ceil(lambda B K) smallest (ties at the threshold kept: L <= tau)
    seq2seq_reduce: Literal["batch", "kept"] = "batch"  # batch = sum of kept losses / B, which keeps the paper's ratio of the two summed losses
    # (L_s2s sums over B x K kept pairs, L_s2i over B samples) | kept = mean over the kept losses
    seq2seq_temperature: float = 0.0  # seq2seq logits are divided by this; 0 = sqrt(D), the paper's 1/sqrt(D) in Eq. 3
    # --- seq2item (Eq. 6) ---
    loss: Seq2ItemLoss = "ce"  # ce = full softmax over all items of max_k <phi_k, h_i> (default: the library's full-ranking
    # convention) | inbatch = Eq. 6 (max over K in the numerator, in-batch next items x K in the denominator) |
    # bce = one uniform negative per sample | sampled = softmax over the target and n_negatives uniform negatives
    n_negatives: int = 100  # for loss=sampled: uniform negatives shared by the batch (library convention)
    seq2item_temperature: float = 0.0  # seq2item logits are divided by this; 0 = the kind's own convention: sqrt(D) for
    # inbatch (Eq. 6), 1 for ce/bce/sampled (as the library's SASRec; rankings do not depend on it)
    inbatch_mask_duplicates: bool = True  # loss=inbatch: another sample with the same next item is not a negative
    # (the paper does not say; counting the positive as a negative only adds noise)
    init_std: float = 0.02  # truncated-normal std of embeddings and linear layers (SASRec's init); prototypes draw N(0, 1)
    # since LN2 normalises them anyway


def quantile_select(losses: torch.Tensor, lam: float) -> torch.Tensor:
    """Boolean mask of the losses at or below the ``lam``-quantile of ``losses`` (any shape):
    the paper's high-confidence selection ``1[L <= tau]``.

    The threshold tau is the ``ceil(lam * n)``-th smallest of the n values, so ``lam = 0.3`` on 100
    distinct losses keeps exactly the 30 smallest; ties with tau are kept (``L <= tau``). The
    selection carries no gradient.
    """
    if not 0.0 < lam <= 1.0:
        raise ValueError(f"model.quantile (lambda) must be in (0, 1], got {lam}")
    flat = losses.detach().reshape(-1)
    n = flat.numel()
    if n == 0:
        return torch.zeros_like(losses, dtype=torch.bool)
    k = min(max(math.ceil(lam * n - 1e-9), 1), n)  # the tolerance keeps 0.3 * 100 = 30.000000000000004 at 30
    tau = flat.float().kthvalue(k).values
    return losses.detach().float() <= tau


def max_interest_scores(phi: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """``max_k <phi[m, k], items[s]>``: ``phi`` [M, K, D], ``items`` [S, D] -> [M, S]."""
    return torch.einsum("mkd,sd->mks", phi, items).amax(dim=1)


def seq2item_loss(phi: torch.Tensor, targets: torch.Tensor, items: torch.Tensor, kind: str, n_negatives: int = 100,
                  mask_duplicates: bool = True) -> torch.Tensor:
    """Mean next-item loss of K intention vectors ``phi`` [M, K, D] (already divided by the temperature)
    for ``targets`` [M] (all > 0); ``items`` [N + 1, D] (row 0 = padding).

    Every candidate item is scored by its max over the K intentions, as at ranking time:

    - ``ce``: cross-entropy over all N items;
    - ``bce``: target vs one uniform negative per sample (binary cross-entropy);
    - ``sampled``: softmax over the target and ``n_negatives`` uniform negatives shared by the batch
      (a negative equal to the row's target is masked);
    - ``inbatch`` (Eq. 6): ``-max_k s(h_t, phi_k) + log sum_{m'} sum_k' exp s(h_m', phi_k')`` over the
      batch's next items ``h_m'`` (its own included); other samples with the same next item are left
      out of the denominator when ``mask_duplicates``.
    """
    n_items = items.shape[0] - 1
    if kind == "ce":
        return F.cross_entropy(max_interest_scores(phi, items[1:]).float(), targets - 1)
    if kind == "bce":
        neg = torch.randint(1, n_items + 1, targets.shape, device=targets.device)
        neg = torch.where(neg == targets, neg % n_items + 1, neg)
        pos_logit = (phi * items[targets].unsqueeze(1)).sum(-1).amax(1)
        neg_logit = (phi * items[neg].unsqueeze(1)).sum(-1).amax(1)
        return F.softplus(-pos_logit.float()).mean() + F.softplus(neg_logit.float()).mean()
    if kind == "sampled":
        neg = torch.randint(1, n_items + 1, (n_negatives,), device=targets.device)
        pos_logit = (phi * items[targets].unsqueeze(1)).sum(-1).amax(1, keepdim=True)
        neg_logit = max_interest_scores(phi, items[neg]).masked_fill(neg[None, :] == targets[:, None], float("-inf"))
        return F.cross_entropy(torch.cat([pos_logit, neg_logit], dim=1).float(), torch.zeros_like(targets))
    if kind == "inbatch":
        M = targets.shape[0]
        s = torch.einsum("mkd,nd->mkn", phi, items[targets]).float()  # [M, K, M]: sample m's intention k vs next item of n
        eye = torch.eye(M, dtype=torch.bool, device=phi.device)
        pos = s.diagonal(dim1=0, dim2=2).amax(0)  # [M]: max_k s[m, k, m]
        if mask_duplicates:
            dup = (targets[:, None] == targets[None, :]) & ~eye  # [M, M]
            s = s.masked_fill(dup.unsqueeze(1), float("-inf"))
        return (torch.logsumexp(s.reshape(M, -1), dim=1) - pos).mean()
    raise ValueError(f"model.loss must be one of {SEQ2ITEM_LOSSES}, got {kind!r}")


def seq2seq_losses(phi_input: torch.Tensor, phi_future: torch.Tensor) -> torch.Tensor:
    """Eq. 3 for every (sample, category): ``[B, K]`` losses from ``phi_input``, ``phi_future`` [B, K, D]
    (already divided by the temperature on one side). Sample b's category k is scored against all
    B x K future encodings of the batch; the target is its own future's category k."""
    B, K, _ = phi_input.shape
    logits = torch.einsum("bkd,cjd->bkcj", phi_input, phi_future).reshape(B * K, B * K).float()
    target = torch.arange(B * K, device=phi_input.device)
    return F.cross_entropy(logits, target, reduction="none").view(B, K)


class DisentangleLayer(nn.Module):
    """The intention-disentanglement layer (clustering, weighting, aggregation) on backbone outputs ``z`` [B, L, D].

    ``beta`` ([K, D] or [B, K, D]) is passed in, since input and reversed-future sequences use
    different tables. Positions count back from the newest column, as in ``CausalEncoder``, so left
    padding never changes the result; padding gets zero weight in ``p_i``.
    """

    def __init__(self, d: int, k: int, max_len: int) -> None:
        super().__init__()
        self.prototypes = nn.Parameter(torch.empty(k, d))  # c_k
        self.norm_z = nn.LayerNorm(d)  # LN1
        self.norm_c = nn.LayerNorm(d)  # LN2
        self.pos = nn.Embedding(max_len, d)  # alpha_i: this layer's own position table
        self.norm_key = nn.LayerNorm(d)  # LN3
        self.key_ff = nn.Linear(d, d)  # W, b
        self.query_bias = nn.Parameter(torch.zeros(d))  # b'
        self.norm_query = nn.LayerNorm(d)  # LN4
        self.norm_out = nn.LayerNorm(d)  # LN5 (shared by input and future encodings; only beta differs)
        self.scale = d**-0.5
        self.max_len = max_len

    def category_probs(self, z: torch.Tensor) -> torch.Tensor:
        """Intention clustering: ``p_k|i`` [B, L, K]."""
        return torch.softmax(self.norm_z(z) @ self.norm_c(self.prototypes).T * self.scale, dim=-1)

    def position_weights(self, z: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """Intention weighting: ``p_i`` [B, L], zero on padding (the newest column always counts, so a row of
        padding alone still gives finite weights)."""
        L = inputs.shape[1]
        alpha = self.pos.weight[self.max_len - L:]  # [L, D]; the newest column uses row max_len - 1
        key = self.norm_key(alpha + z)
        key = key + F.relu(self.key_ff(key))
        query = self.norm_query(alpha[-1] + z[:, -1] + self.query_bias)  # [B, D]
        logits = torch.einsum("bld,bd->bl", key, query).float() * self.scale
        valid = inputs > 0
        valid[:, -1] = True
        return torch.softmax(logits.masked_fill(~valid, float("-inf")), dim=-1).to(z.dtype)

    def forward(self, z: torch.Tensor, inputs: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """Intention aggregation: ``phi`` [B, K, D]."""
        w = self.category_probs(z) * self.position_weights(z, inputs).unsqueeze(-1)  # [B, L, K]: p_k|i p_i
        return self.norm_out(beta + torch.einsum("blk,bld->bkd", w, z))


class DSS(SequentialRecommender):
    """DSS; see the module docstring. ``user_representation`` -> ``[B, K, D]``."""

    config_class = DSSConfig
    train_defaults = SPLIT_POINT_TRAINING

    def __init__(self, cfg: DSSConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        if cfg.n_interests < 1:
            raise ValueError(f"model.n_interests (K) must be >= 1, got {cfg.n_interests}")
        if not 0.0 < cfg.quantile <= 1.0:
            raise ValueError(f"model.quantile (lambda) must be in (0, 1], got {cfg.quantile}; "
                             "lambda = 0 (no seq2seq samples) is model.seq2seq=false")
        for name in ("seq2seq_temperature", "seq2item_temperature"):
            if getattr(cfg, name) < 0:
                raise ValueError(f"model.{name} must be >= 0 (0 = the paper's default), got {getattr(cfg, name)}")
        if cfg.seq2seq_weight < 0:
            raise ValueError(f"model.seq2seq_weight must be >= 0, got {cfg.seq2seq_weight}")
        if cfg.n_negatives < 1:
            raise ValueError(f"model.n_negatives must be >= 1, got {cfg.n_negatives}")
        d, K = cfg.hidden_size, cfg.n_interests
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)  # H, shared by inputs and seq2item targets
        self.encoder = CausalEncoder(d, max_len, cfg.n_layers, cfg.n_heads, cfg.dropout, cfg.attn_dropout)
        self.disentangle = DisentangleLayer(d, K, max_len)
        self.beta_input = nn.Parameter(torch.empty(K, d))  # beta_k for earlier (input) sequences
        self.beta_future = nn.Parameter(torch.empty(K, d))  # beta_k for reversed future sequences
        init_weights(self, cfg.init_std)
        with torch.no_grad():
            self.item.weight[0].zero_()
            nn.init.normal_(self.disentangle.prototypes)
            for beta in (self.beta_input, self.beta_future):
                nn.init.trunc_normal_(beta, std=cfg.init_std, a=-2 * cfg.init_std, b=2 * cfg.init_std)
        self.seq2seq_temperature = cfg.seq2seq_temperature or d**0.5
        self.seq2item_temperature = cfg.seq2item_temperature or (d**0.5 if cfg.loss == "inbatch" else 1.0)

    # ---- encoder ----
    def encode(self, inputs: torch.Tensor, future: bool = False) -> torch.Tensor:
        """``phi`` [B, K, D] of left-padded sequences; ``future=True`` uses the reversed-future ``beta``."""
        beta = self.beta_future if future else self.beta_input
        return self.disentangle(self._backbone(inputs), inputs, beta)

    def _backbone(self, inputs: torch.Tensor) -> torch.Tensor:
        """SASRec: item vectors scaled by sqrt(D) + positions -> causal blocks -> ``z`` [B, L, D]."""
        return self.encoder(self.item(inputs) * self.cfg.hidden_size**0.5, inputs)

    # ---- training ----
    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.cfg
        s = random_prefixes(batch.inputs, batch.targets)
        B = s.prefix.shape[0]
        if c.seq2seq:
            # one backbone pass over inputs and futures together; each half gets its own beta table
            both = torch.cat([s.prefix, s.future])
            beta = torch.cat([self.beta_input.expand(B, -1, -1), self.beta_future.expand(B, -1, -1)])
            phi_all = self.disentangle(self._backbone(both), both, beta)
            phi, phi_future = phi_all[:B], phi_all[B:]
        else:
            phi = self.encode(s.prefix)
        s2i = seq2item_loss(phi / self.seq2item_temperature, s.next_item, self.item.weight, c.loss, c.n_negatives,
                            c.inbatch_mask_duplicates)
        zero = torch.zeros((), device=phi.device)
        s2s, kept = zero, zero
        if c.seq2seq:
            losses = seq2seq_losses(phi / self.seq2seq_temperature, phi_future)  # [B, K]
            keep = quantile_select(losses, c.quantile)
            total_kept = (losses * keep).sum()
            s2s = total_kept / B if c.seq2seq_reduce == "batch" else total_kept / keep.sum().clamp_min(1)
            kept = keep.float().mean()
        total = s2i + c.seq2seq_weight * s2s
        # "recon" repeats seq2item under the name the library's generic tests read as the next-item term
        return {"loss": total, "seq2item": s2i.detach(), "seq2seq": s2s.detach(), "kept": kept, "recon": s2i.detach()}

    # ---- inference ----
    def user_representation(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.encode(inputs)

    def item_embeddings(self) -> torch.Tensor:
        return self.item.weight
