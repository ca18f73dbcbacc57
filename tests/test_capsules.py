"""Unit tests of the multi-interest baselines: the shared blocks (``layers/capsules.py``: squash, dynamic
routing, label-aware attention) on hand-checkable cases, and MIND, ComiRec-DR and ComiRec-SA
(``models/mind.py``, ``models/comirec.py``): padding invariance, zero weight on padding, eval
determinism, gradient flow, the training read-out, single-item inputs and overfitting a tiny batch."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from batches import fit, left_padded, make_batch
from sigmarec.models.comirec import ComiRecDR, ComiRecSA
from sigmarec.models.layers.capsules import CapsuleLayer, dynamic_routing, label_aware_attention, squash
from sigmarec.models.layers.losses import next_item_loss
from sigmarec.models.layers.prefixes import random_prefixes
from sigmarec.models.mind import MIND

N_ITEMS, MAX_LEN, D, K = 30, 10, 16, 3
MODELS = {"mind": MIND, "comirec_dr": ComiRecDR, "comirec_sa": ComiRecSA}


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Tiny tensors and a busy machine: one intra-op thread (see conftest)."""


def make_model(name, seed=0, n_items=N_ITEMS, **overrides):
    cls = MODELS[name]
    cfg = dataclasses.replace(cls.config_class(), **{"hidden_size": D, "n_interests": K, "n_negatives": 8, **overrides})
    torch.manual_seed(seed)
    return cls(cfg, n_items, MAX_LEN)


SEQS = [[3, 1, 4, 1, 5], [9], [2, 6, 5, 3, 5, 8], [7, 7]]


# ---------------------------------------------------------------- squash


def test_squash_norm_direction_and_zero():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(6, 5, generator=g) * torch.tensor([0.01, 0.3, 1.0, 2.0, 10.0, 100.0])[:, None]
    v = squash(s)
    n2 = (s * s).sum(-1)
    torch.testing.assert_close(v.norm(dim=-1), n2 / (1 + n2))
    torch.testing.assert_close(F.cosine_similarity(v, s, dim=-1), torch.ones(6))
    # along another dim too
    torch.testing.assert_close(squash(s.T, dim=0), v.T)
    z = torch.zeros(2, 4, requires_grad=True)
    out = squash(z)
    assert torch.equal(out, torch.zeros(2, 4))
    out.sum().backward()
    assert torch.isfinite(z.grad).all()


# ---------------------------------------------------------------- dynamic routing


def two_clusters(scale=3.0, init=0.5):
    """Three copies of ``a`` then three of ``b`` (orthogonal), K = 2, identity map, logits nudging
    interest 0 towards ``a`` and interest 1 towards ``b`` by ``init``."""
    a, b = torch.tensor([scale, 0.0, 0.0, 0.0]), torch.tensor([0.0, scale, 0.0, 0.0])
    e = torch.stack([a, a, a, b, b, b])[None]  # [1, 6, 4]
    layer = CapsuleLayer(4, 2, 6, maps="shared", iterations=3, routing_init="fixed")
    with torch.no_grad():
        layer.weight.copy_(torch.eye(4))
        layer.routing_logits.copy_(torch.tensor([[init] * 3 + [0.0] * 3, [0.0] * 3 + [init] * 3]))
    return layer, e, a, b


def test_routing_separates_two_clusters():
    layer, e, a, b = two_clusters()
    mask = torch.ones(1, 6, dtype=torch.bool)
    routing = layer(e, mask)
    assert len(routing.trace) == 3
    # first iteration by hand: c = sigmoid(0.5) on the nudged cluster, s_0 = 3 c a + 3 (1 - c) b
    c = 1 / (1 + math.exp(-0.5))
    s0 = 3 * c * a + 3 * (1 - c) * b
    n2 = float(s0 @ s0)
    torch.testing.assert_close(routing.trace[0].interests[0, 0], s0 * n2 / (1 + n2) / math.sqrt(n2))
    assert F.cosine_similarity(routing.trace[0].interests[0, 0], a, dim=0) < 0.9  # not there yet
    # after the 3 iterations each interest points at its cluster
    v = routing.interests[0]
    assert F.cosine_similarity(v[0], a, dim=0) > 0.99
    assert F.cosine_similarity(v[1], b, dim=0) > 0.99
    # the coupling moves monotonically towards the cluster, and sums to 1 over interests
    c0 = torch.stack([step.coupling[0, 0, :3] for step in routing.trace])  # interest 0 on cluster a
    c1 = torch.stack([step.coupling[0, 1, 3:] for step in routing.trace])  # interest 1 on cluster b
    assert (c0.diff(dim=0) > 0).all() and (c1.diff(dim=0) > 0).all()
    torch.testing.assert_close(routing.coupling.sum(1), torch.ones(1, 6))
    assert torch.equal(routing.coupling, routing.trace[-1].coupling)
    # more iterations change the output less
    longer = layer(e, mask, iterations=6).trace
    step = [(longer[i + 1].interests - longer[i].interests).norm() for i in range(5)]
    assert step[4] < step[0] and step[4] < 1e-3


def test_routing_ignores_padding():
    g = torch.Generator().manual_seed(1)
    u = torch.randn(2, 3, 5, 4, generator=g)
    logits = torch.randn(1, 3, 5, generator=g)
    mask = torch.tensor([[True] * 5, [False, False, True, True, True]])
    out = dynamic_routing(u, mask, logits)
    assert torch.equal(out.coupling[1, :, :2], torch.zeros(3, 2))
    # row 1 equals routing over its 3 real positions alone, whatever sits at the padding
    alone = dynamic_routing(u[1:, :, 2:], mask[1:, 2:], logits[:, :, 2:])
    torch.testing.assert_close(out.interests[1:], alone.interests)
    garbage = u.clone()
    garbage[1, :, :2] = 50.0
    torch.testing.assert_close(dynamic_routing(garbage, mask, logits).interests, out.interests)


def test_routing_stop_gradient_keeps_coupling_constant():
    g = torch.Generator().manual_seed(2)
    u = torch.randn(2, 3, 5, 4, generator=g, requires_grad=True)
    logits = torch.randn(1, 3, 5, generator=g)
    mask = torch.ones(2, 5, dtype=torch.bool)
    w = torch.randn(2, 3, 4, generator=g)
    (dynamic_routing(u, mask, logits, detach=True).interests * w).sum().backward()
    got = u.grad.clone()
    # reference: the final coupling as a constant, gradient only through squash(sum_i c_i u_i)
    u.grad = None
    c = dynamic_routing(u.detach(), mask, logits).coupling
    (squash((c.unsqueeze(2) @ u).squeeze(2)) * w).sum().backward()
    torch.testing.assert_close(got, u.grad)
    # without the stop-gradient the coupling carries gradient too, and the result differs
    u.grad = None
    (dynamic_routing(u, mask, logits, detach=False).interests * w).sum().backward()
    assert not torch.allclose(got, u.grad, atol=1e-4)


# ---------------------------------------------------------------- label-aware attention


def test_label_aware_attention_limits():
    g = torch.Generator().manual_seed(3)
    interests = torch.randn(5, 4, 8, generator=g)
    target = torch.randn(5, 8, generator=g)
    scores = torch.einsum("bkd,bd->bk", interests, target)
    best = scores.argmax(1)
    hard, w = label_aware_attention(interests, target, float("inf"))
    torch.testing.assert_close(hard, interests[torch.arange(5), best])
    assert torch.equal(w, F.one_hot(best, 4).float())
    # large p approaches the argmax: scale each row's best score to 3 (the limit needs a best score > 1;
    # 3^40 stays finite in float32)
    assert (scores.amax(1) > 0).all()
    near, w = label_aware_attention(interests, target * (3 / scores.amax(1, keepdim=True)), 40.0)
    assert (w[torch.arange(5), best] > 0.99).all()
    torch.testing.assert_close(near, hard, atol=0.05, rtol=0)
    mean, w = label_aware_attention(interests, target, 0.0)
    torch.testing.assert_close(mean, interests.mean(1))
    # p = 1: softmax of the scores; p = 2: sign-kept square
    torch.testing.assert_close(label_aware_attention(interests, target, 1.0)[1], torch.softmax(scores, 1))
    torch.testing.assert_close(label_aware_attention(interests, target, 2.0)[1], torch.softmax(scores * scores.abs(), 1))


def test_label_aware_attention_gradient_finite_at_zero_scores():
    g = torch.Generator().manual_seed(4)
    interests = torch.randn(2, 3, 4, generator=g)
    interests[:, 0] = 0.0  # a zero score: |x|^p has an infinite slope there for p < 1
    interests.requires_grad_(True)
    target = torch.randn(2, 4, generator=g, requires_grad=True)
    for p in (0.5, 2.0, 0.0, float("inf")):  # the weights of p = 0 and inf carry no gradient to the target
        out, _ = label_aware_attention(interests, target, p)
        (out * torch.arange(4.0)).sum().backward()
        assert torch.isfinite(interests.grad).all() and torch.isfinite(target.grad).all(), p
    assert target.grad.abs().sum() > 0  # the scores' gradient reached the target


# ---------------------------------------------------------------- models


@pytest.mark.parametrize("name", sorted(MODELS))
def test_defaults(name):
    cfg = MODELS[name].config_class()
    assert (cfg.hidden_size, cfg.n_interests, cfg.loss) == (64, 4, "ce")
    assert cfg.attention_power == (2.0 if name == "mind" else float("inf"))
    with pytest.raises(ValueError):
        make_model(name, loss="nope")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_left_padding_does_not_change_representation(name):
    model = make_model(name, dropout=0.3).eval()
    narrow = left_padded(SEQS, 6)
    with torch.no_grad():
        base = model.user_representation(narrow)
        assert base.shape == (4, K, D) and torch.isfinite(base).all()
        for width in (7, 9, MAX_LEN):
            wide = torch.cat([torch.zeros(len(SEQS), width - 6, dtype=torch.long), narrow], dim=1)
            torch.testing.assert_close(model.user_representation(wide), base, atol=1e-5, rtol=1e-5)
        # not vacuous: every row depends on its items (and, for the position-aware models, on their order)
        other = model.user_representation(left_padded([[3, 1, 4, 1, 6], [8], [2, 6, 5, 3, 5, 9], [7, 1]], 6))
        assert (other - base).abs().amax(dim=(1, 2)).min() > 1e-4
        if name != "mind":
            swapped = model.user_representation(left_padded([[1, 3, 4, 1, 5]], 6))
            assert (swapped - base[:1]).abs().amax() > 1e-6  # SA's attention starts near uniform: small, not 0


@pytest.mark.parametrize("name", sorted(MODELS))
def test_padding_gets_zero_weight(name):
    model = make_model(name).eval()
    inputs = left_padded(SEQS, MAX_LEN)
    with torch.no_grad():
        _, weights = model.extract(inputs)
    pad = (inputs == 0).unsqueeze(1).expand_as(weights)
    assert weights.shape == (4, K, MAX_LEN)
    assert torch.equal(weights[pad], torch.zeros(int(pad.sum())))
    real = inputs > 0
    if name == "comirec_sa":  # attention: each head's row sums to 1 over the real positions
        torch.testing.assert_close(weights.sum(-1), torch.ones(4, K))
    else:  # routing: each real position's coupling sums to 1 over the interests
        torch.testing.assert_close(weights.sum(1)[real], torch.ones(int(real.sum())))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_single_item_and_empty_inputs(name):
    model = make_model(name)
    inputs = left_padded([[5], [], [2, 3]], MAX_LEN)
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model.score_all(inputs)).all()
    model.train()
    batch = make_batch([[4, 6], [1, 2]], MAX_LEN)  # every training prefix is a single item
    loss = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_mind_routing_is_random_in_training_and_fixed_at_eval():
    model = make_model("mind")
    inputs = left_padded(SEQS, MAX_LEN)
    with torch.no_grad():
        model.train()
        assert not torch.equal(model.user_representation(inputs), model.user_representation(inputs))
        model.eval()
        first = model.score_all(inputs)
        torch.testing.assert_close(model.score_all(inputs), first, rtol=0, atol=0)
        # the eval logits are a stored buffer: a fresh model loading the weights scores the same
        other = make_model("mind", seed=5).eval()
        other.load_state_dict(model.state_dict())
        torch.testing.assert_close(other.score_all(inputs), first, rtol=0, atol=0)
    # a fixed init makes training deterministic too; ComiRec-DR's zero init is deterministic everywhere
    for model in (make_model("mind", routing_init="fixed"), make_model("comirec_dr")):
        model.train()
        with torch.no_grad():
            torch.testing.assert_close(model.user_representation(inputs), model.user_representation(inputs), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_loss_is_next_item_loss_of_the_label_aware_readout(name):
    model = make_model(name, loss="sampled")
    model.train()
    batch = make_batch([[1, 2, 3, 4, 5, 6], [7, 8, 9], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]], MAX_LEN)
    torch.manual_seed(11)
    got = model.loss(batch)
    torch.manual_seed(11)  # same prefixes, routing draws and negatives, in the same order
    s = random_prefixes(batch.inputs, batch.targets)
    width = int((s.prefix > 0).sum(1).max())  # the loss drops all-padding columns before routing
    interests, _ = model.extract(s.prefix[:, -width:])
    scores = torch.einsum("bkd,bd->bk", interests, model.item.weight[s.next_item])
    if name == "mind":  # softmax over interests of the sign-kept square (p = 2)
        user = (torch.softmax(scores * scores.abs(), 1).unsqueeze(-1) * interests).sum(1)
    else:  # ComiRec: the interest closest to the target
        user = interests[torch.arange(len(scores)), scores.argmax(1)]
    expected = next_item_loss(user, s.next_item, model.item.weight, "sampled", 8)
    torch.testing.assert_close(got, expected)


ROUTING_WEIGHTS = {"mind": ["capsules.weight", "proj.0.weight"], "comirec_dr": ["capsules.weight"],
                   "comirec_sa": ["w1.weight", "w2.weight", "position.weight"]}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gradients_reach_items_and_extractor(name):
    model = make_model(name)
    model.train()
    batch = make_batch([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], [12, 13, 14, 15], [16, 17, 18, 19, 20, 21, 22, 23]], MAX_LEN)
    model.loss(batch).backward()
    grad = model.item_embeddings().grad
    assert grad is not None and torch.isfinite(grad).all() and grad[1:].abs().sum() > 0
    params = dict(model.named_parameters())
    for pname in ROUTING_WEIGHTS[name]:
        g = params[pname].grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, pname
    if name == "comirec_dr":  # the newest position's maps are used by every prefix (argmax: by one interest at least)
        assert params["capsules.weight"].grad[-1].abs().sum() > 0


def cyclic_seqs():
    """Each user walks items 1..20 with its own start and stride."""
    return [[(u * 3 % 20 + (1 + u % 3) * t) % 20 + 1 for t in range(MAX_LEN + 1)] for u in range(8)]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_overfits_a_tiny_batch(name):
    # measured (seeds 0-5, 80 steps, mean over 4 fixed prefix draws), last / first: comirec_dr 0.22-0.28,
    # comirec_sa 0.69-0.77, mind 0.60-0.88. These are pools over a shared item table (MIND a bag), slower
    # on this toy transition task than SASRec, and MIND starts on a plateau (squash is quadratic near 0,
    # then a ReLU layer). Assert a 7% drop.
    model = make_model(name, n_items=20, dropout=0.0)
    batch = make_batch(cyclic_seqs(), MAX_LEN)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)

    def measured():
        torch.manual_seed(99)  # the same prefixes (and routing draws) each time
        with torch.no_grad():
            return sum(float(model.loss(batch)) for _ in range(4)) / 4

    model.train()
    first = measured()
    assert first == pytest.approx(math.log(20), rel=0.05)
    torch.manual_seed(0)
    fit(model, batch, 80, opt)
    last = measured()
    assert last < 0.93 * first, (first, last)
