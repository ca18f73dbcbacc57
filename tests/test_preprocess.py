"""Preprocessing: order, duplicates, k-core fixpoint, remapping, rating threshold, side tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigmarec.config import DataConfig
from sigmarec.data.preprocess import PreprocessConfig, kcore, preprocess
from sigmarec.data.sequences import PAD_TOKEN, DataError, RawData


def make_raw(rows, item_side=None, user_side=None) -> RawData:
    """rows: (user, item[, timestamp[, rating]]) tuples in file order."""
    rows = [tuple(r) + (np.nan,) * (4 - len(r)) for r in rows]
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp", "rating"])
    df["user"] = df["user"].astype(str)
    df["item"] = df["item"].astype(str)
    df["timestamp"] = df["timestamp"].astype(np.float64)
    df["rating"] = df["rating"].astype(np.float64)
    return RawData(df, source="mem", item_side=item_side, user_side=user_side)


def sequences(data) -> dict[str, list[str]]:
    """Original user id -> original item ids, in sequence order."""
    return {str(data.user_ids[u]): [str(data.item_ids[i]) for i in data.sequence(u)] for u in range(data.n_users)}


# ------------------------------------------------------------------------------------ order
def test_chronological_with_ties_keeps_file_order():
    raw = make_raw([("u", "a", 5), ("u", "b", 1), ("v", "x", 0), ("u", "c", 5), ("u", "d", 1), ("u", "e", 3)])
    data = preprocess(raw, PreprocessConfig())
    assert sequences(data) == {"u": ["b", "d", "e", "a", "c"], "v": ["x"]}
    assert data.timestamps.tolist() == [1, 1, 3, 5, 5, 0]


def test_nan_timestamps_mean_file_order():
    raw = make_raw([("u", "c"), ("v", "a"), ("u", "a"), ("u", "b")])
    data = preprocess(raw, PreprocessConfig())
    assert sequences(data) == {"u": ["c", "a", "b"], "v": ["a"]}


# ------------------------------------------------------------------------------------ duplicates
DUP_ROWS = [("u", "a", 3), ("u", "b", 1), ("u", "a", 2), ("u", "c", 4), ("u", "a", 5)]


@pytest.mark.parametrize(
    "policy,expected",
    [("keep", ["b", "a", "a", "c", "a"]), ("first", ["b", "a", "c"]), ("last", ["b", "c", "a"])],
)
def test_duplicate_policies(policy, expected):
    data = preprocess(make_raw(DUP_ROWS), PreprocessConfig(duplicates=policy))
    assert sequences(data) == {"u": expected}


def test_bad_duplicate_policy():
    with pytest.raises(DataError, match="duplicates must be one of keep, first, last"):
        PreprocessConfig(duplicates="drop")
    cfg = PreprocessConfig()
    cfg.duplicates = "nope"
    with pytest.raises(DataError, match="duplicates"):
        preprocess(make_raw(DUP_ROWS), cfg)
    with pytest.raises(DataError, match="user_core"):
        PreprocessConfig(user_core=-1)


# ------------------------------------------------------------------------------------ k-core
def naive_kcore(users, items, uk, ik):
    """Reference: remove one offending row at a time until none is left (the k-core is unique)."""
    alive = set(range(len(users)))
    changed = True
    while changed:
        changed = False
        uc, ic = {}, {}
        for r in alive:
            uc[users[r]] = uc.get(users[r], 0) + 1
            ic[items[r]] = ic.get(items[r], 0) + 1
        for r in sorted(alive):
            if uc[users[r]] < uk or ic[items[r]] < ik:
                alive.discard(r)
                changed = True
                break
    return np.array([r in alive for r in range(len(users))], dtype=bool)


@settings(max_examples=150, deadline=None)
@given(
    pairs=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=60),
    uk=st.integers(0, 4),
    ik=st.integers(0, 4),
)
def test_kcore_fixpoint_property(pairs, uk, ik):
    users = np.array([p[0] for p in pairs], dtype=np.int64)
    items = np.array([p[1] for p in pairs], dtype=np.int64)
    keep = kcore(users, items, uk, ik)
    assert keep.dtype == bool and keep.shape == users.shape
    ku, ki = users[keep], items[keep]
    assert kcore(ku, ki, uk, ik).all()  # fixpoint: nothing more to remove
    if keep.any():
        assert np.bincount(ku)[np.unique(ku)].min() >= uk
        assert np.bincount(ki)[np.unique(ki)].min() >= ik
    np.testing.assert_array_equal(keep, naive_kcore(users.tolist(), items.tolist(), uk, ik))  # maximal
    # given as codes with their counts (the preprocessing's path: no second factorisation), the same mask
    np.testing.assert_array_equal(kcore(users.astype(np.int32), items.astype(np.int32), uk, ik, 8, 8), keep)


def test_kcore_cascade_needs_several_iterations():
    # a chain u0-a-b, u1-b-c, u2-c-d, u3-d unravels one link per iteration; the 2x2 block x/y survives
    rows = [
        ("u0", "a"), ("u0", "b"), ("u1", "b"), ("u1", "c"), ("u2", "c"), ("u2", "d"), ("u3", "d"),
        ("u8", "x"), ("u8", "y"), ("u9", "x"), ("u9", "y"),
    ]
    users = np.array([r[0] for r in rows])
    items = np.array([r[1] for r in rows])
    expected = np.array([False] * 7 + [True] * 4)
    np.testing.assert_array_equal(kcore(users, items, 2, 2), expected)
    # a single pass would keep e.g. (u1, b) and (u1, c): check that it really cascades
    one_pass = (pd.Series(users).map(pd.Series(users).value_counts()) >= 2) & (
        pd.Series(items).map(pd.Series(items).value_counts()) >= 2
    )
    assert one_pass.sum() > expected.sum()
    data = preprocess(make_raw(rows), PreprocessConfig(user_core=2, item_core=2))
    assert sequences(data) == {"u8": ["x", "y"], "u9": ["x", "y"]}
    assert data.item_ids.tolist() == [PAD_TOKEN, "x", "y"]


def test_kcore_one_sided_and_off():
    users = np.array([1, 1, 2, 3, 3, 3])
    items = np.array([1, 2, 1, 1, 2, 3])
    assert kcore(users, items, 0, 0).all()
    np.testing.assert_array_equal(kcore(users, items, 2, 0), [True, True, False, True, True, True])
    np.testing.assert_array_equal(kcore(users, items, 0, 2), [True, True, True, True, True, False])
    assert kcore(np.array([], dtype=int), np.array([], dtype=int), 3, 3).shape == (0,)


def test_nothing_survives():
    raw = make_raw([("u", "a"), ("v", "b")])
    with pytest.raises(DataError, match=r"no interactions left.*2 users, 2 items, 2 interactions"):
        preprocess(raw, PreprocessConfig(user_core=2))


# ------------------------------------------------------------------------------------ remap
def test_remap_round_trip_and_first_appearance_order():
    rng = np.random.default_rng(0)
    n = 300
    users = [f"U{x}" for x in rng.integers(0, 30, n)]
    items = [str(x) for x in rng.integers(0, 40, n)]  # includes item "0"
    ts = rng.integers(0, 50, n).astype(float)
    raw = make_raw(list(zip(users, items, ts)))
    data = preprocess(raw, PreprocessConfig())
    assert data.item_ids[0] == PAD_TOKEN and data.items.min() >= 1 and data.items.dtype == np.int64
    assert data.user_ids.tolist() == list(dict.fromkeys(users))
    assert data.item_ids[1:].tolist() == list(dict.fromkeys(items))
    assert data.offsets[0] == 0 and data.offsets[-1] == n
    # original (user, item, timestamp) triples recoverable, each user's in chronological order
    back = sorted(
        (str(data.user_ids[u]), str(data.item_ids[i]), float(t))
        for u in range(data.n_users)
        for i, t in zip(data.sequence(u), data.timestamps[data.offsets[u] : data.offsets[u + 1]])
    )
    assert back == sorted(zip(users, items, ts))
    for u in range(data.n_users):
        assert np.all(np.diff(data.timestamps[data.offsets[u] : data.offsets[u + 1]]) >= 0)
    assert data.item_index()["0"] > 0


def test_ids_follow_file_order_after_filtering():
    raw = make_raw([("z", "q", 9), ("a", "p", 1), ("z", "p", 2), ("a", "r", 0), ("b", "q", 5)])
    data = preprocess(raw, PreprocessConfig(item_core=2))
    assert data.user_ids.tolist() == ["z", "a", "b"]
    assert data.item_ids.tolist() == [PAD_TOKEN, "q", "p"]
    assert sequences(data) == {"z": ["p", "q"], "a": ["p"], "b": ["q"]}


# ------------------------------------------------------------------------------------ ratings
def test_rating_threshold():
    raw = make_raw([("u", "a", 1, 5.0), ("u", "b", 2, 3.0), ("u", "c", 3, 4.0), ("v", "a", 1, np.nan), ("w", "b", 1, 2)])
    data = preprocess(raw, PreprocessConfig(min_rating=4))
    assert sequences(data) == {"u": ["a", "c"]}
    assert preprocess(raw, PreprocessConfig()).n_interactions == 5


def test_rating_threshold_without_ratings():
    raw = make_raw([("u", "a", 1), ("u", "b", 2)])
    with pytest.raises(DataError, match="no ratings"):
        preprocess(raw, PreprocessConfig(min_rating=3.5))


def test_from_data_config():
    cfg = PreprocessConfig.from_data_config(DataConfig(min_rating=4.0, duplicates="last", user_core=5, item_core=3))
    assert cfg == PreprocessConfig(min_rating=4.0, duplicates="last", user_core=5, item_core=3)
    with pytest.raises(DataError):
        PreprocessConfig.from_data_config(DataConfig(duplicates="bogus"))


# ------------------------------------------------------------------------------------ side tables
def test_side_tables_reindexed_by_internal_id():
    item_side = pd.DataFrame({"genre": ["A", "B", "C"], "year": [1.0, 2.0, 3.0]}, index=pd.Index(["i1", "i2", "i3"]))
    user_side = pd.DataFrame({"age": ["30"]}, index=pd.Index(["v"]))
    raw = make_raw([("u", "i3", 1), ("v", "i9", 1), ("u", "i1", 2), ("v", "i2", 0)], item_side, user_side)
    data = preprocess(raw, PreprocessConfig())
    assert data.item_ids.tolist() == [PAD_TOKEN, "i3", "i9", "i1", "i2"]
    assert list(data.item_side.index) == [1, 2, 3, 4]
    assert data.item_side["genre"].tolist()[::2] == ["C", "A"] and data.item_side.loc[4, "genre"] == "B"
    assert pd.isna(data.item_side.loc[2, "genre"]) and np.isnan(data.item_side.loc[2, "year"])
    assert list(data.user_side.index) == [0, 1]
    assert pd.isna(data.user_side.loc[0, "age"]) and data.user_side.loc[1, "age"] == "30"
    # items dropped by filtering vanish from the side table
    filtered = preprocess(raw, PreprocessConfig(min_rating=None, item_core=1, user_core=2))
    assert len(filtered.item_side) == filtered.n_items


def test_missing_columns():
    raw = RawData(pd.DataFrame({"user": ["a"], "item": ["b"]}), source="mem")
    with pytest.raises(DataError, match="timestamp, rating"):
        preprocess(raw, PreprocessConfig())


@pytest.mark.parametrize("keep", ["first", "last"])
def test_duplicated_by_sorting_equals_pandas(keep):
    from sigmarec.data.preprocess import duplicated

    rng = np.random.default_rng(5)
    for n, high in ((0, 3), (1, 3), (50, 4), (2000, 300)):
        keys = rng.integers(0, high, n)
        np.testing.assert_array_equal(duplicated(keys, keep), pd.Index(keys).duplicated(keep=keep))
