"""What SIGMA's mixture prior does to training, measured on a trained model and real batches.

For the mixture KL of Eq. 6 and, beside it, the N(0, I) KL of the "w/o MIE-VAE" ablation:
- a decomposition of each component's closed-form KL into a **variance term**
  ``1/2 sum(log omega^2 - log sigma^2 + sigma^2 / omega^2 - 1)`` and a **mean term**
  ``1/2 sum((mu - m)^2 / omega^2)`` (reported for the component nearest to ``mu``);
- how much the KL depends on the user's own interests: the same KL with uniform intensities
  (alpha ignored) and with each position's mixture taken from another sequence (``prior_shuffle``);
- the cosine between the gradients of the reconstruction and of the lambda-weighted KL on the
  posterior-mean encoder: negative means the prior pulls against reconstruction.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from sigmarec.data.batching import Batch
from sigmarec.models.layers.gaussian import kl_diag_gaussians, kl_standard_normal, mixture_kl_mc
from sigmarec.models.layers.losses import next_item_loss
from sigmarec.models.sigma import SIGMA


def _flat_grad(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, params)])


def prior_diagnostics(model: SIGMA, batches: Iterable[Batch], seed: int = 0) -> dict[str, float]:
    """Mean over the target positions of ``batches`` (training mode: dropout and samples as in training,
    hard interests on) of the quantities in the module docstring. Needs ``prior=mixture`` and ``sgm=true``."""
    if not (model.use_mie and model.cfg.sgm):
        raise ValueError("prior diagnostics need SIGMA with prior=mixture and sgm=true")
    c = model.cfg
    torch.manual_seed(seed)
    was, hard_was = model.training, bool(model.hard_on)
    model.train()
    model.hard_on.fill_(True)
    params = list(model.enc_mu.parameters())
    lam = max(model.kl_weight(), 1e-12)
    sums: dict[str, float] = {}
    count = 0
    cosines, norms = [], []
    try:
        for batch in batches:
            inputs, targets = batch.inputs, batch.targets
            mask, valid = targets > 0, inputs > 0
            mu, logvar = model._posterior(inputs)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            recon = next_item_loss(model.decoder(z, inputs)[mask], targets[mask], model.item.weight, c.loss, c.n_negatives,
                                   c.temperature)
            dist = model.interest_distributions(inputs)
            pm, plv, log_alpha = model.sgm_prior(dist, valid, mask, shuffle=False)  # the user's own mixture
            mu_m, lv_m, z_m = mu[mask], logvar[mask], z[mask]
            kl = mixture_kl_mc(z_m, mu_m, lv_m, log_alpha, pm, plv)
            uniform = mixture_kl_mc(z_m, mu_m, lv_m, torch.full_like(log_alpha, -np.log(c.n_interests)), pm, plv)
            spm, splv, sla = model.sgm_prior(dist, valid, mask, shuffle=True)
            kl_shuffled = mixture_kl_mc(z_m, mu_m, lv_m, sla, spm, splv)
            # closed-form per-component terms, taken at the component nearest to mu (in omega units)
            diff2 = (mu_m.unsqueeze(1) - pm).pow(2) * torch.exp(-plv)  # [M, K, d]
            mean_term = 0.5 * diff2.sum(-1)
            var_term = kl_diag_gaussians(mu_m.unsqueeze(1), lv_m.unsqueeze(1), pm, plv) - mean_term
            near = mean_term.argmin(-1, keepdim=True)
            std_kl = kl_standard_normal(mu_m, lv_m)
            std_mean = 0.5 * mu_m.pow(2).sum(-1)
            g_rec = _flat_grad(recon, params)
            g_kl = _flat_grad(lam * kl.mean(), params)
            g_std = _flat_grad(lam * std_kl.mean(), params)
            cosines.append((F.cosine_similarity(g_rec, g_kl, dim=0).item(), F.cosine_similarity(g_rec, g_std, dim=0).item()))
            norms.append((g_rec.norm().item(), g_kl.norm().item(), g_std.norm().item()))
            n = int(mask.sum())
            parts = {
                "kl_mixture": kl, "kl_mixture_uniform_alpha": uniform, "kl_mixture_shuffled": kl_shuffled,
                "mixture_mean_term_nearest": mean_term.gather(1, near).squeeze(1),
                "mixture_var_term_nearest": var_term.gather(1, near).squeeze(1),
                "min_dist2_over_omega2_per_dim": diff2.mean(-1).min(-1).values,
                "kl_standard": std_kl, "standard_mean_term": std_mean, "standard_var_term": std_kl - std_mean,
                "norm_mu": mu_m.norm(dim=-1), "norm_prior_mean": (pm.norm(dim=-1) * log_alpha.exp()).sum(-1),
                "alpha_entropy": -(log_alpha.exp() * log_alpha).sum(-1),
            }
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach().sum())
            count += n
    finally:
        model.train(was)
        model.hard_on.fill_(hard_was)
    out = {k: v / max(count, 1) for k, v in sums.items()}
    cos = np.array(cosines)
    nrm = np.array(norms)
    out.update({"cos_grad_recon_vs_mixture_kl": float(cos[:, 0].mean()), "cos_grad_recon_vs_standard_kl": float(cos[:, 1].mean()),
                "grad_norm_recon": float(nrm[:, 0].mean()), "grad_norm_mixture_kl": float(nrm[:, 1].mean()),
                "grad_norm_standard_kl": float(nrm[:, 2].mean()), "lambda": lam, "positions": count,
                "shuffled_minus_own_kl": out["kl_mixture_shuffled"] - out["kl_mixture"],
                "uniform_alpha_minus_own_kl": out["kl_mixture_uniform_alpha"] - out["kl_mixture"]})
    return out
