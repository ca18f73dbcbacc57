"""ACVAE: the discriminator learns only from its own loss, the generator's KL estimate moves only the encoder."""

from __future__ import annotations

import dataclasses

import torch

from sigmarec.models.acvae import ACVAE, ACVAEConfig

from batches import make_batch


def small(**kw) -> ACVAE:
    torch.manual_seed(0)
    cfg = dataclasses.replace(ACVAEConfig(), hidden_size=16, gru_size=12, latent_size=6, decoder_size=10, critic_size=10, **kw)
    return ACVAE(cfg, 20, 8)


def test_the_kl_estimate_does_not_train_the_discriminator_and_its_loss_does_not_train_the_encoder():
    batch = make_batch([[1, 2, 3, 4], [5, 6, 7], [8, 9, 10, 11, 12]], 8)
    m = small()
    assert torch.isfinite(m(batch)["loss"])
    # gradient of the KL estimate alone (as the loss computes it): the discriminator's parameters get none
    grads = torch.autograd.grad(_kl(m, batch), list(m.discriminator.parameters()) + [m.to_z.weight], allow_unused=True)
    assert all(g is None or float(g.abs().sum()) == 0 for g in grads[:-1]) and float(grads[-1].abs().sum()) > 0
    # gradient of the discriminator's loss alone: the encoder gets none
    grads = torch.autograd.grad(_disc(m, batch), [m.to_z.weight] + list(m.discriminator.parameters()), allow_unused=True)
    assert grads[0] is None and any(g is not None and float(g.abs().sum()) > 0 for g in grads[1:])


def _kl(m, batch):
    torch.manual_seed(1)
    z = m.latents(batch.inputs, noise=True)
    real = batch.inputs > 0
    from torch.func import functional_call

    frozen = {k: v.detach() for k, v in m.discriminator.named_parameters()}
    return functional_call(m.discriminator, frozen, (m.item(batch.inputs)[real], z[real])).mean()


def _disc(m, batch):
    z = m.latents(batch.inputs, noise=True)
    real = batch.inputs > 0
    e, zd = m.item(batch.inputs)[real].detach(), z[real].detach()
    return (torch.nn.functional.softplus(-m.discriminator(e, zd)) + torch.nn.functional.softplus(m.discriminator(e, torch.randn_like(zd)))).mean()


def test_inference_is_deterministic_unless_noise_is_asked_for():
    batch = make_batch([[1, 2, 3, 4], [5, 6, 7]], 8)
    m = small().eval()
    with torch.no_grad():
        assert torch.equal(m.score_all(batch.inputs), m.score_all(batch.inputs))
    m = small(inference_noise=True).eval()
    with torch.no_grad():
        assert not torch.equal(m.score_all(batch.inputs), m.score_all(batch.inputs))
