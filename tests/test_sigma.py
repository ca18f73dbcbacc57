"""Unit tests of SIGMA (``models/sigma.py``) and its building blocks (``layers/gaussian.py``,
``layers/interests.py``): references computed independently (SciPy, Python loops over users and
categories), padding invariance, gradient flow, ablations as configuration and the KL schedule."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import batches
from batches import left_padded
from sigmarec.data.batching import Batch
from sigmarec.models.layers.gaussian import kl_diag_gaussians, kl_standard_normal, mixture_kl_mc, mixture_kl_variational
from sigmarec.models.layers.interests import (
    HardInterestGRU,
    category_probs,
    hard_assignment,
    last_index_per_category,
    soft_interests,
)
from sigmarec.models.sigma import SIGMA, SIGMAConfig, shuffled_sources

N_ITEMS, MAX_LEN, D, K = 30, 10, 16, 3
SMALL = dict(hidden_size=D, n_heads=2, n_interests=K, omega_hidden=[32], mie_negatives=16)


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Tiny tensors and a busy machine: one intra-op thread (see conftest)."""


def make_model(seed: int = 0, **overrides) -> SIGMA:
    torch.manual_seed(seed)
    return SIGMA(SIGMAConfig(**{**SMALL, **overrides}), n_items=N_ITEMS, max_len=MAX_LEN)


def make_batch(seqs, width=MAX_LEN) -> Batch:
    return batches.make_batch(seqs, width)


SEQS = [[1, 5, 9, 2, 7, 7, 30, 11, 4, 3, 8], [6, 2, 13], [21, 22, 23, 24, 25, 26], [17, 1]]


# ---------------------------------------------------------------- layers/gaussian.py


def _diag_logpdf(x, mean, logvar):
    return multivariate_normal.logpdf(x, mean=mean, cov=np.diag(np.exp(logvar)))


def test_mixture_kl_mc_matches_scipy_reference():
    rng = np.random.default_rng(0)
    P, k, d = 5, 3, 4
    z, mu = rng.normal(size=(P, d)), rng.normal(size=(P, d))
    logvar = rng.normal(scale=0.5, size=(P, d))
    means = rng.normal(size=(P, k, d))
    logvars = rng.normal(scale=0.5, size=(P, k, d))
    w = rng.dirichlet(np.ones(k), size=P)
    expected = np.empty(P)
    for p in range(P):
        log_q = _diag_logpdf(z[p], mu[p], logvar[p])
        log_p = logsumexp([np.log(w[p, j]) + _diag_logpdf(z[p], means[p, j], logvars[p, j]) for j in range(k)])
        expected[p] = log_q - log_p
    t = lambda a: torch.from_numpy(a)  # noqa: E731  (float64 in)
    got = mixture_kl_mc(t(z), t(mu), t(logvar), t(np.log(w)), t(means), t(logvars))
    assert got.shape == (P,)
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("others", [float("-inf"), float(np.log(1e-30))])
def test_mixture_kl_mc_is_zero_when_the_mixture_is_the_posterior(others):
    g = torch.Generator().manual_seed(1)
    P, k, d = 4, 3, 4
    mu, logvar = torch.randn(P, d, generator=g, dtype=torch.float64), 0.5 * torch.randn(P, d, generator=g, dtype=torch.float64)
    z = mu + torch.randn(P, d, generator=g, dtype=torch.float64) * torch.exp(0.5 * logvar)
    means = torch.randn(P, k, d, generator=g, dtype=torch.float64)
    logvars = torch.randn(P, k, d, generator=g, dtype=torch.float64)
    means[:, 1], logvars[:, 1] = mu, logvar  # component 1 = q, weight 1
    log_w = torch.full((P, k), others, dtype=torch.float64)
    log_w[:, 1] = 0.0
    got = mixture_kl_mc(z, mu, logvar, log_w, means, logvars)
    torch.testing.assert_close(got.double(), torch.zeros(P, dtype=torch.float64), atol=1e-5, rtol=0)


def test_mixture_kl_variational_is_exact_for_one_component_and_bounds_the_mixture_kl():
    g = torch.Generator().manual_seed(3)
    P, k, d = 6, 3, 4
    mu, logvar = torch.randn(P, d, generator=g, dtype=torch.float64), 0.5 * torch.randn(P, d, generator=g, dtype=torch.float64)
    means = torch.randn(P, k, d, generator=g, dtype=torch.float64)
    logvars = 0.5 * torch.randn(P, k, d, generator=g, dtype=torch.float64)
    one = mixture_kl_variational(mu, logvar, torch.zeros(P, 1, dtype=torch.float64), means[:, :1], logvars[:, :1])
    torch.testing.assert_close(one.double(), kl_diag_gaussians(mu, logvar, means[:, 0], logvars[:, 0]), rtol=1e-5, atol=1e-5)
    # with K > 1 it is an upper bound of the true KL (Jensen over the component responsibilities), which the
    # average of many one-sample Monte Carlo estimates approaches
    log_w = torch.log(torch.distributions.Dirichlet(torch.ones(k, dtype=torch.float64)).sample((P,)))
    z = mu + torch.randn(20000, P, d, generator=g, dtype=torch.float64) * torch.exp(0.5 * logvar)
    mc = mixture_kl_mc(z, mu.expand_as(z), logvar.expand_as(z), log_w.expand(20000, P, k), means.expand(20000, P, k, d),
                       logvars.expand(20000, P, k, d)).double().mean(0)
    var = mixture_kl_variational(mu, logvar, log_w, means, logvars).double()
    assert (var >= mc - 0.05).all() and (var - mc < 5).all()
    # var_weight = 0 leaves the mean pull alone: -log sum_j w_j exp(-sum_d (mu - m_j)^2 / 2 s_j^2)
    mean_only = -torch.logsumexp(log_w - 0.5 * ((mu.unsqueeze(1) - means).pow(2) / logvars.exp()).sum(-1), -1)
    torch.testing.assert_close(mixture_kl_variational(mu, logvar, log_w, means, logvars, var_weight=0.0).double(), mean_only,
                               rtol=1e-5, atol=1e-5)


def test_prior_kl_variational_replaces_the_monte_carlo_kl_in_the_loss():
    batch = make_batch(SEQS)
    mc, var = make_model(), make_model(prior_kl="variational", prior_kl_var_weight=0.0)
    var.load_state_dict(mc.state_dict())
    for model in (mc, var):
        model.train()
        model.step.fill_(50)
    torch.manual_seed(7)
    o_mc = mc.loss(batch)
    torch.manual_seed(7)
    o_var = var.loss(batch)
    torch.testing.assert_close(o_mc["recon"], o_var["recon"])  # same noise, same reconstruction
    assert torch.isfinite(o_var["kl"]) and not torch.allclose(o_mc["kl"], o_var["kl"])
    o_var["loss"].backward()
    assert var.enc_logvar.norm.bias.grad is not None  # sigma still trains through the reconstruction


def test_kl_standard_normal_closed_form():
    g = torch.Generator().manual_seed(2)
    mean, logvar = torch.randn(5, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(kl_standard_normal(mean, logvar), expected)
    torch.testing.assert_close(kl_standard_normal(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3))
    assert (kl_standard_normal(mean, logvar) > 0).all()


# ---------------------------------------------------------------- layers/interests.py


def test_last_index_per_category_hand_written():
    cat = torch.tensor([[0, 1, 0, 2, 1], [2, 2, 0, 2, 2]])
    valid = torch.tensor([[False, True, True, True, True], [True] * 5])
    expected = torch.tensor([
        [[-1, -1, -1], [-1, 1, -1], [2, 1, -1], [2, 1, 3], [2, 4, 3]],
        [[-1, -1, 0], [-1, -1, 1], [2, -1, 1], [2, -1, 3], [2, -1, 4]],
    ])
    assert torch.equal(last_index_per_category(cat, valid, 3), expected)


def _hard_case(seed=3):
    """Left-padded batch (B=4, L=7, K=3, d=5): users of length 7, 5, 3 and 1, categories chosen so
    that some (user, category) pairs are empty; padding carries garbage vectors and categories."""
    B, L, k, d = 4, 7, 3, 5
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(B, L, d, generator=g)
    lengths = [7, 5, 3, 1]
    valid = torch.arange(L).unsqueeze(0) >= (L - torch.tensor(lengths)).unsqueeze(1)
    cat = torch.randint(0, k, (B, L), generator=g)
    cat[1] = torch.tensor([2, 2, 0, 1, 0, 0, 1])  # user 1: category 2 only in padding -> empty
    cat[2, -3:] = torch.tensor([1, 1, 1])  # user 2: categories 0 and 2 empty
    return v, cat, valid, k


def test_hard_interest_gru_matches_naive_per_category_loop():
    torch.manual_seed(0)
    v, cat, valid, k = _hard_case()
    B, L, d = v.shape
    hard = HardInterestGRU(d, layers=2, bias=False)
    weight = torch.ones(B, L)
    with torch.no_grad():
        r, has = hard(v, cat, weight, valid, k)
    assert r.shape == (B, L, k, d) and has.shape == (B, L, k)
    n_empty = 0
    with torch.no_grad():
        for b in range(B):
            for j in range(k):
                positions = [i for i in range(L) if valid[b, i] and cat[b, i] == j]
                n_empty += not positions
                for t in range(L):
                    prefix = [i for i in positions if i <= t]
                    if not prefix:
                        assert not has[b, t, j]
                        assert torch.equal(r[b, t, j], torch.zeros(d))
                        continue
                    assert has[b, t, j]
                    _, h_n = hard.gru(v[b, prefix].unsqueeze(0))  # the same module, one subsequence prefix
                    torch.testing.assert_close(r[b, t, j], h_n[-1, 0], atol=1e-5, rtol=1e-5)
    assert n_empty >= 3  # the case really has empty categories


def test_hard_interest_gru_gradients_match_the_per_category_loop():
    """The packed GRU's backward (to the item vectors and the GRU weights) equals the loop's."""
    torch.manual_seed(0)
    v, cat, valid, k = _hard_case()
    B, L, d = v.shape
    hard = HardInterestGRU(d, layers=2, bias=False)
    probe = torch.randn(B, L, k, d, generator=torch.Generator().manual_seed(1))

    def grads(loss):
        hard.zero_grad()
        x.grad = None
        loss.backward()
        return [x.grad.clone()] + [p.grad.clone() for p in hard.parameters()]

    x = v.clone().requires_grad_(True)
    r, _ = hard(x, cat, torch.ones(B, L), valid, k)
    fast = grads((r * probe).sum())
    x = v.clone().requires_grad_(True)
    total = torch.zeros(())
    for b in range(B):
        for j in range(k):
            positions = [i for i in range(L) if valid[b, i] and cat[b, i] == j]
            for t in range(L):
                prefix = [i for i in positions if i <= t]
                if prefix:
                    _, h_n = hard.gru(x[b, prefix].unsqueeze(0))
                    total = total + (h_n[-1, 0] * probe[b, t, j]).sum()
    for got, want in zip(fast, grads(total)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_hard_interest_gru_weight_scales_input_and_all_padding_batch():
    torch.manual_seed(0)
    v, cat, valid, k = _hard_case()
    hard = HardInterestGRU(v.shape[-1])
    weight = torch.full(cat.shape, 0.5)
    with torch.no_grad():
        r_half, _ = hard(v, cat, weight, valid, k)
        r_ref, _ = hard(v * 0.5, cat, torch.ones_like(weight), valid, k)
        torch.testing.assert_close(r_half, r_ref)
        r0, has0 = hard(v, cat, weight, torch.zeros_like(valid), k)
    assert torch.equal(r0, torch.zeros_like(r0)) and not has0.any()


class _HalfOutputGRU(torch.nn.GRU):
    """What CUDA autocast does to ``nn.GRU``: cuDNN's autocast wrapper runs it in float16 and returns float16."""

    def forward(self, x, h=None):
        out, h_n = super().forward(x, h)
        return out.half(), h_n.half()


def test_hard_interest_gru_accepts_a_float16_gru_output():
    torch.manual_seed(0)
    v, cat, valid, k = _hard_case()
    hard = HardInterestGRU(v.shape[-1])
    with torch.no_grad():
        r_ref, has_ref = hard(v, cat, torch.ones(cat.shape), valid, k)
        hard.gru.__class__ = _HalfOutputGRU
        r, has = hard(v, cat, torch.ones(cat.shape), valid, k)
    assert r.dtype == v.dtype and torch.equal(has, has_ref)
    torch.testing.assert_close(r, r_ref, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("pool", ["sum", "mean"])
def test_soft_interests_match_loop(pool):
    B, L, k, d = 3, 6, 3, 4
    g = torch.Generator().manual_seed(4)
    v = torch.randn(B, L, d, generator=g, dtype=torch.float64)
    a = torch.softmax(torch.randn(B, L, k, generator=g, dtype=torch.float64), -1)
    lengths = [6, 4, 1]
    valid = torch.arange(L).unsqueeze(0) >= (L - torch.tensor(lengths)).unsqueeze(1)
    v[~valid] = 1e3  # garbage in padding must contribute nothing
    a[~valid] = 7.0
    h, alpha = soft_interests(v, a, valid, pool)
    for b in range(B):
        for t in range(L):
            idx = [i for i in range(t + 1) if valid[b, i]]
            mass = torch.stack([a[b, i] for i in idx]).sum(0) if idx else torch.zeros(k, dtype=v.dtype)
            for j in range(k):
                s = sum((a[b, i, j] * v[b, i] for i in idx), torch.zeros(d, dtype=v.dtype))
                if pool == "mean" and idx:
                    s = s / mass[j]
                torch.testing.assert_close(h[b, t, j], s)
            torch.testing.assert_close(alpha[b, t], mass / mass.sum() if idx else torch.zeros(k, dtype=v.dtype))
    sums = alpha.sum(-1)
    torch.testing.assert_close(sums[valid], torch.ones(int(valid.sum()), dtype=v.dtype))
    assert (sums[~valid] == 0).all()  # left padding precedes every valid item
    with pytest.raises(ValueError, match="pool"):
        soft_interests(v, a, valid, "max")


def test_category_probs_rows_are_distributions():
    g = torch.Generator().manual_seed(5)
    a = category_probs(torch.randn(7, 4, generator=g), torch.randn(3, 4, generator=g), tau=0.1)
    assert a.shape == (7, 3) and (a >= 0).all()
    torch.testing.assert_close(a.sum(-1), torch.ones(7))


def test_gumbel_hard_assignment_carries_gradient_to_categories_argmax_does_not():
    torch.manual_seed(0)
    v, cat, valid, k = _hard_case()
    categories = torch.randn(k, v.shape[-1], requires_grad=True)
    hard = HardInterestGRU(v.shape[-1])
    a = category_probs(v, categories, 0.1)
    c, w = hard_assignment(a, "gumbel", 1.0, training=True)
    torch.testing.assert_close(w, torch.ones_like(w))  # 1 in value
    r, _ = hard(v, c, w, valid, k)
    r.pow(2).sum().backward()
    assert categories.grad is not None and categories.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in hard.gru.parameters())
    # argmax (and gumbel at evaluation) is the deterministic argmax with no path to the categories
    for mode, training in (("argmax", True), ("gumbel", False)):
        c2, w2 = hard_assignment(a, mode, 1.0, training)
        assert torch.equal(c2, a.argmax(-1)) and not w2.requires_grad
    with pytest.raises(ValueError, match="hard_assignment"):
        hard_assignment(a, "sample")


# ---------------------------------------------------------------- SIGMA: padding


@pytest.mark.parametrize("sgm", [True, False])
def test_user_representation_ignores_left_padding(sgm):
    model = make_model(sgm=sgm).eval()
    seq = [3, 5, 7, 2, 9, 11]
    with torch.no_grad():
        short = model.user_representation(left_padded([seq], len(seq)))
        long = model.user_representation(left_padded([seq], MAX_LEN))
        mixed = model.user_representation(left_padded([seq, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]], MAX_LEN))[:1]
    assert short.shape == ((1, D) if sgm else (1, K, D))
    torch.testing.assert_close(long, short, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mixed, short, atol=1e-5, rtol=1e-5)


def test_interest_distributions_ignore_padding():
    model = make_model().eval()
    assert bool(model.hard_on)
    seqs = [[3, 5, 7, 2, 9, 11], [4, 4, 28]]
    with torch.no_grad():
        padded = model.interest_distributions(left_padded(seqs, MAX_LEN))
        for b, s in enumerate(seqs):
            alone = model.interest_distributions(left_padded([s], len(s)))
            for key in ("mean", "logvar", "alpha", "has_hard"):
                assert torch.isfinite(padded[key].float()).all(), key
                got = padded[key][b, MAX_LEN - len(s):]
                if key == "has_hard":
                    assert torch.equal(got, alone[key][0]) and got[-1].any()
                else:
                    torch.testing.assert_close(got, alone[key][0], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- SIGMA: gradients


def _loss_and_backward(model: SIGMA, seed: int = 0) -> dict[str, torch.Tensor]:
    model.train()
    model.hard_on.fill_(True)
    torch.manual_seed(seed)
    out = model.loss(make_batch(SEQS))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    return out


def _assert_grads(model: SIGMA, prefixes):
    params = dict(model.named_parameters())
    for prefix in prefixes:
        group = {n: p for n, p in params.items() if n == prefix or n.startswith(prefix + ".")}
        assert group, prefix
        for name, p in group.items():
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


def test_gradients_reach_every_module():
    model = make_model()
    assert model.cfg.hard_assignment == "gumbel"
    out = _loss_and_backward(model)
    assert {"recon", "kl", "mie_recon", "mie_kl", "orth", "lambda", "loss"} <= set(out)
    _assert_grads(model, ["categories", "item.weight", "enc_mu", "enc_logvar", "decoder", "omega", "interest_decoder", "hard.gru"])
    assert model.item.weight.grad[1:].abs().sum() > 0


def test_gradients_with_argmax_assignment_still_train_the_gru():
    model = make_model(hard_assignment="argmax")
    _loss_and_backward(model)
    _assert_grads(model, ["hard.gru", "categories", "omega", "interest_decoder"])


def test_mixture_kl_trains_the_mie_vae_unless_detach_prior():
    """With the MIE-VAE's own terms weighted 0, only the mixture KL (Eq. 6) can train omega."""
    for detach in (False, True):
        model = make_model(detach_prior=detach, beta1=0.0, beta2=0.0)
        model.step.fill_(model.cfg.anneal_steps)  # lambda at its cap
        _loss_and_backward(model)
        grad = model.omega[-1].weight.grad
        if detach:
            assert grad is None or grad.abs().sum() == 0
        else:
            assert grad is not None and grad.abs().sum() > 0


# ---------------------------------------------------------------- SIGMA: ablations


def test_standard_prior_builds_no_mie_modules():
    model = make_model(prior="standard")
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.split(".")[0] in ("categories", "hard", "omega", "interest_decoder") for n in names)
    model.train()
    torch.manual_seed(0)
    batch = make_batch(SEQS)
    out = model.loss(batch)
    assert "mie_recon" not in out and "mie_kl" not in out and "orth" not in out
    assert {"recon", "kl", "loss"} <= set(out)
    out["loss"].backward()
    _assert_grads(model, ["item.weight", "enc_mu", "enc_logvar", "decoder"])
    model.eval()
    with torch.no_grad():
        assert model.score_all(batch.inputs).shape == (len(SEQS), N_ITEMS + 1)


def test_without_sgm_recommends_by_interests():
    model = make_model(sgm=False)
    assert not any(n.split(".")[0] in ("enc_mu", "enc_logvar", "decoder") for n, _ in model.named_parameters())
    model.train()
    torch.manual_seed(0)
    batch = make_batch(SEQS)
    out = model.loss(batch)
    assert "recon" not in out and "kl" not in out and "mie_recon" in out
    out["loss"].backward()
    _assert_grads(model, ["categories", "item.weight", "omega", "interest_decoder", "hard.gru"])
    model.eval()
    with torch.no_grad():
        rep = model.user_representation(batch.inputs)
        scores = model.score_all(batch.inputs)
    assert rep.shape == (len(SEQS), K, D)
    assert scores.shape == (len(SEQS), N_ITEMS + 1) and torch.isfinite(scores).all()


def test_loss_is_the_documented_combination_and_beta2_zero_drops_orth():
    batch = make_batch(SEQS)
    model1 = make_model(beta2=1.0, beta1=0.3)
    model0 = make_model(beta2=0.0, beta1=0.3)
    model_sum = make_model(beta2=1.0, beta1=0.3, mie_kl_reduce="sum")
    model0.load_state_dict(model1.state_dict())
    model_sum.load_state_dict(model1.state_dict())
    outs = []
    for model in (model1, model0, model_sum):
        model.train()
        model.step.fill_(50)
        torch.manual_seed(7)
        outs.append(model.loss(batch))
    o1, o0, o_sum = outs
    for key in ("recon", "kl", "mie_recon", "mie_kl", "orth"):
        torch.testing.assert_close(o1[key], o0[key])
    assert o1["orth"] > 0
    lam = 50 / model1.cfg.anneal_steps
    assert float(o1["lambda"]) == pytest.approx(lam)
    expected = o1["recon"] + lam * o1["kl"] + 0.3 * (o1["mie_recon"] + o1["mie_kl"])
    torch.testing.assert_close(o0["loss"].detach(), expected)
    torch.testing.assert_close(o1["loss"].detach(), expected + o1["orth"])
    # T_KL^MIE: "sum" is Eq. 4 as written (over K x d per position), "mean" its average over K x d
    torch.testing.assert_close(o_sum["mie_kl"], o1["mie_kl"] * K * D)
    torch.testing.assert_close(o_sum["mie_recon"], o1["mie_recon"])


def test_without_hard_interests_the_means_are_the_soft_interests():
    model = make_model(hard_interests=False).eval()
    assert model.hard is None and not bool(model.hard_on)
    assert not any(n.startswith("hard.") for n, _ in model.named_parameters())
    inputs = make_batch(SEQS).inputs
    with torch.no_grad():
        dist = model.interest_distributions(inputs)
        v = model._embed(inputs)
        h, alpha = soft_interests(v, category_probs(v, model.categories, model.cfg.category_tau), inputs > 0, model.cfg.soft_pool)
    assert not dist["has_hard"].any()
    torch.testing.assert_close(dist["mean"], h)
    torch.testing.assert_close(dist["alpha"], alpha)
    model.on_epoch_start(5)
    assert not bool(model.hard_on)


@pytest.mark.parametrize("field,value", [("prior", "foo"), ("loss", "mse"), ("orth", "cosine"), ("soft_pool", "max"),
                                         ("mie_kl_reduce", "max"), ("prior_kl", "exact"), ("prior_kl_var_weight", -1.0),
                                         ("hard_assignment", "sample"), ("prior_map", "mlp")])
def test_invalid_options_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        make_model(**{field: value})


def test_both_ablations_at_once_raise():
    with pytest.raises(ValueError, match="sgm"):
        make_model(prior="standard", sgm=False)


# ---------------------------------------------------------------- SIGMA: schedules and state


def test_kl_weight_anneals_per_training_step_to_cap():
    model = make_model(anneal_steps=4, kl_cap=0.5)
    batch = make_batch(SEQS)
    assert model.kl_weight() == 0.0
    model.train()
    for n in range(1, 7):
        out = model(batch)
        assert int(model.step) == n - 1  # computing a loss changes no state
        model.on_train_step()
        assert float(out["lambda"]) == pytest.approx(min(0.5, (n - 1) / 4))  # the weight this step used
        assert int(model.step) == n
        assert model.kl_weight() == pytest.approx(min(0.5, n / 4))
    model.eval()
    with torch.no_grad():
        model.loss(batch)
    assert int(model.step) == 6
    assert make_model(anneal_steps=0, kl_cap=0.3).kl_weight() == pytest.approx(0.3)


def test_step_and_hard_on_are_saved_and_restored():
    model = make_model(hard_warmup_epochs=2, anneal_steps=100, kl_cap=0.2)
    assert not bool(model.hard_on)
    model.on_epoch_start(2)
    assert not bool(model.hard_on)
    model.on_epoch_start(3)
    assert bool(model.hard_on)
    model.train()
    batch = make_batch(SEQS)
    for _ in range(3):
        model.loss(batch)
        model.on_train_step()
    state = model.state_dict()
    assert "step" in state and "hard_on" in state
    resumed = make_model(seed=1, hard_warmup_epochs=2, anneal_steps=100, kl_cap=0.2)
    assert int(resumed.step) == 0 and not bool(resumed.hard_on)
    resumed.load_state_dict(state)
    assert int(resumed.step) == 3 and bool(resumed.hard_on)
    assert resumed.kl_weight() == pytest.approx(model.kl_weight()) == pytest.approx(0.03)
    # hard interests off: no hard state anywhere
    model.hard_on.fill_(False)
    with torch.no_grad():
        assert not model.eval().interest_distributions(batch.inputs)["has_hard"].any()



def test_short_training_recovers_planted_categories(tmp_path):
    """On ``synthetic`` (1000 items in 8 planted categories), 5 epochs move the items' argmax
    categories far from chance. Bound: NMI > 0.06 and > 3x the random baseline. A random assignment
    with the same category sizes scores ~0.013 here (std ~0.002 over permutations), so 0.06 is
    >20 standard deviations above chance, while this training reaches ~0.12 (0.33 after 11 epochs
    at demo size), leaving a 2x margin for run-to-run noise."""
    from sigmarec.evaluate.interests import known_categories, normalized_mutual_info, random_baseline_nmi
    from sigmarec.runs import make_config
    from sigmarec.train.trainer import Trainer

    cfg = make_config("sigma", {"data": {"dataset": "synthetic", "synthetic_users": 800, "cache_dir": str(tmp_path / "cache")},
                                "train": {"epochs": 5, "lr": 5e-3, "progress": False, "seed": 0},
                                "model": {"hidden_size": 32}}, preset="none")
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit()
    learned = trainer.model.item_category_probs().detach().numpy()[1:].argmax(1)
    _, known = known_categories(trainer.data.item_side, trainer.data.n_items)
    truth = known[1:].astype(str)
    nmi, chance = normalized_mutual_info(learned, truth), random_baseline_nmi(learned, truth)
    assert chance < 0.03
    assert nmi > 0.06 and nmi > 3 * chance, (nmi, chance)


def test_mie_item_grad_false_keeps_the_mie_vae_off_the_item_table():
    """With the SGM-VAE's terms silenced (temperature-free check: compare gradients of the MIE terms
    alone), ``mie_item_grad=false`` leaves the item table to the SGM-VAE; ``sgm=false`` overrides it."""
    batch = make_batch(SEQS)
    for item_grad, sgm, expect in ((True, True, True), (False, True, False), (False, False, True)):
        model = make_model(mie_item_grad=item_grad, sgm=sgm)
        model.train()
        model.hard_on.fill_(True)
        out = model.loss(batch)
        model.zero_grad()
        dist = model.interest_distributions(batch.inputs)
        m = dist["mean"][batch.targets > 0]
        mie = model._mie_likelihood(model.decode_interests(m), batch.targets[batch.targets > 0])
        mie.backward()
        grad = model.item.weight.grad
        assert (grad is not None and grad.abs().sum() > 0) == expect, (item_grad, sgm)
        assert model.categories.grad is not None and model.categories.grad.abs().sum() > 0
        assert torch.isfinite(out["loss"])


# ---------------------------------------------------------------- SIGMA: the prior's map into z-space and its controls


def _prior_parts(model: SIGMA, seed: int = 0):
    """Mixture-prior parts at the target positions of SEQS, in training mode with hard interests on."""
    model.train()
    model.hard_on.fill_(True)
    batch = make_batch(SEQS)
    torch.manual_seed(seed)
    dist = model.interest_distributions(batch.inputs)
    return dist, model.sgm_prior(dist, batch.inputs > 0, batch.targets > 0), batch


@pytest.mark.parametrize("kind", ["linear", "norm"])
def test_prior_map_shapes_and_linear_is_identity_at_init(kind):
    model = make_model(prior_map=kind)
    dist, (m, lv, log_alpha), batch = _prior_parts(model)
    mask = batch.targets > 0
    M = int(mask.sum())
    assert m.shape == (M, K, D) and lv.shape == (M, K, D) and log_alpha.shape == (M, K)
    torch.testing.assert_close(log_alpha.exp().sum(-1), torch.ones(M))
    torch.testing.assert_close(lv, dist["logvar"][mask])  # shift 0 at init
    if kind == "linear":  # identity-initialised: the prior is the paper's until training moves it
        torch.testing.assert_close(m, dist["mean"][mask])
    else:  # per-component LayerNorm: zero mean and variance var / (var + eps) over d, whatever the prefix length
        var = dist["mean"][mask].var(-1, unbiased=False)
        torch.testing.assert_close(m.mean(-1), torch.zeros(M, K), atol=1e-5, rtol=0)
        torch.testing.assert_close(m.pow(2).mean(-1), var / (var + 1e-5), atol=1e-3, rtol=0)


def test_prior_logvar_shift_is_added_and_learned():
    model = make_model(prior_map="linear", prior_logvar_shift=-4.0)
    dist, (_, lv, _), batch = _prior_parts(model)
    torch.testing.assert_close(lv, dist["logvar"][batch.targets > 0] - 4.0)
    assert make_model().prior_logvar_shift is None  # the paper's prior has no extra parameter (old checkpoints load)
    assert make_model(prior_logvar_shift=-2.0).prior_logvar_shift is not None


@pytest.mark.parametrize("detach", [True, False])
def test_prior_map_trains_from_the_kl_and_detach_stops_it_at_the_mie_outputs(detach):
    """Only the mixture KL is left (MIE terms weighted 0): the map into z-space always learns from it; the
    MIE-VAE's modules (omega MLP, GRU, categories) do exactly when the prior is not detached."""
    model = make_model(prior_map="linear", prior_logvar_shift=-1.0, detach_prior=detach, beta1=0.0, beta2=0.0)
    model.step.fill_(model.cfg.anneal_steps)
    _loss_and_backward(model)
    _assert_grads(model, ["prior_mean_map", "prior_logvar_shift", "enc_mu", "enc_logvar"])
    for name in ("omega", "hard.gru"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(name + ".")]
        reached = any(g is not None and g.abs().sum() > 0 for g in grads)
        assert reached != detach, name


def test_shuffled_sources_is_a_derangement_at_matched_prefix_length():
    batch = make_batch(SEQS)
    valid = batch.inputs > 0
    lengths = valid.sum(1)
    B, L = valid.shape
    for seed in range(20):
        torch.manual_seed(seed)
        rows, cols = shuffled_sources(valid)
        src = rows[:, 0]
        assert (rows == src[:, None]).all()
        assert (src != torch.arange(B)).all()  # no sequence keeps its own prior
        assert sorted(src.tolist()) == list(range(B))  # a permutation: every prior is used once
        for b in range(B):
            n, n_src = int(lengths[b]), int(lengths[src[b]])
            for j in range(n):  # the j-th real position (prefix length j + 1)
                col = L - n + j
                want = L - n_src + min(j + 1, n_src) - 1
                assert int(cols[b, col]) == want and bool(valid[src[b], want])
    one = valid[:1]
    rows, cols = shuffled_sources(one)
    assert (rows == 0).all() and (cols[one] == torch.arange(L)[one[0]]).all()


def test_prior_shuffle_feeds_the_kl_another_sequences_mixture():
    torch.manual_seed(0)
    model = make_model(prior_shuffle=True)
    model.hard_on.fill_(True)
    batch = make_batch(SEQS)
    dist = model.interest_distributions(batch.inputs)
    torch.manual_seed(5)
    m, lv, log_alpha = model.sgm_prior(dist, batch.inputs > 0, batch.targets > 0)
    torch.manual_seed(5)
    rows, cols = shuffled_sources(batch.inputs > 0)
    mask = batch.targets > 0
    torch.testing.assert_close(m, dist["mean"][rows, cols][mask])
    torch.testing.assert_close(log_alpha.exp(), dist["alpha"][rows, cols][mask])
    assert not torch.allclose(m, dist["mean"][mask])
    model.eval()  # inference never uses the prior: shuffling cannot leak into the scores
    inputs = batch.inputs
    torch.testing.assert_close(model.score_all(inputs), model.score_all(inputs))


def test_prior_diagnostics_on_a_tiny_model():
    from sigmarec.evaluate.prior import prior_diagnostics

    model = make_model(prior_map="linear")
    model.step.fill_(model.cfg.anneal_steps)
    model.hard_on.fill_(False)  # as before a hard-interest warm-up ends
    model.eval()
    out = prior_diagnostics(model, [make_batch(SEQS)] * 2)
    assert not bool(model.hard_on) and not model.training  # the model's state is given back as it was
    assert out["positions"] == 2 * int((make_batch(SEQS).targets > 0).sum())
    assert -1.0 <= out["cos_grad_recon_vs_mixture_kl"] <= 1.0 and out["grad_norm_mixture_kl"] > 0
    # the N(0, I) KL splits exactly into its mean and variance terms; each term is non-negative
    assert abs(out["standard_mean_term"] + out["standard_var_term"] - out["kl_standard"]) < 1e-4
    assert out["mixture_var_term_nearest"] >= 0 and out["mixture_mean_term_nearest"] >= 0
    assert out["kl_mixture_shuffled"] != out["kl_mixture"]
    with pytest.raises(ValueError, match="mixture"):
        prior_diagnostics(make_model(prior="standard"), [make_batch(SEQS)])


def test_omega_split_first_layer_equals_the_mlp_on_the_concatenation():
    model = make_model()
    model.eval()
    g = model.unit_categories()
    m = torch.randn(2, 5, K, D)
    direct = model.omega(torch.cat([g.expand(2, 5, K, D), m], dim=-1))
    torch.testing.assert_close(model.omega_logvar(g, m), direct, atol=1e-6, rtol=1e-5)
