"""ContrastVAE: the InfoNCE term, the data-augmentation shuffle, the views, the KL reduction."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from sigmarec.models.contrastvae import ContrastVAE, ContrastVAEConfig, nt_xent, shuffle_windows

from batches import left_padded, make_batch

N_ITEMS, MAX_LEN = 30, 10


def model(**kw) -> ContrastVAE:
    torch.manual_seed(0)
    cfg = dataclasses.replace(ContrastVAEConfig(), hidden_size=16, n_heads=2, **kw)
    return ContrastVAE(cfg, N_ITEMS, MAX_LEN)


def test_nt_xent_matches_the_formula():
    torch.manual_seed(1)
    u1, u2 = torch.randn(3, 5), torch.randn(3, 5)
    u = torch.nn.functional.normalize(torch.cat([u1, u2]), dim=-1)
    total = 0.0
    for i in range(6):
        j = (i + 3) % 6
        logits = [float(u[i] @ u[k]) / 0.5 for k in range(6) if k != i]
        total += -(float(u[i] @ u[j]) / 0.5 - math.log(sum(math.exp(x) for x in logits)))
    assert float(nt_xent(u1, u2, 0.5)) == pytest.approx(total / 6, rel=1e-5)


def test_shuffle_windows_permutes_one_window_of_the_real_items():
    torch.manual_seed(2)
    seqs = [list(range(1, 11)), [5, 6, 7, 8, 9], [3]]
    inputs = left_padded(seqs, 12)
    for _ in range(20):
        out = shuffle_windows(inputs, 0.6)
        assert torch.equal(out == 0, inputs == 0)  # padding stays where it was
        for row, seq in zip(out, seqs):
            real = row[row > 0].tolist()
            assert sorted(real) == sorted(seq)
            moved = [i for i, (a, b) in enumerate(zip(real, seq)) if a != b]
            if moved:  # the changed positions lie inside one window of int(0.6 n) items
                assert moved[-1] - moved[0] < max(1, int(0.6 * len(seq)))


@pytest.mark.parametrize("augmentation", ["variational", "model", "data", "none"])
def test_every_view_trains(augmentation):
    m = model(augmentation=augmentation).train()
    batch = make_batch([[1, 2, 3, 4, 5], [6, 7, 8], [9, 10, 11, 12]], MAX_LEN)
    parts = m(batch)
    assert torch.isfinite(parts["loss"])
    assert ("contrast" in parts) == (augmentation != "none")
    parts["loss"].backward()
    if augmentation == "variational":
        assert m.alpha_logit.grad is not None and m.alpha_logit.grad != 0
        assert float(parts["alpha"]) == pytest.approx(0.5)


def test_kl_over_slots_is_the_real_positions_sum_over_batch_times_max_len():
    m = model(augmentation="none")
    mu, logvar = torch.randn(2, 4, 16), torch.randn(2, 4, 16)
    real = torch.tensor([[False, True, True, True], [False, False, True, True]])
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)
    torch.testing.assert_close(m._kl(mu, logvar, real), kl[real].sum() / (2 * MAX_LEN))
    m.cfg = dataclasses.replace(m.cfg, kl_reduce="real")
    torch.testing.assert_close(m._kl(mu, logvar, real), kl[real].mean())


def test_beta_anneals_per_step_to_the_cap():
    m = model(kl_cap=0.2, anneal_steps=100)
    assert float(m.kl_weight()) == 0.0
    for _ in range(50):
        m.on_train_step()
    assert float(m.kl_weight()) == pytest.approx(0.2)  # capped: 50 / 100 = 0.5 > 0.2
    m = model(kl_cap=0.2, anneal_steps=1000)
    for _ in range(50):
        m.on_train_step()
    assert float(m.kl_weight()) == pytest.approx(0.05)
