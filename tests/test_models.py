import dataclasses
import math

import pytest
import torch

from batches import fit, left_padded, make_batch
from sigmarec.models import MODELS
from sigmarec.models.base import loss_parts
from sigmarec.models.layers.dropout import FastDropout, dropout_keep_mask
from sigmarec.models.layers.losses import LOSSES, next_item_loss

N_ITEMS, MAX_LEN = 40, 12
SMALL = {"hidden_size": 16, "n_layers": 1, "n_heads": 2, "gru_size": 24, "n_negatives": 10}


def make_model(name, loss="ce", dropout=0.1, seed=0, n_items=N_ITEMS, max_len=MAX_LEN, **extra):
    cls = MODELS[name]
    fields = {f.name for f in dataclasses.fields(cls.config_class)}
    values = {**SMALL, "loss": loss, "dropout": dropout, "attn_dropout": dropout, **extra}
    cfg = dataclasses.replace(cls.config_class(), **{k: v for k, v in values.items() if k in fields})
    torch.manual_seed(seed)
    return cls(cfg, n_items, max_len)


def random_seqs(n, seed, n_items=N_ITEMS, max_len=MAX_LEN):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, max_len + 2, (n,), generator=g)
    return [torch.randint(1, n_items + 1, (int(L),), generator=g).tolist() for L in lengths]


MODEL_NAMES = sorted(MODELS)
# Required loss drop on the cyclic toy task in 100 steps, where 10x is out of reach by design. Measured
# (loss after 100 steps from ~3.0): MIND 1.4-2.5, ComiRec-SA 1.7-2.3 (order-free pooling of one shared
# table), ComiRec-DR 1.6, SINE 2.56 (its user vector is a LayerNorm of mixtures of the input items scored
# against the same table). An untrained model stays at ~3.0.
# DSS trains on one random split per window (8 samples a step here, not 88 positions) and its seq2seq
# term dominates early: with seq2seq off it drops 2.2-2.7x (seeds 0-2); with it on, 1.0-1.3x.
OVERFIT_DROP = {"mind": 1.15, "comirec_sa": 1.2, "comirec_dr": 1.5, "sine": 1.1, "dss": 1.5}
OVERFIT_SETTINGS = {"dss": {"seq2seq": False}}
# SINE learns this task slowly: after 100 steps its loss (mean of 16 draws of the split points) had
# dropped only 1.04-1.12x (seeds 0-3), so one noisy draw passed or failed 1.1x by chance; after 300
# steps it drops 1.23-1.34x.
OVERFIT_STEPS = {"sine": 300, "bert4rec": 300}
# BERT4Rec learns from the ~20% of positions masked (about 20 targets a step here, SASRec 88), and a [mask] position
# has no item of its own in its residual stream: it must find its neighbours by position through attention, where
# SASRec's newest position carries the item the next one follows from. After 300 steps its cloze loss dropped
# 2.11x / 1.50x / 2.26x (seeds 0-2).
OVERFIT_DROP["bert4rec"] = 1.3
# Models that ignore the sequence by design (tested in their own files): no input dependence,
# no dropout, nothing to overfit.
SEQUENCE_FREE = {"pop"}
SENSITIVITY = {"bert4rec": 2e-3}
# Matrix factorisation models: no dropout, and the order of a sequence means nothing to them, so the cyclic
# next-item task cannot be learned (they are tested on synthetic data in test_baselines.py)
ORDER_FREE = {"bprmf", "lightgcn"}


def skip_sequence_free(name):
    if name in SEQUENCE_FREE:
        pytest.skip(f"{name} ignores the input sequence by design")


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Tiny tensors: one intra-op thread (see conftest)."""


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_loss_finite_and_gradients_reach_item_embeddings(name, loss):
    if name == "dss" and loss in ("ce_chunked", "sampled_logq"):
        pytest.skip("DSS scores an item by its max over K intentions; its own losses are tested in test_dss.py")
    model = make_model(name, loss)
    model.train()
    batch = make_batch(random_seqs(8, seed=1), MAX_LEN)
    out = model.loss(batch)
    value = loss_parts(out)["loss"]
    assert value.dim() == 0 and torch.isfinite(value)
    assert value.item() > 0
    value.backward()
    emb = model.item_embeddings()
    if name == "pop":  # counted scores (tests/test_pop.py): training fits only their temperature
        assert model.log_temperature.grad is not None and torch.isfinite(model.log_temperature.grad)
        return
    if emb.is_leaf:
        grad = emb.grad
    elif hasattr(model, "item"):  # a table with extra columns (BERT4Rec's output bias): its item embedding weights
        grad = model.item.weight.grad[: model.n_items + 1]
    elif hasattr(model, "item_mean"):  # DT4SR: augmented Gaussian parameters; the mean table
        grad = model.item_mean.weight.grad
    else:  # LightGCN: one table of users, then items, propagated
        grad = model.embedding.weight.grad[model.n_users:]
    assert grad is not None and torch.isfinite(grad).all()
    assert grad[1:].abs().sum() > 0
    # every parameter that took part gets a finite gradient
    for pname, p in model.named_parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_score_all_shape(name):
    model = make_model(name).eval()
    inputs = left_padded([[1, 2, 3], [4], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16], [2, 2]], MAX_LEN)
    with torch.no_grad():
        scores = model.score_all(inputs)
        rep = model.user_representation(inputs)
    assert scores.shape == (4, N_ITEMS + 1)
    assert rep.shape[0] == 4
    assert torch.isfinite(scores).all()
    # default scoring = dot product with the item table
    if rep.dim() == 2:
        torch.testing.assert_close(scores, rep @ model.item_embeddings().T)
    # narrower inputs (fewer columns than max_len) work too
    with torch.no_grad():
        assert model.score_all(inputs[:, -5:]).shape == (4, N_ITEMS + 1)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_left_padding_does_not_change_representation(name):
    skip_sequence_free(name)
    model = make_model(name, dropout=0.3).eval()
    seqs = [[3, 1, 4, 1, 5], [9], [2, 6, 5, 3, 5, 8], [7, 7]]
    narrow = left_padded(seqs, 6)
    with torch.no_grad():
        base = model.user_representation(narrow)
        for width in (7, 9, MAX_LEN):
            wide = torch.cat([torch.zeros(len(seqs), width - 6, dtype=torch.long), narrow], dim=1)
            torch.testing.assert_close(model.user_representation(wide), base, atol=1e-5, rtol=1e-5)
    # and the representation does depend on the items (the check above is not vacuous)
    with torch.no_grad():
        other = model.user_representation(left_padded([[3, 1, 4, 1, 6], [8], [2, 6, 5, 3, 5, 9], [7, 1]], 6))
    change = (other - base).abs().amax(dim=-1)
    # relative: capsule outputs start small; BERT4Rec's [mask] output at initialisation averages the whole sequence
    # (one changed item of six moved it 1.8% of its largest entry)
    assert (change > SENSITIVITY.get(name, 1e-2) * base.abs().amax(dim=-1)).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_eval_mode_is_deterministic(name):
    skip_sequence_free(name)
    model = make_model(name, dropout=0.5)
    inputs = left_padded(random_seqs(4, seed=3, max_len=MAX_LEN - 1), MAX_LEN)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.score_all(inputs), model.score_all(inputs))
    if name in ORDER_FREE:
        return  # no dropout
    model.train()
    with torch.no_grad():
        a, b = model.score_all(inputs), model.score_all(inputs)
    assert not torch.equal(a, b)  # dropout is active in training mode


def cyclic_seqs():
    """Deterministic sequences: each user walks the catalogue with its own stride, so the next item is
    a fixed function of the recent history."""
    seqs = []
    for u in range(8):
        start, stride = u * 3 % 20, 1 + u % 3
        seqs.append([(start + stride * t) % 20 + 1 for t in range(MAX_LEN + 1)])
    return seqs


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_overfits_a_tiny_fixed_set(name):
    skip_sequence_free(name)
    if name in ORDER_FREE:
        pytest.skip(f"{name} ignores the order of a sequence by design")
    # measured on CPU (seeds 0-2): ce loss ~3.0 -> sasrec 0.017-0.035, gru4rec 0.12-0.13 after 100 steps,
    # i.e. a 22x-180x drop; assert 10x. Pooling multi-interest models see the items of a prefix, not
    # their order, so this order-driven task is hard for them (see OVERFIT_DROP).
    model = make_model(name, "ce", dropout=0.0, n_items=20, **OVERFIT_SETTINGS.get(name, {}))
    batch = make_batch(cyclic_seqs(), MAX_LEN)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    def recon(out):  # next-item term (models returning parts, e.g. a VAE's ELBO, name it "recon")
        parts = loss_parts(out)
        return parts.get("recon", parts["loss"])

    def mean_recon():  # models that sample a split point per window (SINE, DSS, MIND, ComiRec) have a noisy loss
        with torch.no_grad():
            return sum(float(recon(model.loss(batch))) for _ in range(8)) / 8

    first = mean_recon()
    assert first == pytest.approx(math.log(20), rel=0.1)  # near-uniform at initialisation
    fit(model, batch, OVERFIT_STEPS.get(name, 100), opt)
    last = mean_recon()
    assert last < first / OVERFIT_DROP.get(name, 10), (first, last)


def test_ce_loss_matches_log_softmax_without_padding():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(5, 8, generator=g)
    items = torch.randn(11, 8, generator=g)
    targets = torch.tensor([1, 10, 4, 4, 7])
    logits = hidden @ items.T
    logp = torch.log_softmax(logits[:, 1:], dim=1)  # column 0 (padding) excluded from the softmax
    expected = -logp[torch.arange(5), targets - 1].mean()
    got = next_item_loss(hidden, targets, items, "ce")
    torch.testing.assert_close(got, expected)
    # including column 0 would give a different (smaller) value: the exclusion matters
    with_pad = -torch.log_softmax(logits, dim=1)[torch.arange(5), targets].mean()
    assert not torch.allclose(got, with_pad)
    # temperature divides the logits
    expected_t = -torch.log_softmax(logits[:, 1:] / 0.5, dim=1)[torch.arange(5), targets - 1].mean()
    torch.testing.assert_close(next_item_loss(hidden, targets, items, "ce", temperature=0.5), expected_t)


def test_ce_loss_does_not_modify_inputs():
    hidden, items = torch.randn(3, 4), torch.randn(6, 4)
    h0, i0 = hidden.clone(), items.clone()
    next_item_loss(hidden, torch.tensor([1, 2, 3]), items, "ce")
    assert torch.equal(hidden, h0) and torch.equal(items, i0)


def test_sampled_loss_masks_negatives_equal_to_target():
    # one item only: every negative equals the target, so all are masked and the loss is exactly 0
    hidden, items = torch.randn(4, 8), torch.randn(2, 8)
    loss = next_item_loss(hidden, torch.ones(4, dtype=torch.long), items, "sampled", n_negatives=7)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)

    # hand computation with the same negatives (same RNG state)
    g = torch.Generator().manual_seed(1)
    hidden, items = torch.randn(6, 8, generator=g), torch.randn(5, 8, generator=g)
    targets = torch.tensor([1, 2, 3, 4, 2, 1])
    torch.manual_seed(7)
    neg = torch.randint(1, 5, (12,))
    assert any(int(t) in neg.tolist() for t in targets)  # some negatives collide with targets
    torch.manual_seed(7)
    got = next_item_loss(hidden, targets, items, "sampled", n_negatives=12)
    rows = []
    for h, t in zip(hidden, targets):
        logits = [h @ items[t]] + [h @ items[n] for n in neg if n != t]
        rows.append(-torch.log_softmax(torch.stack(logits), dim=0)[0])
    torch.testing.assert_close(got, torch.stack(rows).mean())


def test_bce_negative_never_equals_target():
    # with two items the only valid negative of target 1 is item 2 (and vice versa)
    g = torch.Generator().manual_seed(2)
    hidden, items = torch.randn(6, 4, generator=g), torch.randn(3, 4, generator=g)
    targets = torch.tensor([1, 2, 1, 1, 2, 2])
    neg = 3 - targets
    pos_logit = (hidden * items[targets]).sum(-1)
    neg_logit = (hidden * items[neg]).sum(-1)
    expected = torch.nn.functional.softplus(-pos_logit).mean() + torch.nn.functional.softplus(neg_logit).mean()
    for seed in range(5):
        torch.manual_seed(seed)
        torch.testing.assert_close(next_item_loss(hidden, targets, items, "bce"), expected)


def test_unknown_loss_raises():
    with pytest.raises(ValueError, match="unknown loss"):
        next_item_loss(torch.randn(2, 4), torch.tensor([1, 2]), torch.randn(3, 4), "hinge")


# ---- FastDropout ----
def test_fast_dropout_eval_is_identity():
    drop = FastDropout(0.4).eval()
    x = torch.randn(64, 32)
    assert torch.equal(drop(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_fast_dropout_train_keeps_expectation(p):
    torch.manual_seed(0)
    drop = FastDropout(p).train()
    x = torch.linspace(-2.0, 2.0, 50)
    draws = drop(x.expand(20_000, -1).contiguous())
    # entries are either dropped (0) or scaled by 1 / (1 - p)
    kept = draws != 0
    torch.testing.assert_close(draws[kept], (x.expand_as(draws) / (1 - p))[kept])
    zero_frac = 1.0 - kept.float().mean().item()
    assert zero_frac == pytest.approx(p, abs=0.01)
    # mean over draws ~ input: std of the mean is |x| sqrt(p / (1 - p) / 20000) <= 0.02
    torch.testing.assert_close(draws.mean(0), x, atol=0.08, rtol=0.0)
    # different calls draw different masks
    assert not torch.equal(drop(x), drop(x))


@pytest.mark.parametrize("shape", [(7,), (3, 5, 7), (1001, 33)])
def test_dropout_keep_mask_rate_and_independence(shape):
    """The mask splits each 64-bit draw into four 16-bit lanes: any size works, the drop rate is p,
    and neighbouring entries (lanes of one draw) are uncorrelated."""
    torch.manual_seed(1)
    x = torch.empty(shape)
    assert dropout_keep_mask(x, 0.3).shape == x.shape
    big = torch.empty(400, 1000)
    keep = dropout_keep_mask(big, 0.3).float().flatten()
    assert 1 - keep.mean().item() == pytest.approx(0.3, abs=0.003)  # std of the rate: 0.0007
    lanes = keep.view(-1, 4)
    corr = torch.corrcoef(lanes.T)
    off = corr[~torch.eye(4, dtype=torch.bool)]
    assert off.abs().max().item() < 0.01  # std of each sample correlation: 0.003
    assert dropout_keep_mask(big, 0.0).all() and not dropout_keep_mask(big, 1 - 2**-17).any()


def test_fast_dropout_gradient_and_bad_p():
    drop = FastDropout(0.5).train()
    x = torch.ones(1000, requires_grad=True)
    y = drop(x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # d(x * mask / (1-p)) / dx = mask / (1-p) = y for x = 1
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError):
            FastDropout(bad)


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n in ("mind", "comirec_dr", "comirec_sa", "dss")])
def test_max_over_interests_equals_merging_per_interest_top_lists(name):
    """Scoring by the best interest ranks items exactly as querying each interest for its top N,
    merging the K x N candidates by score, deduplicating and keeping N (multi-interest retrieval)."""
    model = make_model(name).eval()
    inputs = left_padded(random_seqs(6, seed=5, max_len=MAX_LEN - 1), MAX_LEN)
    n = 7
    with torch.no_grad():
        rep = model.user_representation(inputs)
        assert rep.dim() == 3 and rep.shape[1] > 1
        exact = model.score_all(inputs)[:, 1:].topk(n, dim=1).indices + 1
        per = torch.einsum("bkd,nd->bkn", rep, model.item_embeddings())[:, :, 1:]
        vals, idx = per.topk(n, dim=2)  # each interest's own top N
    for b in range(len(inputs)):
        merged: dict[int, float] = {}
        for v, i in zip(vals[b].flatten().tolist(), (idx[b].flatten() + 1).tolist()):
            merged[i] = max(v, merged.get(i, -math.inf))
        top = sorted(merged, key=merged.get, reverse=True)[:n]
        assert top == exact[b].tolist()
