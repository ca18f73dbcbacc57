"""Unit tests of DSS (``models/dss.py``): the lambda-quantile selection, the disentangling layer and
both losses against naive references written with Python loops, padding invariance, the separate
beta table of reversed-future sequences, the seq2seq ablation switch, gradient flow, overfitting a
tiny batch and configuration errors."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from batches import fit, left_padded, make_batch
from sigmarec.models.dss import (
    DSS,
    SEQ2ITEM_LOSSES,
    DSSConfig,
    quantile_select,
    seq2item_loss,
    seq2seq_losses,
)
from sigmarec.models.layers.prefixes import random_prefixes

N_ITEMS, MAX_LEN, D, K = 30, 10, 16, 3
SMALL = dict(hidden_size=D, n_layers=1, n_interests=K, dropout=0.0, attn_dropout=0.0, n_negatives=8)
SEQS = [[1, 5, 9, 2, 7, 7, 30, 11, 4, 3, 8], [6, 2, 13], [21, 22, 23, 24, 25, 26], [17, 1], [3, 4, 5, 6, 7, 8, 9]]


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Tiny tensors and a busy machine: one intra-op thread (see conftest)."""


def make_model(seed: int = 0, **overrides) -> DSS:
    torch.manual_seed(seed)
    return DSS(DSSConfig(**{**SMALL, **overrides}), n_items=N_ITEMS, max_len=MAX_LEN)


# ---------------------------------------------------------------- quantile selection (high-confidence samples)


def test_quantile_select_keeps_the_smallest_share():
    g = torch.Generator().manual_seed(0)
    values = torch.randperm(100, generator=g).float().view(25, 4)  # 100 distinct losses
    mask = quantile_select(values, 0.3)
    assert mask.shape == values.shape and mask.dtype == torch.bool
    assert int(mask.sum()) == 30
    assert sorted(values[mask].tolist()) == list(range(30))  # exactly the 30 smallest
    assert int(quantile_select(values, 1.0).sum()) == 100
    assert quantile_select(values, 0.001)[values == 0].all() and int(quantile_select(values, 0.001).sum()) == 1
    assert int(quantile_select(values, 0.55).sum()) == 55
    # ties with the threshold are kept (L <= tau)
    assert quantile_select(torch.tensor([1.0, 1.0, 2.0, 3.0]), 0.25).tolist() == [True, True, False, False]


@pytest.mark.parametrize("lam", [0.0, -0.1, 1.5])
def test_quantile_select_rejects_lambda_outside_unit_interval(lam):
    with pytest.raises(ValueError, match="quantile"):
        quantile_select(torch.arange(4.0), lam)


# ---------------------------------------------------------------- the disentangling layer (clustering, weighting, aggregation)


def naive_disentangle(layer, z, inputs, beta):
    """Clustering, weighting and aggregation one user at a time, over that user's real items only."""
    d = z.shape[-1]
    out = []
    for b in range(z.shape[0]):
        real = [i for i in range(inputs.shape[1]) if inputs[b, i] > 0]
        zb = z[b, real]  # [t, d]
        t = len(real)
        alpha = layer.pos.weight[layer.max_len - t:]  # positions of the t real items, newest last
        c = F.layer_norm(layer.prototypes, (d,), layer.norm_c.weight, layer.norm_c.bias)
        zn = F.layer_norm(zb, (d,), layer.norm_z.weight, layer.norm_z.bias)
        p_k_i = torch.softmax(zn @ c.T / math.sqrt(d), dim=1)  # [t, K]
        key_t = F.layer_norm(alpha + zb, (d,), layer.norm_key.weight, layer.norm_key.bias)
        key = key_t + torch.relu(key_t @ layer.key_ff.weight.T + layer.key_ff.bias)
        query = F.layer_norm(alpha[-1] + zb[-1] + layer.query_bias, (d,), layer.norm_query.weight, layer.norm_query.bias)
        p_i = torch.softmax(key @ query / math.sqrt(d), dim=0)  # [t]
        rows = []
        for k in range(beta.shape[0]):
            s = sum(p_k_i[i, k] * p_i[i] * zb[i] for i in range(t))
            rows.append(F.layer_norm(beta[k] + s, (d,), layer.norm_out.weight, layer.norm_out.bias))
        out.append(torch.stack(rows))
    return torch.stack(out)


def test_disentangle_layer_matches_the_equations():
    model = make_model()
    layer = model.disentangle
    with torch.no_grad():  # non-trivial LayerNorm affines and biases, so a swapped norm shows
        for ln in (layer.norm_z, layer.norm_c, layer.norm_key, layer.norm_query, layer.norm_out):
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.normal_(0, 0.3)
        layer.query_bias.normal_()
        layer.key_ff.weight.normal_(0, 0.3)
        layer.key_ff.bias.normal_()
        layer.pos.weight.normal_()
    inputs = left_padded([[3, 1, 4, 1, 5], [9], [2, 6, 5, 3, 5, 8, 9, 7]], 8)
    z = torch.randn(3, 8, D)
    beta = torch.randn(K, D)
    with torch.no_grad():
        got = layer(z, inputs, beta)
        want = naive_disentangle(layer, z, inputs, beta)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- losses (Eq. 3, 6)


def test_seq2seq_losses_match_eq3():
    g = torch.Generator().manual_seed(1)
    B = 4
    phi, fut = torch.randn(B, K, D, generator=g), torch.randn(B, K, D, generator=g)
    got = seq2seq_losses(phi, fut)
    for b in range(B):
        for k in range(K):
            denom = sum(math.exp(float(fut[c, j] @ phi[b, k])) for c in range(B) for j in range(K))
            want = -(float(fut[b, k] @ phi[b, k]) - math.log(denom))
            assert got[b, k].item() == pytest.approx(want, rel=1e-4)


def test_seq2item_inbatch_matches_eq6_and_ce_is_max_over_interests():
    g = torch.Generator().manual_seed(2)
    M = 5
    phi, items = torch.randn(M, K, D, generator=g), torch.randn(N_ITEMS + 1, D, generator=g)
    targets = torch.tensor([3, 7, 3, 12, 30])  # rows 0 and 2 share a next item
    for mask_dup in (False, True):
        want = 0.0
        for m in range(M):
            num = max(float(items[targets[m]] @ phi[m, k]) for k in range(K))
            others = [n for n in range(M) if n == m or not (mask_dup and targets[n] == targets[m])]
            den = math.log(sum(math.exp(float(items[targets[n]] @ phi[m, k])) for n in others for k in range(K)))
            want += (den - num) / M
        got = seq2item_loss(phi, targets, items, "inbatch", mask_duplicates=mask_dup)
        assert got.item() == pytest.approx(want, rel=1e-4)
    scores = torch.einsum("mkd,nd->mnk", phi, items).amax(-1)  # max over K, then softmax over items 1..N
    want_ce = -torch.log_softmax(scores[:, 1:], dim=1)[torch.arange(M), targets - 1].mean()
    torch.testing.assert_close(seq2item_loss(phi, targets, items, "ce"), want_ce)


@pytest.mark.parametrize("reduce, weight", [("batch", 1.0), ("kept", 0.5)])
def test_loss_parts_follow_the_documented_pipeline(reduce, weight):
    """``loss()`` = seq2item on the random prefixes + the kept seq2seq losses (1/sqrt(D) scale) summed
    over B (``batch``) or averaged (``kept``), times ``seq2seq_weight``; ``kept`` is the share
    ceil(lambda B K) / (B K)."""
    model = make_model(quantile=0.5, seq2seq_reduce=reduce, seq2seq_weight=weight).eval()  # eval: no dropout, so both passes agree
    batch = make_batch(SEQS, MAX_LEN)
    torch.manual_seed(5)
    with torch.no_grad():
        out = model.loss(batch)
    torch.manual_seed(5)
    s = random_prefixes(batch.inputs, batch.targets)
    with torch.no_grad():
        phi, fut = model.encode(s.prefix), model.encode(s.future, future=True)
        losses = seq2seq_losses(phi / math.sqrt(D), fut)
        B = len(SEQS)
        n_keep = math.ceil(0.5 * B * K)  # 8 of 15: neither B nor B * K, so a wrong divisor shows
        kept_sum = losses.flatten().sort().values[:n_keep].sum().item()
        s2i = seq2item_loss(phi, s.next_item, model.item.weight, "ce").item()
    s2s = kept_sum / B if reduce == "batch" else kept_sum / n_keep
    assert set(out) >= {"loss", "seq2item", "seq2seq", "kept"}
    assert out["kept"].item() == pytest.approx(n_keep / (B * K))
    assert out["seq2seq"].item() == pytest.approx(s2s, rel=1e-4)
    assert out["seq2item"].item() == pytest.approx(s2i, rel=1e-4)
    assert out["loss"].item() == pytest.approx(s2i + weight * s2s, rel=1e-4)


# ---------------------------------------------------------------- encoder properties


def test_user_representation_is_k_vectors_and_scores_by_max():
    model = make_model().eval()
    inputs = left_padded([[3, 1, 4], [9], [2, 6, 5, 3, 5, 8]], 6)
    with torch.no_grad():
        rep = model.user_representation(inputs)
        scores = model.score_all(inputs)
    assert rep.shape == (3, K, D)
    torch.testing.assert_close(scores, torch.einsum("bkd,nd->bnk", rep, model.item_embeddings()).amax(-1))
    assert (rep[:, 0] - rep[:, 1]).abs().amax() > 1e-3  # the K vectors differ


def test_left_padding_does_not_change_either_encoding():
    model = make_model(dropout=0.3, attn_dropout=0.3).eval()
    seqs = [[3, 1, 4, 1, 5], [9], [2, 6, 5, 3, 5, 8], [7, 7]]
    narrow = left_padded(seqs, 6)
    with torch.no_grad():
        base, base_f = model.user_representation(narrow), model.encode(narrow, future=True)
        for width in (7, 9, MAX_LEN):
            wide = torch.cat([torch.zeros(len(seqs), width - 6, dtype=torch.long), narrow], dim=1)
            torch.testing.assert_close(model.user_representation(wide), base, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(model.encode(wide, future=True), base_f, atol=1e-5, rtol=1e-5)
        other = model.user_representation(left_padded([[3, 1, 4, 1, 6], [8], [2, 6, 5, 3, 5, 9], [7, 1]], 6))
    assert (other - base).abs().amax(dim=(1, 2)).min() > 1e-4  # the representation does depend on the items


def test_future_encoder_has_its_own_beta_table():
    model = make_model().eval()
    inputs = left_padded([[3, 1, 4, 1, 5], [9, 2], [2, 6, 5, 3, 5, 8]], 6)
    with torch.no_grad():
        model.beta_future.copy_(model.beta_input)  # same table -> same encoder: beta is the only difference
        torch.testing.assert_close(model.encode(inputs, future=True), model.user_representation(inputs))
        rep, fut = model.user_representation(inputs), model.encode(inputs, future=True)
        model.beta_future.add_(torch.randn_like(model.beta_future))
        fut2, rep2 = model.encode(inputs, future=True), model.user_representation(inputs)
    assert (fut2 - fut).abs().amax() > 1e-2
    torch.testing.assert_close(rep2, rep, atol=0.0, rtol=0.0)


# ---------------------------------------------------------------- ablation switch, gradients


def test_seq2seq_false_has_no_seq2seq_term_nor_future_gradient():
    batch = make_batch(SEQS, MAX_LEN)
    for seq2seq in (False, True):
        model = make_model(seq2seq=seq2seq)
        model.train()
        out = model.loss(batch)
        out["loss"].backward()
        grad = model.beta_future.grad
        if seq2seq:
            assert out["seq2seq"].item() > 0 and 0 < out["kept"].item() <= 1
            assert out["loss"].item() > out["seq2item"].item()
            assert grad is not None and grad.abs().sum() > 0
        else:
            assert out["seq2seq"].item() == 0 and out["kept"].item() == 0
            assert out["loss"].item() == pytest.approx(out["seq2item"].item())
            assert grad is None or grad.abs().sum() == 0


@pytest.mark.parametrize("loss", SEQ2ITEM_LOSSES)
def test_gradients_reach_prototypes_items_and_the_disentangling_layer(loss):
    model = make_model(loss=loss)
    model.train()
    out = model.loss(make_batch(SEQS, MAX_LEN))
    assert torch.isfinite(out["loss"]) and out["loss"].item() > 0
    out["loss"].backward()
    layer = model.disentangle
    for name, p in [("prototypes", layer.prototypes), ("item", model.item.weight), ("beta_input", model.beta_input),
                    ("beta_future", model.beta_future), ("alpha", layer.pos.weight), ("W", layer.key_ff.weight),
                    ("b'", layer.query_bias), ("backbone", model.encoder.blocks[0].qkv.weight)]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert model.item.weight.grad[1:].abs().sum() > 0


def test_seq2seq_alone_trains_the_prototypes():
    model = make_model()
    prefix = left_padded([s[:2] for s in SEQS], MAX_LEN)
    future = left_padded([s[2:][::-1] for s in SEQS], MAX_LEN)
    seq2seq_losses(model.encode(prefix) / math.sqrt(D), model.encode(future, future=True)).sum().backward()
    assert model.disentangle.prototypes.grad.abs().sum() > 0
    assert model.item.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- training


def test_overfits_a_tiny_batch():
    # measured on CPU (seeds 0-5, 50 steps at lr 1e-2): total loss 7.5-9.0 -> 3.5-4.6 (ratio 0.47-0.59), seq2item
    # 3.40 (= log 30) -> 2.44-2.73; one split per window and step learns slowly, so assert ratio < 0.75 and a 0.4 drop
    seqs = [[(3 * u + s * t) % 20 + 1 for t in range(MAX_LEN + 1)] for u, s in enumerate([1, 2, 3, 1, 2, 3, 1, 2])]
    batch = make_batch(seqs, MAX_LEN)
    model = make_model(seed=0)

    def total() -> tuple[float, float]:  # the same split points every time
        torch.manual_seed(99)
        with torch.no_grad():
            out = model.loss(batch)
        return float(out["loss"]), float(out["seq2item"])

    first = total()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    fit(model, batch, 50, opt)
    last = total()
    assert last[0] < 0.75 * first[0], (first, last)
    assert last[1] < first[1] - 0.4, (first, last)


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize("field, value", [("quantile", 0.0), ("quantile", 1.2), ("n_interests", 0), ("loss", "softmax"),
                                          ("seq2seq_reduce", "sum"), ("seq2seq_temperature", -1.0), ("seq2seq_weight", -1.0)])
def test_config_errors_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"model.{field}"):  # when the config is built (shared fields) or the model
        DSS(dataclasses.replace(DSSConfig(**SMALL), **{field: value}), N_ITEMS, MAX_LEN)


def test_defaults():
    cfg = DSSConfig()
    assert (cfg.hidden_size, cfg.n_heads, cfg.n_interests, cfg.quantile, cfg.loss) == (64, 1, 4, 0.5, "ce")
    assert cfg.seq2seq and cfg.seq2seq_weight == 1.0
