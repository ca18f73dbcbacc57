"""DT4SR: the augmented dot product is exactly the negative squared 2-Wasserstein distance."""

from __future__ import annotations

import dataclasses

import torch

from sigmarec.models.dt4sr import DT4SR, DT4SRConfig

from batches import left_padded


def test_scores_are_minus_the_squared_wasserstein_distance():
    torch.manual_seed(0)
    m = DT4SR(dataclasses.replace(DT4SRConfig(), hidden_size=8, n_layers=1), 25, 6).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))  # away from the near-identical initial embeddings
        inputs = left_padded([[1, 2, 3], [4], [5, 6, 7, 8, 9, 10]], 6)
        w2 = m.wasserstein(inputs)
        torch.testing.assert_close(m.score_all(inputs), -w2, rtol=1e-4, atol=1e-4)
        # by hand for one pair: ||mu_u - mu_i||^2 + ||sqrt(cov_u) - sqrt(cov_i)||^2
        mean, cov = m.distributions(inputs)
        mu_i, cov_i = m.item_mean.weight[7], torch.nn.functional.elu(m.item_cov.weight[7]) + 1
        manual = (mean[0, -1] - mu_i).pow(2).sum() + (cov[0, -1].sqrt() - cov_i.sqrt()).pow(2).sum()
        torch.testing.assert_close(w2[0, 7], manual, rtol=1e-5, atol=1e-5)
        assert (cov > 0).all()
