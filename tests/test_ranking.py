import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sigmarec.evaluate.ranking import (
    CoverageCounter,
    mask_scores,
    metrics_from_ranks,
    multi_target_ranks,
    target_ranks,
)

INF = float("inf")


def t(x, dtype=torch.float32):
    return torch.tensor(x, dtype=dtype)


def test_hand_computed_single_row_metrics():
    # items 1..5; target 3 scores 0.7; items 1 (0.9) and 4 (0.8) are above it -> rank 2
    scores = t([[0.0, 0.9, 0.1, 0.7, 0.8, 0.2]])
    hist = torch.zeros((1, 0), dtype=torch.long)
    targets = t([3], torch.long)
    ranks = target_ranks(mask_scores(scores, hist), targets)
    assert ranks.tolist() == [2]
    m = metrics_from_ranks(ranks, [1, 2, 3, 5])
    assert m["n"] == 1 and isinstance(m["n"], int)
    assert m["recall@1"] == 0.0 and m["recall@2"] == 0.0
    assert m["recall@3"] == 1.0 and m["hit@3"] == 1.0
    assert m["ndcg@3"] == pytest.approx(0.5)  # 1/log2(4)
    assert m["ndcg@2"] == 0.0
    assert m["precision@3"] == pytest.approx(1 / 3)
    assert m["precision@5"] == pytest.approx(1 / 5)
    assert m["mrr"] == pytest.approx(1 / 3)


def test_metrics_average_over_users():
    m = metrics_from_ranks(np.array([0, 2, 10]), [1, 3])
    assert m["n"] == 3
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["recall@3"] == pytest.approx(2 / 3)
    assert m["ndcg@3"] == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert m["ndcg@1"] == pytest.approx(1 / 3)  # rank 0 -> ndcg 1
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 11) / 3)
    assert all(isinstance(v, float) for k, v in m.items() if k != "n")


def test_metrics_empty():
    m = metrics_from_ranks(np.zeros(0, dtype=np.int64), [5])
    assert m["n"] == 0 and math.isnan(m["recall@5"]) and math.isnan(m["mrr"])


def test_ties_count_against_target():
    n_items = 6
    scores = torch.ones((1, n_items + 1))
    targets = t([4], torch.long)
    no_hist = torch.zeros((1, 0), dtype=torch.long)
    assert target_ranks(mask_scores(scores, no_hist, exclude_history=False), targets).tolist() == [5]
    hist = t([[1, 2, 0, 0]], torch.long)  # two history items excluded, zeros are padding
    assert target_ranks(mask_scores(scores, hist), targets).tolist() == [3]


def test_history_exclusion_changes_rank():
    scores = t([[0.0, 5.0, 4.0, 3.0, 1.0], [0.0, 1.0, 2.0, 3.0, 4.0]])
    hist = t([[1, 0], [4, 3]], torch.long)
    targets = t([3, 1], torch.long)
    raw = target_ranks(mask_scores(scores, hist, exclude_history=False), targets)
    assert raw.tolist() == [2, 3]
    ex = target_ranks(mask_scores(scores, hist), targets)
    assert ex.tolist() == [1, 1]


def test_padding_never_counts():
    scores = t([[100.0, 1.0, 2.0, 3.0]])
    targets = t([3], torch.long)
    # even on raw scores (no mask) column 0 is ignored
    assert target_ranks(scores, targets).tolist() == [0]
    masked = mask_scores(scores, torch.zeros((1, 0), dtype=torch.long))
    assert masked[0, 0] == -INF
    assert target_ranks(masked, targets).tolist() == [0]


def test_target_in_history_is_excluded_like_any_history_item():
    scores = t([[0.0, 1.0, 9.0, 5.0, 3.0]])
    hist = t([[2, 3, 0]], torch.long)
    targets = t([3], torch.long)
    masked = mask_scores(scores, hist)
    assert masked[0, 3] == -INF and masked[0, 2] == -INF
    assert target_ranks(masked, targets).tolist() == [2]  # after both remaining items: a miss
    assert torch.equal(scores, t([[0.0, 1.0, 9.0, 5.0, 3.0]]))  # input untouched


def test_nan_scores_are_minus_inf():
    scores = t([[0.0, float("nan"), 1.0, 2.0, float("nan")]])
    assert target_ranks(scores, t([2], torch.long)).tolist() == [1]
    # NaN / masked target goes after all valid items
    assert target_ranks(scores, t([1], torch.long)).tolist() == [2]
    masked = mask_scores(scores, t([[2]], torch.long))
    assert target_ranks(masked, t([2], torch.long)).tolist() == [1]


def _brute_rank(row: np.ndarray, target: int) -> int:
    """Sort-based rank: order by score desc, ties broken against the target; skip padding/-inf."""
    items = [i for i in range(1, row.size) if i == target or row[i] != -np.inf]
    s = np.array([row[i] for i in items])
    is_target = np.array([i == target for i in items])
    order = np.lexsort((is_target, -s))  # primary: -score, then target last among ties
    pos = int(np.flatnonzero(np.array(items)[order] == target)[0])
    if row[target] == -np.inf:
        pos = len(items) - 1
    return pos


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_target_ranks_matches_bruteforce(data):
    b = data.draw(st.integers(1, 5))
    n_items = data.draw(st.integers(1, 8))
    vals = data.draw(arrays(np.int64, (b, n_items + 1), elements=st.integers(-3, 3)))
    scores = vals.astype(np.float32)
    scores[vals == -3] = -np.inf  # some masked items
    targets = np.array(data.draw(st.lists(st.integers(1, n_items), min_size=b, max_size=b)))
    got = target_ranks(torch.from_numpy(scores), torch.from_numpy(targets)).numpy()
    want = [_brute_rank(scores[r], int(targets[r])) for r in range(b)]
    assert got.tolist() == want


def test_coverage_hand_case():
    # 5 items; two users
    scores = t([[0.0, 5.0, 4.0, 3.0, 2.0, 1.0], [0.0, 5.0, 1.0, 4.0, 2.0, 3.0]])
    cov = CoverageCounter()
    cov.update(scores, k_max=3)
    r = cov.result([1, 2, 3], n_items=5)
    assert r["coverage@1"] == pytest.approx(1 / 5)  # {1}
    assert r["coverage@2"] == pytest.approx(3 / 5)  # {1, 2, 3}
    assert r["coverage@3"] == pytest.approx(4 / 5)  # {1, 2, 3, 5}
    with pytest.raises(ValueError):
        cov.result([4], n_items=5)


def test_coverage_ignores_masked_and_padding():
    scores = t([[9.0, 1.0, -INF, -INF]])  # only item 1 is valid
    cov = CoverageCounter()
    cov.update(scores, k_max=3)
    assert cov.result([3], n_items=3)["coverage@3"] == pytest.approx(1 / 3)


def test_multi_target_ranks_equal_single_target_ranks_column_by_column():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (7, 30), generator=g).float()  # many ties
    scores[0, 3] = float("nan")
    scores[1, 5:9] = -INF
    scores[2, 7] = -INF
    targets = torch.stack([torch.randperm(29, generator=g)[:4] + 1 for _ in range(7)])
    targets[2, 0] = 7  # a target scored -inf
    targets[3, 2:] = 0  # fewer targets in this row
    ranks = multi_target_ranks(scores, targets)
    for c in range(4):
        expect = target_ranks(scores, targets[:, c].clamp(min=1))
        got = ranks[:, c]
        real = targets[:, c] > 0
        assert torch.equal(got[real], expect[real])
        assert (got[~real] == -1).all()


def test_multi_target_metrics_by_hand():
    # user 0: targets ranked 0 and 3; user 1: targets ranked 5 (one target)
    ranks = np.array([[0, 3], [5, -1]])
    m = metrics_from_ranks(ranks, [1, 4])
    assert m["recall@1"] == pytest.approx((1 / 2 + 0) / 2)
    assert m["hit@1"] == pytest.approx(0.5)
    assert m["recall@4"] == pytest.approx((2 / 2 + 0) / 2)
    assert m["precision@4"] == pytest.approx((2 / 4 + 0) / 2)
    idcg = 1 + 1 / np.log2(3)
    assert m["ndcg@4"] == pytest.approx(((1 + 1 / np.log2(5)) / idcg + 0) / 2)
    assert m["ndcg@1"] == pytest.approx((1 / 1 + 0) / 2)  # IDCG@1 counts one perfect slot
    assert m["mrr"] == pytest.approx((1 + 1 / 6) / 2)
    # a [U, 1] matrix gives exactly the single-target metrics
    single = np.array([0, 2, 10])
    assert metrics_from_ranks(single[:, None], [1, 3]) == metrics_from_ranks(single, [1, 3])
    with pytest.raises(ValueError, match="at least one target"):
        metrics_from_ranks(np.array([[-1, -1]]), [1])
