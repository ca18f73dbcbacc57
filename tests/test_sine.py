"""Unit tests of SINE (``models/sine.py``): Eq. 1-8 against a per-user loop written from the paper,
top-K concept activation, padding invariance, the covariance regulariser (Eq. 10) against hand and
NumPy values, gradient flow, a tiny overfit and configuration errors."""

import dataclasses

import numpy as np
import pytest
import torch
from scipy.linalg import hadamard

from batches import fit, left_padded, make_batch
from sigmarec.models.layers.losses import LOSSES
from sigmarec.models.sine import SINE, SINEConfig, covariance_regularizer

N_ITEMS, MAX_LEN, D, K, L = 30, 10, 8, 3, 12
SMALL = dict(hidden_size=D, n_interests=K, n_concepts=L, n_negatives=5)
SEQS = [[1, 5, 9, 2, 7, 7, 30, 11, 4, 3, 8], [6, 2, 13], [21, 22, 23, 24, 25, 26], [17, 1]]  # training windows
INPUTS = [s[-MAX_LEN:] for s in SEQS]  # input sequences of at most MAX_LEN items


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Tiny tensors and a busy machine: one intra-op thread (see conftest)."""


def make_model(seed: int = 0, **overrides) -> SINE:
    torch.manual_seed(seed)
    return SINE(SINEConfig(**{**SMALL, **overrides}), n_items=N_ITEMS, max_len=MAX_LEN)


def scramble(model: SINE, seed: int = 1, scale: float = 0.5) -> SINE:
    """Random parameters of a size where no softmax is uniform and LayerNorm affines are not 1 / 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale + (1.0 if p.dim() == 1 and p.shape[0] == D else 0.0))
    return model


# ---------------------------------------------------------------- Eq. 1-8, one user at a time


def _ln(v, ln):
    mu = v.mean(-1, keepdim=True)
    var = ((v - mu) ** 2).mean(-1, keepdim=True)
    return (v - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def reference_user(m: SINE, seq: list[int]) -> dict:
    """Eq. 1-8 for one unpadded sequence, written as in the paper, looping over positions and slots."""
    c = m.cfg
    n = len(seq)
    X = m.item.weight[torch.tensor(seq)]  # [n, D]
    W1, w2, W3, w4 = m.w1.weight.T, m.w2.weight[0], m.w3.weight.T, m.w4.weight[0]
    W5 = W3 if c.share_w3 else m.w5.weight.T
    a = torch.softmax(torch.stack([torch.tanh(X[t] @ W1) @ w2 for t in range(n)]), 0)  # Eq. 1
    z = sum(a[t] * X[t] for t in range(n))
    s = m.concepts @ z  # Eq. 2
    idx = [int(i) for i in np.argsort(-s.detach().numpy(), kind="stable")[: c.n_interests]]
    Cu = torch.stack([m.concepts[i] * torch.sigmoid(s[i]) for i in idx])
    P = torch.zeros(n, c.n_interests, dtype=X.dtype)  # Eq. 3: P[t, k] = P(k|t)
    for t in range(n):
        logits = torch.stack([_ln(X[t] @ W3, m.ln1) @ _ln(Cu[k], m.ln2) for k in range(c.n_interests)])
        P[t] = torch.softmax(logits, 0)
    pos = m.pos.weight[MAX_LEN - n:]  # the newest item takes the last position row
    phi = []
    for k in range(c.n_interests):  # Eq. 4-5
        att = torch.softmax(torch.stack([torch.tanh((X[t] + pos[t]) @ m.wk1[k]) @ m.wk2[k] for t in range(n)]), 0)
        phi.append(_ln(sum(P[t, k] * att[t] * X[t] for t in range(n)), m.ln3))
    phi = torch.stack(phi)
    Xh = P @ Cu  # Eq. 6
    b = torch.softmax(torch.stack([torch.tanh(Xh[t] @ W5) @ w4 for t in range(n)]), 0)
    c_apt = _ln(sum(b[t] * Xh[t] for t in range(n)), m.ln4)
    e = torch.softmax(torch.stack([c_apt @ phi[k] / c.tau for k in range(c.n_interests)]), 0)  # Eq. 7
    return {"idx": idx, "assign": P, "interests": phi, "intention": c_apt, "weights": e, "user": e @ phi}  # Eq. 8


@pytest.mark.parametrize("share_w3", [False, True])
def test_encode_matches_a_per_user_reference(share_w3):
    m = scramble(make_model(share_w3=share_w3)).double().eval()
    with torch.no_grad():
        out = m.encode(left_padded(INPUTS, MAX_LEN))
        for b, seq in enumerate(INPUTS):
            ref = reference_user(m, seq)
            assert out["idx"][b].tolist() == ref["idx"]
            torch.testing.assert_close(out["assign"][b, MAX_LEN - len(seq):], ref["assign"])
            for key in ("interests", "intention", "weights", "user"):
                torch.testing.assert_close(out[key][b], ref[key], msg=key)
    assert not torch.allclose(out["weights"], out["weights"][:, :1].expand_as(out["weights"]))  # not vacuous


# ---------------------------------------------------------------- top-K activation (Eq. 2)


def test_top_k_activation_keeps_exactly_k_concepts():
    m = scramble(make_model()).eval()
    inputs = left_padded(INPUTS, MAX_LEN)
    act = m.activate_concepts(inputs)
    idx, gates, scores = act["idx"], act["gates"], act["scores"]
    assert idx.shape == gates.shape == (len(SEQS), K)
    for b in range(len(SEQS)):
        assert len(set(idx[b].tolist())) == K
        assert set(idx[b].tolist()) == set(torch.argsort(scores[b], descending=True)[:K].tolist())
    torch.testing.assert_close(gates, torch.sigmoid(scores.gather(1, idx)))
    torch.testing.assert_close(act["concepts"], m.concepts[idx] * gates.unsqueeze(-1))
    # for one user, the next-item part of the model touches exactly its K active concepts
    one = inputs[:1]
    m.encode(one)["user"].pow(2).sum().backward()
    touched = torch.nonzero(m.concepts.grad.abs().sum(1)).squeeze(1)
    assert sorted(touched.tolist()) == sorted(m.activate_concepts(one)["idx"][0].tolist())


# ---------------------------------------------------------------- padding


@pytest.mark.parametrize("inference", ["aggregate", "interests"])
def test_left_padding_changes_nothing(inference):
    m = scramble(make_model(inference=inference, dropout=0.3), scale=0.3).eval()
    narrow = left_padded([[3, 1, 4, 1, 5], [9], [2, 6, 5, 3, 5, 8], [7, 7]], 6)
    with torch.no_grad():
        base, parts = m.user_representation(narrow), m.encode(narrow)
        for width in (7, 9, MAX_LEN):
            wide = torch.cat([torch.zeros(4, width - 6, dtype=torch.long), narrow], dim=1)
            torch.testing.assert_close(m.user_representation(wide), base, atol=1e-5, rtol=1e-5)
            out = m.encode(wide)
            assert torch.equal(out["idx"], parts["idx"])
            for key in ("gates", "weights", "intention", "user"):
                torch.testing.assert_close(out[key], parts[key], atol=1e-5, rtol=1e-5, msg=key)
            assert (out["attention"][..., : width - 6] == 0).all()  # P(t|k) is 0 on padding
        other = m.user_representation(left_padded([[3, 1, 4, 1, 6], [8], [2, 6, 5, 3, 5, 9], [7, 1]], 6))
    assert (other - base).flatten(1).abs().amax(1).min() > 1e-4  # the representation does depend on the items


def test_inference_modes_and_scores():
    inputs = left_padded(INPUTS, MAX_LEN)
    agg = make_model().eval()
    ints = make_model(inference="interests").eval()
    with torch.no_grad():
        v, phi = agg.user_representation(inputs), ints.user_representation(inputs)
        assert v.shape == (4, D) and phi.shape == (4, K, D)
        torch.testing.assert_close(v, agg.encode(inputs)["user"])
        torch.testing.assert_close(agg.score_all(inputs), v @ agg.item.weight.T)
        torch.testing.assert_close(ints.score_all(inputs), torch.einsum("bkd,nd->bkn", phi, ints.item.weight).amax(1))
    assert SINEConfig().inference == "aggregate"  # the paper retrieves with v^u (Section 3.3)
    with pytest.raises(ValueError, match="max_len"):
        agg.user_representation(torch.ones(1, MAX_LEN + 1, dtype=torch.long))


# ---------------------------------------------------------------- covariance regulariser (Eq. 10)


def test_covariance_regularizer_matches_hand_and_numpy_values():
    # hand: rows centred by their own mean -> [4/3, -2/3, -2/3], [-1/3, 2/3, -1/3]; M_01 = (-2/3) / 3;
    # L_c = 1/2 * 2 * M_01^2 = 4/81 (centring by column means would give 1/2 * 2 * (1.25 / 3)^2)
    c = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    assert float(covariance_regularizer(c)) == pytest.approx(4 / 81, rel=1e-6)
    rng = np.random.default_rng(0)
    C = rng.normal(size=(7, 5))
    Cc = C - C.mean(axis=1, keepdims=True)
    M = Cc @ Cc.T / C.shape[1]
    expected = 0.5 * (np.sum(M**2) - np.sum(np.diag(M) ** 2))
    assert float(covariance_regularizer(torch.from_numpy(C))) == pytest.approx(expected, rel=1e-6)


def test_covariance_regularizer_is_zero_for_decorrelated_concepts():
    h = torch.tensor(hadamard(8), dtype=torch.float64)[1:]  # zero-mean, mutually orthogonal rows
    assert float(covariance_regularizer(h)) == pytest.approx(0.0, abs=1e-12)
    assert float(covariance_regularizer(torch.arange(1.0, 6.0)[:, None].expand(5, 4))) == 0.0  # constant rows
    mixed = h.clone()
    mixed[1] = mixed[0] + 0.5 * mixed[1]  # two correlated concepts
    assert float(covariance_regularizer(mixed)) > 0.1


@pytest.mark.parametrize("loss", LOSSES)
def test_regulariser_is_in_the_loss_whatever_the_next_item_loss(loss):
    batch = make_batch(SEQS, MAX_LEN)
    m = make_model(loss=loss, reg_weight=0.5)
    with torch.no_grad():
        m.concepts.mul_(30.0)  # a regulariser well above rounding
    out = m.loss(batch)
    assert set(out) == {"loss", "recon", "reg"}
    torch.testing.assert_close(out["reg"], m.covariance_regularizer().detach())
    assert float(out["reg"]) > 1e-3
    torch.testing.assert_close(out["loss"].detach(), out["recon"] + 0.5 * out["reg"])
    out["loss"].backward()
    assert (m.concepts.grad.abs().sum(1) > 0).all()  # every concept, not only the active ones
    # with weight 0 the loss is the next-item term and inactive concepts get no gradient
    m = make_model(loss=loss, reg_weight=0.0)
    out = m.loss(batch)
    assert float(out["reg"]) == 0.0 and torch.equal(out["loss"].detach(), out["recon"])
    out["loss"].backward()
    assert (m.concepts.grad.abs().sum(1) > 0).sum() <= len(SEQS) * K


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("tie", [True, False])
def test_gradients_reach_the_concept_pool_and_the_item_table(tie):
    m = make_model(tie_embeddings=tie, dropout=0.2)
    m.train()
    m.loss(make_batch(SEQS, MAX_LEN))["loss"].backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert m.concepts.grad.abs().sum() > 0
    assert m.item.weight.grad[1:].abs().sum() > 0
    assert m.item.weight.grad[0].abs().sum() == 0  # padding row
    for name in ("wk1", "pos", "w1", "w4") + (() if tie else ("input_item",)):
        p = getattr(m, name)
        g = (p.weight if isinstance(p, torch.nn.Module) else p).grad
        assert g.abs().sum() > 0, name


def periodic_seqs(n_users=8, width=MAX_LEN):
    """Each user cycles through 3 items of their own: SINE's bag of interests can learn them."""
    g = torch.Generator().manual_seed(5)
    out = []
    for _ in range(n_users):
        items = torch.randperm(20, generator=g)[:3] + 1
        out.append([int(items[t % 3]) for t in range(width + 1)])
    return out


def test_overfits_a_tiny_batch():
    # measured (seeds 0-4): full-softmax loss 2.90-2.97 -> 0.70-0.90 after 50 steps; assert a 2x drop
    torch.manual_seed(0)
    m = SINE(SINEConfig(**{**SMALL, "hidden_size": 16, "n_concepts": 20}), n_items=20, max_len=MAX_LEN)
    batch = make_batch(periodic_seqs(), MAX_LEN)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    m.train()

    def recon():  # the same random prefixes before and after
        torch.manual_seed(99)
        with torch.no_grad():
            return float(m.loss(batch)["recon"])

    first = recon()
    assert first == pytest.approx(np.log(20), rel=0.1)
    fit(m, batch, 50, opt)
    last = recon()
    assert last < first / 2, (first, last)


def test_dropout_is_active_only_in_training():
    m = make_model(dropout=0.5)
    inputs = left_padded(INPUTS, MAX_LEN)
    with torch.no_grad():
        m.eval()
        torch.testing.assert_close(m.score_all(inputs), m.score_all(inputs))
        m.train()
        assert not torch.equal(m.score_all(inputs), m.score_all(inputs))


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize("overrides, field", [
    ({"n_interests": 13}, "n_interests"),  # K > L = 12
    ({"n_interests": 0}, "n_interests"),
    ({"inference": "max"}, "inference"),
    ({"tau": 0.0}, "tau"),
    ({"reg_weight": -0.1}, "reg_weight"),
    ({"loss": "bpr"}, "loss"),
    ({"loss": "sampled", "n_negatives": 0}, "n_negatives"),
    ({"hidden_size": 0}, "hidden_size"),
])
def test_bad_configuration_names_the_field(overrides, field):
    with pytest.raises(ValueError, match=rf"model\.{field}\b"):
        make_model(**overrides)


def test_config_defaults_are_the_papers():
    c = SINEConfig()
    assert (c.n_interests, c.n_concepts, c.tau, c.reg_weight) == (4, 500, 0.1, 0.5)
    assert {f.name for f in dataclasses.fields(SINEConfig)} >= {"hidden_size", "dropout", "loss", "n_negatives", "init_std"}
