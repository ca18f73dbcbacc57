import numpy as np
import pytest
import torch

from sigmarec.evaluate.negatives import sample_negatives, sampled_ranks


def _random_histories(rng, n_users, n_items, max_len):
    lengths = rng.integers(0, max_len + 1, size=n_users)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = rng.integers(1, n_items + 1, size=int(offsets[-1])).astype(np.int64)
    targets = rng.integers(1, n_items + 1, size=n_users).astype(np.int64)
    return flat, offsets, targets


def _check_valid(neg, flat, offsets, targets, n_items, n):
    assert neg.shape == (targets.size, n) and neg.dtype == np.int64
    assert neg.min() >= 1 and neg.max() <= n_items
    for u in range(targets.size):
        row = neg[u]
        assert len(set(row.tolist())) == n, f"duplicates in row {u}"
        assert targets[u] not in row
        hist = set(flat[offsets[u] : offsets[u + 1]].tolist())
        assert not hist & set(row.tolist())


@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_negatives_valid(sampler):
    rng = np.random.default_rng(1)
    n_items, n = 60, 20
    flat, offsets, targets = _random_histories(rng, 300, n_items, 35)
    pop = rng.integers(1, 50, size=n_items + 1)
    neg = sample_negatives(flat, offsets, targets, n_items, n, sampler=sampler, popularity=pop, seed=3)
    _check_valid(neg, flat, offsets, targets, n_items, n)


def test_negatives_exhaust_catalogue():
    # user 0 has exactly n=3 eligible items {8, 9, 10}: both samplers must return all of them
    n_items, n = 10, 3
    flat = np.array([1, 2, 3, 4, 5, 7], dtype=np.int64)
    offsets = np.array([0, 6, 6], dtype=np.int64)
    targets = np.array([6, 1], dtype=np.int64)
    pop = np.arange(n_items + 1, dtype=np.float64) ** 2
    for sampler in ["uniform", "popularity"]:
        for seed in range(5):
            neg = sample_negatives(flat, offsets, targets, n_items, n, sampler=sampler, popularity=pop, seed=seed)
            assert sorted(neg[0].tolist()) == [8, 9, 10]
            _check_valid(neg, flat, offsets, targets, n_items, n)


def test_negatives_dense_histories_large_n():
    # most of the catalogue is excluded for many users: exercises redraw rounds and exact fill
    rng = np.random.default_rng(5)
    n_items, n_users, n = 50, 200, 12
    perm = np.argsort(rng.random((n_users, n_items)), axis=1) + 1
    lengths = rng.integers(20, n_items - n, size=n_users)
    flat = np.concatenate([perm[u, : lengths[u]] for u in range(n_users)]).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    targets = perm[np.arange(n_users), n_items - 1].astype(np.int64)
    pop = rng.pareto(1.0, size=n_items + 1) + 0.01
    for sampler in ["uniform", "popularity"]:
        neg = sample_negatives(flat, offsets, targets, n_items, n, sampler=sampler, popularity=pop, seed=1)
        _check_valid(neg, flat, offsets, targets, n_items, n)


def test_negatives_deterministic():
    rng = np.random.default_rng(2)
    flat, offsets, targets = _random_histories(rng, 100, 40, 10)
    a = sample_negatives(flat, offsets, targets, 40, 10, seed=7)
    b = sample_negatives(flat, offsets, targets, 40, 10, seed=7)
    c = sample_negatives(flat, offsets, targets, 40, 10, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_popularity_prefers_popular_items():
    n_items, n_users, n = 100, 2000, 5
    flat = np.zeros(0, dtype=np.int64)
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    targets = np.full(n_users, 1, dtype=np.int64)
    pop = np.ones(n_items + 1)
    pop[91:] = 50.0  # items 91..100 carry ~5/6 of the mass
    pop[0] = 1e6  # padding must be ignored
    neg = sample_negatives(flat, offsets, targets, n_items, n, sampler="popularity", popularity=pop, seed=0)
    frac_popular = np.mean(neg >= 91)
    assert frac_popular > 0.6  # expected ~0.8 under successive sampling; uniform would give 0.1
    neg_u = sample_negatives(flat, offsets, targets, n_items, n, sampler="uniform", seed=0)
    assert np.mean(neg_u >= 91) < 0.2
    assert not np.any(neg == 0)


def test_zero_popularity_never_drawn():
    n_items = 20
    pop = np.ones(n_items + 1)
    pop[:11] = 0
    offsets = np.zeros(51, dtype=np.int64)
    neg = sample_negatives(np.zeros(0, np.int64), offsets, np.full(50, 1), n_items, 10, "popularity", pop)
    assert neg.min() >= 11
    with pytest.raises(ValueError, match="eligible"):
        sample_negatives(np.zeros(0, np.int64), offsets, np.full(50, 12), n_items, 10, "popularity", pop)


def test_impossible_request_raises():
    flat = np.array([1, 2, 3], dtype=np.int64)
    offsets = np.array([0, 0, 3], dtype=np.int64)
    targets = np.array([1, 4], dtype=np.int64)
    with pytest.raises(ValueError, match=r"user index 1 has only 1 eligible"):
        sample_negatives(flat, offsets, targets, 5, 2, seed=0)
    with pytest.raises(ValueError, match="unknown sampler"):
        sample_negatives(flat, offsets, targets, 5, 1, sampler="bogus")
    with pytest.raises(ValueError, match="popularity"):
        sample_negatives(flat, offsets, targets, 5, 1, sampler="popularity")


def test_sampled_ranks():
    target = torch.tensor([0.5, 1.0, float("nan")])
    negs = torch.tensor([[0.1, 0.5, 0.9], [0.1, 0.2, 0.3], [0.1, 0.2, 0.3]])
    assert sampled_ranks(target, negs).tolist() == [2, 0, 3]


@pytest.mark.parametrize("rounds", [0, 1])
def test_exact_fill_path(monkeypatch, rounds):
    import sigmarec.evaluate.negatives as negmod

    monkeypatch.setattr(negmod, "_MAX_REJECTION_ROUNDS", rounds)
    rng = np.random.default_rng(4)
    n_items, n = 30, 8
    flat, offsets, targets = _random_histories(rng, 120, n_items, 20)
    pop = rng.integers(0, 20, size=n_items + 1)
    pop[1:] += 1
    for sampler in ["uniform", "popularity"]:
        neg = negmod.sample_negatives(flat, offsets, targets, n_items, n, sampler=sampler, popularity=pop, seed=2)
        _check_valid(neg, flat, offsets, targets, n_items, n)
