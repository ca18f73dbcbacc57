"""SVAE: each step explains the next n_next items; the output bias folds into the dot product."""

from __future__ import annotations

import dataclasses

import torch

import sigmarec.models.svae as svae
from sigmarec.models.svae import SVAE, SVAEConfig

from batches import left_padded, make_batch


def model(**kw) -> SVAE:
    torch.manual_seed(0)
    return SVAE(dataclasses.replace(SVAEConfig(), hidden_size=8, gru_size=12, latent_size=4, **kw), 20, 6)


def test_each_step_explains_the_next_k_items(monkeypatch):
    seen = {}

    def capture(hidden, targets, items, kind, n_negatives):
        seen["targets"] = targets.tolist()
        return hidden.sum() * 0

    monkeypatch.setattr(svae, "next_item_loss", capture)
    batch = make_batch([[1, 2, 3, 4], [5, 6]], 6)
    model(n_next=1).loss(batch)
    assert sorted(seen["targets"]) == [2, 3, 4, 6]
    model(n_next=2).loss(batch)
    # offset 1: 2, 3, 4 and 6; offset 2: 3 (after 1), 4 (after 2)
    assert sorted(seen["targets"]) == [2, 3, 3, 4, 4, 6]


def test_scores_are_the_decoder_output_layer_with_its_bias():
    m = model().eval()
    with torch.no_grad():
        m.out.bias.normal_()
        inputs = left_padded([[1, 2, 3], [9]], 6)
        mu, _ = m.posterior(inputs)
        expected = m.out(m.decoder(mu[:, -1]))
        torch.testing.assert_close(m.score_all(inputs), expected)
