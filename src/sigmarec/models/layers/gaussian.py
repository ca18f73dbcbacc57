"""Gaussian log-densities and KL terms used by the VAE models (SIGMA Eq. 4 and Eq. 6)."""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)


def _at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors (bf16 autocast) in float32; float32 and float64 as they are."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def diag_gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``log N(z | mean, diag(exp(logvar)))`` summed over the last dimension (broadcasting)."""
    return -0.5 * (LOG_2PI + logvar + (z - mean).pow(2) * torch.exp(-logvar)).sum(-1)


def kl_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Closed-form ``KL(N(mean, exp(logvar)) || N(0, I))`` summed over the last dimension (Eq. 4, with its 1/2), in
    float32 at least (under bf16 autocast too)."""
    mean, logvar = _at_least_float32(mean), _at_least_float32(logvar)
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def mixture_kl_mc(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, log_weights: torch.Tensor,
                  means: torch.Tensor, logvars: torch.Tensor) -> torch.Tensor:
    """One-sample Monte Carlo ``KL(q || p)`` for ``q = N(mu, exp(logvar))`` and a Gaussian mixture ``p`` (Eq. 6).

    ``z, mu, logvar``: ``[..., d]`` (``z`` drawn from q); ``log_weights``: ``[..., K]`` (log mixture
    weights, summing to one in probability space); ``means, logvars``: ``[..., K, d]``. Returns
    ``log q(z) - log sum_j w_j N(z | m_j, s_j)`` of shape ``[...]``, computed with ``logsumexp`` in
    float32 so tiny component densities do not underflow.
    """
    z, mu, logvar = z.float(), mu.float(), logvar.float()
    log_q = diag_gaussian_log_prob(z, mu, logvar)
    log_comp = diag_gaussian_log_prob(z.unsqueeze(-2), means.float(), logvars.float())
    log_p = torch.logsumexp(log_weights.float() + log_comp, dim=-1)
    return log_q - log_p


def kl_diag_gaussians(mean_q: torch.Tensor, logvar_q: torch.Tensor, mean_p: torch.Tensor, logvar_p: torch.Tensor) -> torch.Tensor:
    """Closed-form ``KL(N(mean_q, exp(logvar_q)) || N(mean_p, exp(logvar_p)))`` summed over the last dimension, in
    float32 at least."""
    mean_q, logvar_q, mean_p, logvar_p = (_at_least_float32(t) for t in (mean_q, logvar_q, mean_p, logvar_p))
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mean_q - mean_p).pow(2)) * torch.exp(-logvar_p) - 1.0).sum(-1)


def mixture_kl_variational(mu: torch.Tensor, logvar: torch.Tensor, log_weights: torch.Tensor, means: torch.Tensor,
                           logvars: torch.Tensor, var_weight: float = 1.0) -> torch.Tensor:
    """Deterministic variational approximation of ``KL(q || sum_j w_j p_j)`` (Hershey & Olsen 2007, for a single
    Gaussian ``q``): ``-log sum_j w_j exp(-D_j)`` with ``D_j = var_weight * V_j + M_j``, where ``V_j`` is the
    variance part of the closed-form ``KL(q || p_j)`` and ``M_j = sum_d (mu - m_j)^2 / (2 s_j^2)`` its mean part.

    At ``var_weight = 1`` each ``D_j`` is the exact component KL (exact for K = 1); smaller weights keep the
    mean pull (where the mixture's components differ) and shrink the variance mismatch (the same for any prior).
    Shapes as :func:`mixture_kl_mc`; returns ``[...]`` in float32.
    """
    mu, logvar = mu.float().unsqueeze(-2), logvar.float().unsqueeze(-2)
    means, logvars = means.float(), logvars.float()
    mean_term = 0.5 * ((mu - means).pow(2) * torch.exp(-logvars)).sum(-1)
    var_term = 0.5 * (logvars - logvar + torch.exp(logvar - logvars) - 1.0).sum(-1)
    return -torch.logsumexp(log_weights.float() - (var_weight * var_term + mean_term), dim=-1)
