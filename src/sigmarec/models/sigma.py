"""SIGMA (Li et al.): a sequence VAE whose prior is a Gaussian mixture of the user's interests.

Two VAEs are trained jointly on every prefix ``s_1:t`` of each training sequence (Section 3):

* **MIE-VAE** (Section 3.2, Eq. 1-5): K unit-norm category embeddings ``g_j``; item-to-category
  probabilities ``a_i^j``; soft interests ``h_t^j`` and intensities ``alpha_t^j``; hard interests
  ``r_t^j`` from a GRU over each per-category subsequence; interest means ``m = (h + r) / 2``,
  log-variances ``MLP([g_j || m_t^j])``; samples ``x_t^j`` decoded by an MLP into item space and
  scored by the max over interests; KL to N(0, I) (Eq. 4).
* **SGM-VAE** (Section 3.3, Eq. 6-7): causal Transformer encoders for ``mu_t`` and
  ``log sigma_t^2``, a causal Transformer decoder on ``z_t``, a softmax over all items, and the
  Monte Carlo KL to the mixture ``sum_j alpha_t^j N(m_t^j, omega_t^j^2)``.

Loss (Section 3.4): ``L = -(T_recon - lambda T_KL) - beta1 (T_recon^MIE - T_KL^MIE) + beta2 L_orth``
with ``lambda`` annealed linearly per step to a cap. Inference scores all items from the decoder
output on ``mu`` at the last position.

Choices the paper leaves open are fields of ``SIGMAConfig`` (defaults documented there). Ablations
(Table 2) are one setting away: ``prior=standard`` (w/o MIE-VAE), ``sgm=false`` (w/o SGM-VAE),
``beta2=0`` (w/o Orth).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from sigmarec.config import check
from sigmarec.data.batching import Batch
from sigmarec.models.base import ModelConfig, SequentialRecommender
from sigmarec.models.layers.anneal import annealed_weight
from sigmarec.models.layers.dropout import FastDropout
from sigmarec.models.layers.gaussian import kl_standard_normal, mixture_kl_mc, mixture_kl_variational
from sigmarec.models.layers.init import init_weights
from sigmarec.models.layers.interests import (
    HardInterestGRU,
    category_probs,
    hard_assignment,
    interest_intensities,
    soft_interests,
)
from sigmarec.models.layers.losses import NextItemLoss, next_item_loss
from sigmarec.models.layers.transformer import CausalEncoder


@dataclass
class SIGMAConfig(ModelConfig):
    # --- sequence VAE (SGM-VAE) ---
    hidden_size: int = 64  # d: items, interests and latents (authors: 128)
    n_layers: int = 1  # Transformer layers in each encoder and in the decoder (authors: 1)
    n_heads: int = 2  # (authors: 4)
    dropout: float = 0.3  # hidden dropout (authors: 0.3)
    attn_dropout: float = 0.3  # (authors: 0.0 on Beauty, 0.3 on Office/Toys)
    decoder_input_dropout: float = 0.0  # dropout on z entering the decoder; z rides the residual stream to the
    # output, so dropping its coordinates there (as on item embeddings) cuts what the decoder can pass on
    loss: NextItemLoss = "ce"  # reconstruction: ce = Eq. 7 full softmax | bce = authors' code, one sampled negative | sampled
    n_negatives: int = 100  # for loss=sampled
    temperature: float = 1.0  # tau of Eq. 7
    prior: Literal["mixture", "standard"] = "mixture"  # mixture (SIGMA) | standard (ablation "w/o MIE-VAE": N(0, I) prior, no MIE-VAE)
    sgm: bool = True  # false: ablation "w/o SGM-VAE", MIE-VAE trained alone and recommending by max over interests
    posterior_init_logvar: float = -4.0  # initial bias of log sigma^2 (last LayerNorm of its encoder); at 0 the
    # noise equals the signal, the posterior collapses and Office NDCG@20 stalls near .05 (SASRec: .095)
    kl_cap: float = 0.02  # lambda's ceiling (authors: 0.2). Validation NDCG@20, Office: .083 (0.2), .092 (0.05), .095
    # (0.02); Beauty: .056, .067, .076 (0.02, at epoch 24): at 0.2 the KL squeezes z to a few nats and reconstruction stalls
    anneal_steps: int = 10000  # lambda = min(kl_cap, step / anneal_steps) (authors: 10k Beauty, 20k Office)
    detach_prior: bool = True  # the mixture KL trains the posterior only, the MIE-VAE learns from its own ELBO; with
    # false, the KL's pull of the interest means towards z reshapes the shared item table and Office NDCG@20 at epoch 8
    # drops from .043 to .023 (lambda is still ~.01 then). That was measured with mie_item_grad=true; with false the KL
    # reaches the categories, the hard-interest GRU and the omega MLP but never the item table
    prior_map: Literal["none", "linear", "norm"] = "none"  # how the interest means enter z-space before the mixture KL. none = m as in the paper:
    # sum-pooled sqrt(d)-scaled item vectors (norm 0.5-3) against mu, the output of a LayerNorm (norm ~sqrt(d)), so z
    # sits outside every component and the KL is one fixed pull whatever alpha says | linear = a learned Linear(d, d),
    # identity-initialised (the prior equals "none" at step 0) | norm = a learned LayerNorm, the normalisation mu ends
    # with, so both live at one scale from the first step (not identity-initialisable)
    prior_logvar_shift: float = 0.0  # with prior_map != none or a non-zero value: a learned per-dimension shift added to log omega^2 in the
    # SGM prior only, initialised at this value. omega is fitted to N(0, I) by the MIE-VAE's own KL (log omega^2 ~ 0)
    # while log sigma^2 starts at -4, so ~80 of the ~100 nats of mixture KL is that variance mismatch, nearly the same
    # under either prior; a shift near posterior_init_logvar leaves the KL to the means
    prior_kl: Literal["mc", "variational"] = "mc"  # estimator of the mixture KL: mc = one-sample Monte Carlo (Eq. 6,
    # the authors') | variational = -log sum_j alpha_j exp(-KL_j), deterministic, with the variance part of each
    # component's KL weighted by prior_kl_var_weight (issue 15: separate the variance mismatch from the mean pull)
    prior_kl_var_weight: float = 1.0  # with prior_kl=variational: weight of the variance part of each component KL
    # (1 = the full KL; 0 = the mean pull alone, scaled by omega; the posterior's variance then has no KL pressure)
    prior_shuffle: bool = False  # CONTROL, not a model: each position's mixture (means, variances, alpha) is taken from
    # another sequence of the batch at the same prefix length (or its longest, if shorter). A gain that survives this
    # is not from the user's own interests. A batch of one sequence cannot be shuffled and keeps its own prior
    # --- interests (MIE-VAE) ---
    n_interests: int = 8  # K categories (authors: 8)
    category_tau: float = 0.1  # tau of a_i^j (not given in the paper)
    beta1: float = 0.1  # weight of the MIE-VAE ELBO
    mie_kl_reduce: Literal["mean", "sum"] = "mean"  # T_KL^MIE per position: mean over the K x d terms | sum (Eq. 4 as written, which
    # outweighs the one-item likelihood 100-fold at K=8, d=64 and collapses the interests to N(0, I))
    beta2: float = 1.0  # weight of L_orth (0 = ablation "w/o Orth")
    orth: Literal["frobenius", "offdiag"] = "frobenius"  # frobenius = ||G G^T - I||_F^2 / K^2 (authors' code) | offdiag = sum_{i!=j} g_i^T g_j (paper)
    soft_pool: Literal["sum", "mean"] = "sum"  # sum = h_t^j of the paper | mean = that sum divided by sum_i a_i^j
    hard_interests: bool = True  # false: m = h (soft interests only)
    hard_warmup_epochs: int = 0  # hard interests switch on after this many epochs (authors: 30)
    hard_assignment: Literal["gumbel", "argmax"] = "gumbel"  # gumbel = straight-through Gumbel-softmax (authors) | argmax
    gumbel_tau: float = 1.0
    gru_layers: int = 2  # hard-interest GRU (authors: 2 layers, no bias)
    gru_bias: bool = False
    omega_hidden: list[int] = field(default_factory=lambda: [128])  # MLP([g||m]) -> log omega^2 (authors: [256, 512, 256])
    omega_init_logvar: float = 0.0  # initial bias of log omega^2 (at -4 the prior's narrow components pull mu hard)
    mie_negatives: int = 256  # MIE likelihood: softmax over the target and this many in-batch targets; 0 = all items
    mie_temperature: float = 0.1  # epsilon of Eq. 5's softmax (authors: 0.1)
    mie_item_grad: bool = False  # true: the MIE-VAE's likelihood also trains the shared item table. Its cosine
    # softmax at 0.1 sends large gradients into the small item vectors and slowed the SGM-VAE (Office valid NDCG@20
    # at epochs 5/10/15: .029/.052/.064 with, .047/.061/.069 without; NMI on synthetic rose too). Ignored if sgm=false
    mie_cosine: bool = True  # Eq. 5 on L2-normalised interests and items (a temperature of 0.1 presumes unit vectors)
    init_std: float = 0.02

    def __post_init__(self) -> None:
        super().__post_init__()
        check("model.prior_kl_var_weight", math.isfinite(self.prior_kl_var_weight) and self.prior_kl_var_weight >= 0,
              "a number >= 0", self.prior_kl_var_weight)


def mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    """Linear layers with ReLU and dropout between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers += [nn.ReLU(), FastDropout(dropout)]
    return nn.Sequential(*layers)


def orthogonality_loss(g: torch.Tensor, form: str) -> torch.Tensor:
    """``L_orth`` on unit-norm categories ``g`` [K, d]: squared Frobenius distance of ``G G^T`` from I
    over K^2, or the paper's sum of off-diagonal inner products."""
    gram = g @ g.T
    k = g.shape[0]
    if form == "frobenius":
        return (gram - torch.eye(k, device=g.device)).pow(2).sum() / k**2
    if form == "offdiag":
        return gram.sum() - gram.diagonal().sum()
    raise ValueError(f"orth must be 'frobenius' or 'offdiag', got {form!r}")


def prior_mean_map(kind: str, d: int) -> nn.Module:
    """The map of interest means into z-space (``SIGMAConfig.prior_map``): identity, an identity-initialised
    ``Linear(d, d)`` or a ``LayerNorm(d)``."""
    if kind == "none":
        return nn.Identity()
    if kind == "linear":
        lin = nn.Linear(d, d)
        with torch.no_grad():
            lin.weight.copy_(torch.eye(d))
            lin.bias.zero_()
        return lin
    if kind == "norm":
        return nn.LayerNorm(d)
    raise ValueError(f"model.prior_map must be one of ('none', 'linear', 'norm'), got {kind!r}")


def shuffled_sources(valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For the shuffled-prior control: ``(rows, cols)`` ``[B, L]`` naming, for every position of the
    left-padded batch, a position of ANOTHER sequence with the same prefix length (clamped to that
    sequence's length). Sequences are permuted by a random derangement (a random cyclic order, each
    sequence taking the next one's prior), so no sequence keeps its own; with B = 1 nothing moves."""
    B, L = valid.shape
    lengths = valid.sum(1)
    order = torch.randperm(B, device=valid.device)
    src = torch.empty_like(order)
    src[order] = order.roll(-1)  # b -> the sequence after it in the random cycle (never b itself when B > 1)
    col = torch.arange(L, device=valid.device).expand(B, L)
    prefix = (col - (L - lengths).unsqueeze(1) + 1).clamp_min(1)  # this position's prefix length (>= 1)
    n_src = lengths[src].unsqueeze(1)
    cols = L - n_src + torch.minimum(prefix, n_src) - 1
    return src.unsqueeze(1).expand(B, L), cols.clamp_min(0)


class SIGMA(SequentialRecommender):
    """SIGMA; see the module docstring. ``user_representation`` is the decoded ``mu`` at the last
    position (``[B, d]``), or the K decoded interests ``[B, K, d]`` when ``sgm=false``."""

    config_class = SIGMAConfig

    def __init__(self, cfg: SIGMAConfig, n_items: int, max_len: int) -> None:
        super().__init__(cfg, n_items, max_len)
        if not cfg.sgm and cfg.prior == "standard":
            raise ValueError("model.sgm=false with model.prior=standard leaves no model: drop one of the two ablations")
        d, K = cfg.hidden_size, cfg.n_interests
        self.item = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.use_mie = cfg.prior == "mixture"
        if cfg.sgm:
            def enc(input_dropout: float | None = None) -> CausalEncoder:
                return CausalEncoder(d, max_len, cfg.n_layers, cfg.n_heads, cfg.dropout, cfg.attn_dropout, input_dropout=input_dropout)

            self.enc_mu, self.enc_logvar, self.decoder = enc(), enc(), enc(cfg.decoder_input_dropout)
        if self.use_mie:
            self.categories = nn.Parameter(torch.randn(K, d))
            self.hard = HardInterestGRU(d, cfg.gru_layers, cfg.gru_bias) if cfg.hard_interests else None
            self.omega = mlp([2 * d, *cfg.omega_hidden, d], cfg.dropout)
            self.interest_decoder = mlp([d, d, d], cfg.dropout)
            if cfg.sgm:
                self.prior_mean_map = prior_mean_map(cfg.prior_map, d)
                learned = cfg.prior_map != "none" or cfg.prior_logvar_shift != 0
                self.prior_logvar_shift = nn.Parameter(torch.full((d,), float(cfg.prior_logvar_shift))) if learned else None
        # truncated-normal init for the item table and Transformers (as SASRec); the MIE-VAE's MLPs and
        # GRU keep PyTorch's fan-in init, since std-0.02 weights in a stack of MLPs starve its gradients
        init_weights(self.item, cfg.init_std)
        if cfg.sgm:
            for module in (self.enc_mu, self.enc_logvar, self.decoder):
                init_weights(module, cfg.init_std)
        with torch.no_grad():
            self.item.weight[0].zero_()
            if self.use_mie:
                self.omega[-1].bias.fill_(cfg.omega_init_logvar)
            if cfg.sgm:
                self.enc_logvar.norm.bias.fill_(cfg.posterior_init_logvar)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("hard_on", torch.tensor(cfg.hard_interests and cfg.hard_warmup_epochs == 0))

    # ---- schedules ----
    def on_epoch_start(self, epoch: int) -> None:
        self.hard_on.fill_(bool(self.cfg.hard_interests and epoch > self.cfg.hard_warmup_epochs))

    def on_train_step(self) -> None:
        self.step += 1

    def kl_weight(self) -> float:
        """lambda: linear in the number of training steps taken, capped at ``kl_cap``."""
        c = self.cfg
        return c.kl_cap if c.anneal_steps <= 0 else min(c.kl_cap, float(self.step) / c.anneal_steps)

    def _kl_weight_tensor(self) -> torch.Tensor:
        """``kl_weight()`` computed on the step counter's device (no host sync per step; float64 then float32,
        the value a Python float multiplying a float32 tensor takes)."""
        return annealed_weight(self.step, self.cfg.kl_cap, self.cfg.anneal_steps)

    # ---- MIE-VAE ----
    def unit_categories(self) -> torch.Tensor:
        return F.normalize(self.categories, dim=-1)

    def item_category_probs(self) -> torch.Tensor:
        """``a_i^j`` of every item ``[N + 1, K]`` (row 0 = padding)."""
        return category_probs(self.item.weight, self.categories, self.cfg.category_tau)

    def interest_distributions(self, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per prefix: means ``m`` and log-variances of the K interests ``[B, L, K, d]``,
        intensities ``alpha`` ``[B, L, K]`` and ``has_hard`` ``[B, L, K]`` (category j seen up to t)."""
        c = self.cfg
        v = self._embed(inputs)
        if not self._mie_trains_items():
            v = v.detach()
        valid = inputs > 0
        g = self.unit_categories()
        a = category_probs(v, g, c.category_tau)
        h, alpha = soft_interests(v, a, valid, c.soft_pool)
        has = torch.zeros_like(alpha, dtype=torch.bool)
        m = h
        if self.hard is not None and bool(self.hard_on):
            cat, weight = hard_assignment(a, c.hard_assignment, c.gumbel_tau, self.training)
            r, has = self.hard(v, cat, weight, valid, c.n_interests)
            m = torch.where(has.unsqueeze(-1), (h + r) / 2, h)
        return {"mean": m, "logvar": self.omega_logvar(g, m), "alpha": alpha, "has_hard": has}

    def omega_logvar(self, g: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """``log omega^2 = MLP([g_j || m_t^j])`` (Section 3.2) for ``g`` [K, d] and ``m`` [..., K, d]. The first
        layer is applied in two parts, ``W_g g_j + W_m m``, the category part once per category, instead of on
        a concatenated [..., K, 2d] tensor (same result, less work: the omega MLP was 16% of an Office step)."""
        first, d = self.omega[0], m.shape[-1]
        h = F.linear(m, first.weight[:, d:]) + F.linear(g, first.weight[:, :d], first.bias)
        return self.omega[1:](h)

    def _mie_trains_items(self) -> bool:
        return self.cfg.mie_item_grad or not self.cfg.sgm

    def decode_interests(self, x: torch.Tensor) -> torch.Tensor:
        """``u^j = MLP(x^j)``: interest samples (or means) into item space."""
        return self.interest_decoder(x)

    def interest_vectors(self, inputs: torch.Tensor) -> torch.Tensor:
        """The K decoded interest means at the newest position ``[B, K, d]`` (multi-interest retrieval)."""
        dist = self.interest_distributions(inputs)
        u = self.decode_interests(dist["mean"][:, -1])
        return F.normalize(u, dim=-1) if self.cfg.mie_cosine else u

    def interest_intensities(self, inputs: torch.Tensor) -> torch.Tensor:
        """``alpha_T^j`` ``[B, K]``: each interest's share of the sequence's category mass."""
        return interest_intensities(category_probs(self._embed(inputs), self.categories, self.cfg.category_tau), inputs > 0)

    def _mie_likelihood(self, u: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Eq. 5: softmax over items of ``max_j <u^j, v> / epsilon``; ``u`` [M, K, d], ``targets`` [M]."""
        c = self.cfg
        items = self.item.weight if self._mie_trains_items() else self.item.weight.detach()
        if c.mie_cosine:
            u, items = F.normalize(u, dim=-1), F.normalize(items, dim=-1)
        u = u / c.mie_temperature
        if c.mie_negatives <= 0:
            logits = torch.einsum("mkd,nd->mkn", u, items[1:]).amax(1)
            return F.cross_entropy(logits.float(), targets - 1)
        cand = targets[torch.randint(0, targets.shape[0], (c.mie_negatives,), device=targets.device)]
        pos = (u * items[targets].unsqueeze(1)).sum(-1).amax(1, keepdim=True)
        neg = torch.einsum("mkd,sd->mks", u, items[cand]).amax(1)
        neg = neg.masked_fill(cand.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
        logits = torch.cat([pos, neg], dim=1).float()
        return F.cross_entropy(logits, torch.zeros_like(targets))

    # ---- SGM-VAE ----
    def sgm_prior(self, dist: dict[str, torch.Tensor], valid: torch.Tensor, mask: torch.Tensor,
                  shuffle: bool | None = None) -> tuple[torch.Tensor, ...]:
        """The mixture prior of Eq. 6 at the target positions ``mask``: component means and log-variances
        ``[M, K, d]`` in z-space and log intensities ``[M, K]``. ``detach_prior`` stops the KL at the MIE-VAE's
        outputs; the map into z-space (``prior_map``, ``prior_logvar_shift``) is the SGM side's and always trains.
        ``shuffle`` (default: the ``prior_shuffle`` setting) takes each position's mixture from another sequence."""
        c = self.cfg
        m, lv, alpha = dist["mean"], dist["logvar"], dist["alpha"]
        shuffle = c.prior_shuffle if shuffle is None else shuffle
        if shuffle:
            rows, cols = shuffled_sources(valid)
            m, lv, alpha = m[rows, cols], lv[rows, cols], alpha[rows, cols]
        m, lv, alpha = m[mask], lv[mask], alpha[mask]
        if c.detach_prior:
            m, lv, alpha = m.detach(), lv.detach(), alpha.detach()
        m = self.prior_mean_map(m)
        if self.prior_logvar_shift is not None:
            lv = lv + self.prior_logvar_shift
        return m, lv, torch.log(alpha.clamp_min(1e-12))

    def _embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """Item vectors scaled by sqrt(d) (as in SASRec), shared by both VAEs."""
        return self.item(inputs) * self.cfg.hidden_size**0.5

    def _posterior(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._embed(inputs)
        return self.enc_mu(x, inputs), self.enc_logvar(x, inputs)

    def loss(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.cfg
        inputs, targets = batch.inputs, batch.targets
        mask = targets > 0
        tgt = targets[mask]
        parts: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=inputs.device)
        if self.use_mie:
            dist = self.interest_distributions(inputs)
            m, lv = dist["mean"][mask], dist["logvar"][mask]  # [M, K, d]
            x = m + torch.randn_like(m) * torch.exp(0.5 * lv)
            parts["mie_recon"] = self._mie_likelihood(self.decode_interests(x), tgt)
            kl = kl_standard_normal(m, lv)  # [M, K], summed over d
            parts["mie_kl"] = kl.sum(-1).mean() if c.mie_kl_reduce == "sum" else kl.mean() / c.hidden_size
            parts["orth"] = orthogonality_loss(self.unit_categories(), c.orth)
            weight = c.beta1 if c.sgm else 1.0
            total = total + weight * (parts["mie_recon"] + parts["mie_kl"]) + c.beta2 * parts["orth"]
        if c.sgm:
            mu, logvar = self._posterior(inputs)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            out = self.decoder(z, inputs)
            parts["recon"] = next_item_loss(out[mask], tgt, self.item.weight, c.loss, c.n_negatives, c.temperature)
            mu_m, lv_m = mu[mask], logvar[mask]
            if self.use_mie:
                pm, plv, log_alpha = self.sgm_prior(dist, inputs > 0, mask)
                if c.prior_kl == "variational":
                    kl = mixture_kl_variational(mu_m, lv_m, log_alpha, pm, plv, c.prior_kl_var_weight)
                else:
                    kl = mixture_kl_mc(z[mask], mu_m, lv_m, log_alpha, pm, plv)
                parts["kl"] = kl.mean()
            else:
                parts["kl"] = kl_standard_normal(mu_m, lv_m).mean()
            lam = self._kl_weight_tensor()
            total = total + parts["recon"] + lam * parts["kl"]
            parts["lambda"] = lam
        parts["loss"] = total
        return {k: v if k == "loss" else v.detach() for k, v in parts.items()}

    # ---- inference ----
    def user_representation(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.cfg.sgm:
            return self.interest_vectors(inputs)
        mu = self.enc_mu(self._embed(inputs), inputs)
        return self.decoder(mu, inputs)[:, -1] / self.cfg.temperature

    def item_embeddings(self) -> torch.Tensor:
        if not self.cfg.sgm and self.cfg.mie_cosine:
            return F.normalize(self.item.weight, dim=-1)  # the MIE-VAE alone ranks by cosine, as it was trained
        return self.item.weight
