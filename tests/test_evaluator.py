import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sigmarec.config import EvalConfig, ProtocolConfig
from sigmarec.data.protocols import comirec_user_split, leave_one_out
from sigmarec.data.sequences import SequenceData
from sigmarec.evaluate.evaluator import evaluate, ragged_ranges
from sigmarec.evaluate.negatives import sample_negatives
from sigmarec.models.base import SequentialRecommender


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Tiny tensors: one intra-op thread (see conftest)."""


class TableModel(SequentialRecommender):
    """Scores of every item are a fixed row of ``table``, chosen by the last input item."""

    config_class = dict

    def __init__(self, table, max_len=50):
        table = torch.as_tensor(table, dtype=torch.float32)
        super().__init__({}, table.shape[1] - 1, max_len)
        self.register_buffer("table", table)
        self.seen: list[torch.Tensor] = []

    def score_all(self, inputs):
        self.seen.append(inputs.clone())
        assert not self.training
        return self.table[inputs[:, -1]]


def make_data(seqs, n_items):
    lengths = [len(s) for s in seqs]
    return SequenceData(np.concatenate(seqs), np.concatenate([[0], np.cumsum(lengths)]),
                        np.array([f"u{i}" for i in range(len(seqs))], dtype=object),
                        np.array(["<pad>"] + [f"i{i}" for i in range(1, n_items + 1)], dtype=object))


# 3 users, 6 items. Test cases (leave-one-out): u0 [1,2,3,4] -> 5, u1 [2,3] -> 6, u2 [6,1,4] -> 2.
SEQS = [[1, 2, 3, 4, 5], [2, 3, 6], [6, 1, 4, 2]]
TABLE = np.zeros((7, 7))
TABLE[4] = [0, 9, 8, 7, 6, 1, 2]  # last item 4 (u0, u2)
TABLE[3] = [0, 5, 9, 9, 3, 4, 6]  # last item 3 (u1)


@pytest.fixture
def small():
    data = make_data(SEQS, 6)
    return data, leave_one_out(data, ProtocolConfig(), max_len=50)


def expected_metrics(ranks, ks):
    ranks = np.asarray(ranks, dtype=float)
    out = {}
    for k in ks:
        out[f"recall@{k}"] = float(np.mean(ranks < k))
        out[f"ndcg@{k}"] = float(np.mean([1 / math.log2(r + 2) if r < k else 0.0 for r in ranks]))
    out["mrr"] = float(np.mean(1 / (ranks + 1)))
    return out


def check(metrics, ranks, ks):
    for key, value in expected_metrics(ranks, ks).items():
        assert metrics[key] == pytest.approx(value), key
        if key.startswith("recall"):
            assert metrics["hit" + key[6:]] == pytest.approx(value)
    assert metrics["n"] == len(ranks)


def test_split_is_what_the_hand_computation_assumes(small):
    data, split = small
    assert list(split.test.targets) == [5, 6, 2]
    assert [list(data.items[s:e]) for s, e in zip(split.test.starts, split.test.ends)] == [[1, 2, 3, 4], [2, 3], [6, 1, 4]]
    assert list(split.valid.targets) == [4, 3, 4]


def test_hand_computed_metrics_with_history_exclusion(small):
    data, split = small
    model = TableModel(TABLE)
    m = evaluate(model, data, split.test, EvalConfig(ks=[1, 2, 5]), max_len=50)
    # u0: candidates 5 (1), 6 (2) -> rank 1; u1: candidates 1 (5), 4 (3), 5 (4), 6 (6) -> rank 0;
    # u2: candidates 2 (8), 3 (7), 5 (1) -> rank 0
    check(m, [1, 0, 0], [1, 2, 5])
    assert m["recall@1"] == pytest.approx(2 / 3)
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3) + 2) / 3)
    # coverage: top-1 lists are {6}, {6}, {2} -> 2 distinct items of 6
    assert m["coverage@1"] == pytest.approx(2 / 6)


def test_hand_computed_metrics_without_history_exclusion(small):
    data, split = small
    m = evaluate(TableModel(TABLE), data, split.test, EvalConfig(ks=[1, 2, 5], exclude_history=False), max_len=50)
    # u0: target 5 (1) below 1,2,3,4,6 -> rank 5; u1: target 6 (6) below 2 (9), 3 (9) -> rank 2;
    # u2: target 2 (8) below 1 (9) -> rank 1
    check(m, [5, 2, 1], [1, 2, 5])
    assert m["recall@1"] == 0.0 and m["recall@2"] == pytest.approx(1 / 3)


def test_target_in_history_is_a_miss_only_with_exclusion():
    # the user repeats item 2: target 2 is in its own input
    data = make_data([[1, 2, 3, 2]], 4)
    split = leave_one_out(data, ProtocolConfig(), max_len=50)
    table = np.zeros((5, 5))
    table[3] = [0, 1, 5, 2, 3]  # item 2 is the model's top choice
    assert evaluate(TableModel(table), data, split.test, EvalConfig(ks=[1], exclude_history=False), 50)["recall@1"] == 1.0
    m = evaluate(TableModel(table), data, split.test, EvalConfig(ks=[1]), 50)
    assert m["recall@1"] == 0.0 and m["mrr"] == pytest.approx(1 / 2)  # placed after the one valid item (4)


def test_model_sees_last_max_len_items_but_exclusion_uses_whole_input(small):
    data, split = small
    model = TableModel(TABLE, max_len=1)
    m = evaluate(model, data, split.test, EvalConfig(ks=[1, 2, 5]), max_len=1)
    assert all(x.shape[1] == 1 for x in model.seen)
    assert sorted(torch.cat(model.seen)[:, 0].tolist()) == [3, 4, 4]  # the last input items
    check(m, [1, 0, 0], [1, 2, 5])  # item 1 (u0's best score, outside the window) is still excluded


def test_constant_scores_get_the_worst_rank():
    rng = np.random.default_rng(0)
    n_items = 30
    seqs = [rng.choice(np.arange(1, n_items + 1), size=L, replace=False) for L in (4, 7, 12, 5, 20)]
    data = make_data(seqs, n_items)
    split = leave_one_out(data, ProtocolConfig(), max_len=50)
    model = TableModel(np.ones((n_items + 1, n_items + 1)))
    ks = [1, 5, 10]
    m = evaluate(model, data, split.test, EvalConfig(ks=ks), max_len=50)
    # candidates = items not in the input; the target ties with all of them and goes last
    n_candidates = np.array([n_items - (e - s) for s, e in zip(split.test.starts, split.test.ends)])
    check(m, n_candidates - 1, ks)
    assert n_candidates.min() > max(ks)
    for k in ks:
        assert m[f"recall@{k}"] == 0.0 and m[f"ndcg@{k}"] == 0.0
    m = evaluate(model, data, split.test, EvalConfig(ks=ks, exclude_history=False), max_len=50)
    check(m, np.full(len(seqs), n_items - 1), ks)


def random_setup(seed=0, n_items=40, n_users=25):
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(1, n_items + 1, size=rng.integers(3, 15)) for _ in range(n_users)]
    data = make_data(seqs, n_items)
    split = leave_one_out(data, ProtocolConfig(), max_len=50)
    table = torch.from_numpy(rng.normal(size=(n_items + 1, n_items + 1)))
    return data, split, TableModel(table)


def test_batch_size_does_not_change_results():
    data, split, model = random_setup()
    ks = [1, 5, 10]
    full = evaluate(model, data, split.test, EvalConfig(ks=ks, batch_size=1024), max_len=50)
    for bs in (1, 7):
        assert evaluate(model, data, split.test, EvalConfig(ks=ks, batch_size=bs), max_len=50) == pytest.approx(full)
    sampled = EvalConfig(ks=ks, sampled_negatives=10, batch_size=1024)
    ref = evaluate(model, data, split.test, sampled, max_len=50)
    assert evaluate(model, data, split.test, EvalConfig(ks=ks, sampled_negatives=10, batch_size=4), max_len=50) == ref


def test_max_scores_bounds_the_rows_per_batch_and_changes_no_result(monkeypatch):
    from sigmarec.evaluate import evaluator

    data, split, model = random_setup()
    n_cols = data.n_items + 1
    assert evaluator.rows_per_batch(model, data.n_items, 1024, 10 * n_cols) == 10
    assert evaluator.rows_per_batch(model, data.n_items, 4, 10 * n_cols) == 4
    assert evaluator.rows_per_batch(model, data.n_items, 1024, 1) == 1  # at least one row
    model.cfg = type("Cfg", (), {"n_interests": 5})()  # K interest vectors: [B, K, N + 1] before the max
    assert evaluator.rows_per_batch(model, data.n_items, 1024, 10 * n_cols) == 2
    del model.cfg
    seen = []
    score_all = model.score_all
    monkeypatch.setattr(model, "score_all", lambda inputs, **c: seen.append(inputs.shape[0]) or score_all(inputs, **c))
    ks = [1, 5, 10]
    full = evaluate(model, data, split.test, EvalConfig(ks=ks), max_len=50)
    seen.clear()
    bounded = evaluate(model, data, split.test, EvalConfig(ks=ks, max_scores=3 * n_cols), max_len=50)
    assert bounded == pytest.approx(full) and max(seen) == 3 and sum(seen) == len(split.test)


@pytest.mark.parametrize("sampler", ["uniform", "popularity"])
def test_sampled_evaluation_is_deterministic_and_bounded(sampler):
    data, split, model = random_setup()
    n_neg = 8
    cfg = EvalConfig(ks=[1, 5, n_neg, n_neg + 1], sampled_negatives=n_neg, sampler=sampler, sampler_seed=3)
    a = evaluate(model, data, split.test, cfg, max_len=50)
    b = evaluate(model, data, split.test, cfg, max_len=50)
    assert a == b
    assert not any(k.startswith("coverage") for k in a)
    assert a[f"recall@{n_neg + 1}"] == 1.0  # rank <= n_negatives always
    assert a["mrr"] >= 1 / (n_neg + 1)
    assert 0.0 < a["recall@1"] < 1.0  # a random model is neither always right nor always wrong

    # hand computation with the same negatives
    hist, offsets = ragged_ranges(data.items, split.test.starts, split.test.ends)
    neg = sample_negatives(hist, offsets, split.test.targets, data.n_items, n_neg, sampler, data.item_popularity(), 3)
    ranks = []
    for r, (s, e, t) in enumerate(zip(split.test.starts, split.test.ends, split.test.targets)):
        row = model.table[data.items[e - 1]].numpy()
        assert t not in neg[r] and not set(neg[r]) & set(data.items[s:e])
        target = -np.inf if t in data.items[s:e] else row[t]
        ranks.append(int((row[neg[r]] >= target).sum()))
    check(a, ranks, cfg.ks)

    c = evaluate(model, data, split.test, EvalConfig(ks=cfg.ks, sampled_negatives=n_neg, sampler=sampler, sampler_seed=4), 50)
    assert c != a  # the seed matters


def test_sampled_constant_scores_rank_last_among_negatives():
    data, split, _ = random_setup()
    model = TableModel(np.zeros((data.n_items + 1, data.n_items + 1)))
    m = evaluate(model, data, split.test, EvalConfig(ks=[5, 6], sampled_negatives=5), max_len=50)
    assert m["recall@5"] == 0.0 and m["recall@6"] == 1.0
    assert m["mrr"] == pytest.approx(1 / 6)


def test_evaluate_restores_training_mode(small):
    data, split = small
    model = TableModel(TABLE)
    model.train()
    evaluate(model, data, split.test, EvalConfig(ks=[1]), max_len=50)
    assert model.training


def reference_ranges(flat, starts, ends):
    values = [x for s, e in zip(starts, ends) for x in flat[s:e]]
    offsets = [0]
    for s, e in zip(starts, ends):
        offsets.append(offsets[-1] + (e - s))
    return np.array(values, dtype=flat.dtype), np.array(offsets)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 30).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n), st.integers(0, n)), max_size=12))))
def test_ragged_ranges_matches_reference(args):
    n, pairs = args
    flat = np.arange(100, 100 + n, dtype=np.int64)
    starts = np.array([min(a, b) for a, b in pairs], dtype=np.int64)
    ends = np.array([max(a, b) for a, b in pairs], dtype=np.int64)
    values, offsets = ragged_ranges(flat, starts, ends)
    ref_values, ref_offsets = reference_ranges(flat, starts, ends)
    np.testing.assert_array_equal(values, ref_values)
    np.testing.assert_array_equal(offsets, ref_offsets)
    assert offsets.dtype == np.int64 and values.dtype == flat.dtype


def test_ragged_ranges_overlapping_and_unordered():
    flat = np.array([5, 6, 7, 8, 9])
    values, offsets = ragged_ranges(flat, np.array([3, 0, 2, 4]), np.array([5, 2, 2, 5]))
    assert values.tolist() == [8, 9, 5, 6, 9]
    assert offsets.tolist() == [0, 2, 4, 4, 5]


def naive_multi_target(model, data, cases, ks, exclude_history=True):
    """Per-user Python reference: rank all items, count targets in the top K."""
    out = {f"{m}@{k}": [] for m in ("recall", "hit", "ndcg") for k in ks}
    for u, s, e, te in zip(cases.users, cases.starts, cases.ends, cases.target_ends):
        hist = data.items[s:e]
        scores = model.table[int(hist[-1])].clone()
        scores[0] = -math.inf
        if exclude_history:
            scores[torch.as_tensor(hist)] = -math.inf
        order = [int(i) for i in torch.argsort(scores, descending=True, stable=True)]
        targets = set(int(i) for i in data.items[e:te])
        for k in ks:
            top = order[:k]
            hits = [p for p, i in enumerate(top) if i in targets and scores[i] > -math.inf]
            out[f"recall@{k}"].append(len(hits) / len(targets))
            out[f"hit@{k}"].append(float(bool(hits)))
            idcg = sum(1 / math.log2(p + 2) for p in range(min(len(targets), k)))
            out[f"ndcg@{k}"].append(sum(1 / math.log2(p + 2) for p in hits) / idcg)
    return {key: float(np.mean(v)) for key, v in out.items()}


@pytest.mark.parametrize("exclude", [True, False])
def test_multi_target_evaluation_matches_a_naive_loop(exclude):
    rng = np.random.default_rng(3)
    n_items = 25
    seqs = [rng.integers(1, n_items + 1, int(n)) for n in rng.integers(2, 15, 60)]
    data = make_data(seqs, n_items)
    table = torch.from_numpy(rng.permutation(26 * 26).reshape(26, 26)).float()  # distinct scores: no tie-order question
    model = TableModel(table)
    split = comirec_user_split(data, ProtocolConfig(name="comirec", user_split=[0.5, 0.25, 0.25]), max_len=50)
    ks = [1, 5, 10]
    got = evaluate(model, data, split.test, EvalConfig(ks=ks, batch_size=7, exclude_history=exclude), max_len=50)
    want = naive_multi_target(model, data, split.test, ks, exclude)
    assert got["n"] == len(split.test.users) > 10
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
    with pytest.raises(ValueError, match="sampled_negatives"):
        evaluate(model, data, split.test, EvalConfig(ks=ks, sampled_negatives=5), max_len=50)
