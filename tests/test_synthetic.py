from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pytest

from sigmarec.data.sequences import DataError, RawData
from sigmarec.data.synthetic import SyntheticConfig, generate


@pytest.fixture(scope="module")
def raw() -> RawData:
    return generate(SyntheticConfig())


def _sequences(raw: RawData) -> dict[str, list[str]]:
    return {u: g.tolist() for u, g in raw.interactions.groupby("user", sort=False)["item"]}


def test_schema(raw):
    cfg = SyntheticConfig()
    df = raw.interactions
    assert list(df.columns) == ["user", "item", "timestamp", "rating"]
    assert df["timestamp"].dtype == np.float64
    assert df["rating"].isna().all()
    assert df["user"].map(type).eq(str).all() and df["item"].map(type).eq(str).all()
    assert raw.source == "synthetic(seed=0)"
    assert df["user"].nunique() == cfg.n_users
    lengths = df.groupby("user").size()
    assert lengths.min() >= cfg.min_len and lengths.max() <= cfg.max_len
    assert list(raw.item_side.columns) == ["category", "name"]
    assert list(raw.user_side.columns) == ["interests", "intensities"]
    assert set(raw.user_side.index) == set(df["user"])
    for interests, intensities in zip(raw.user_side["interests"], raw.user_side["intensities"]):
        cats = interests.split()
        p = np.array(intensities.split(), dtype=float)
        assert cfg.interests_per_user[0] <= len(cats) <= cfg.interests_per_user[1]
        assert len(set(cats)) == len(cats) == len(p)
        assert np.all(np.diff(p) <= 0) and abs(p.sum() - 1) < 1e-3


def test_deterministic_by_seed():
    cfg = SyntheticConfig(n_users=300, n_items=200)
    a, b = generate(cfg), generate(SyntheticConfig(n_users=300, n_items=200))
    pd.testing.assert_frame_equal(a.interactions, b.interactions)
    pd.testing.assert_frame_equal(a.item_side, b.item_side)
    pd.testing.assert_frame_equal(a.user_side, b.user_side)
    c = generate(SyntheticConfig(n_users=300, n_items=200, seed=1))
    assert c.source == "synthetic(seed=1)"
    assert not a.interactions.equals(c.interactions)
    assert not a.item_side.equals(c.item_side)


def test_categories_cover_all_items(raw):
    cfg = SyntheticConfig()
    side = raw.item_side
    assert len(side) == cfg.n_items and side.index.is_unique
    assert set(raw.interactions["item"]) <= set(side.index)
    assert side["category"].notna().all()
    assert set(side["category"]) == {f"c{c}" for c in range(cfg.n_categories)}  # every category non-empty
    assert (side["name"].str.split("-").str[0] == side["category"]).all()


def test_timestamps_strictly_increasing_with_sessions(raw):
    df = raw.interactions
    gaps = df.groupby("user", sort=False)["timestamp"].diff().dropna()
    assert (gaps > 0).all()
    # bimodal gaps: in-session gaps are minutes, idle gaps hours to days; ~1/mean_session_len of
    # gaps (0.2 by default) open a new session
    long_share = float((gaps > 1800).mean())
    assert 0.1 < long_share < 0.35
    assert gaps[gaps <= 1800].median() < 600
    assert gaps[gaps > 1800].median() > 4 * 3600


def test_items_come_from_planted_interests(raw):
    cat = raw.item_side["category"]
    planted = raw.user_side["interests"].str.split().map(set)
    df = raw.interactions
    inside = [c in planted[u] for u, c in zip(df["user"], df["item"].map(cat))]
    share = pd.Series(inside).groupby(df["user"].to_numpy()).mean()
    assert share.min() > 0.95


def test_same_category_as_previous_item(raw):
    # chance level with 8 categories is ~1/8; interests are re-drawn with prob. 0.3 per step, so
    # the category persists with prob. >= 0.7 (measured ~0.86 on the default config)
    df = raw.interactions
    c = df["item"].map(raw.item_side["category"]).to_numpy()
    u = df["user"].to_numpy()
    same_user = u[1:] == u[:-1]
    rate = float((c[1:] == c[:-1])[same_user].mean())
    assert rate > 0.75


def test_per_category_markov_beats_popularity(raw):
    """Fit counts on the first 80% of each user's items, predict each later item (top-1)."""
    cat = raw.item_side["category"].to_dict()
    trans: dict[str, Counter] = defaultdict(Counter)
    pop: Counter = Counter()
    tests = []
    for seq in _sequences(raw).values():
        cut = int(0.8 * len(seq))
        last_in_cat: dict[str, str] = {}
        for i, x in enumerate(seq):
            if i < cut:
                pop[x] += 1
                if cat[x] in last_in_cat:
                    trans[last_in_cat[cat[x]]][x] += 1
            else:
                tests.append((seq[i - 1], x))
            last_in_cat[cat[x]] = x
    top = pop.most_common(1)[0][0]
    pred = {k: v.most_common(1)[0][0] for k, v in trans.items()}
    markov = np.mean([pred.get(prev, top) == x for prev, x in tests])
    popular = np.mean([top == x for _, x in tests])
    # Expected Markov hit rate ~ P(stay in category) 0.86 * transition_strength 0.8 * top successor
    # weight 0.57 ~= 0.39; measured 0.37-0.38 over seeds 0-2, while the most popular item hits
    # 0.008-0.017 (ratio 22-48). Asserting a 0.25 floor and a 8x ratio leaves a wide margin.
    assert markov > 0.25
    assert markov > 8 * popular


def test_edge_configs():
    cfg = SyntheticConfig(n_users=50, n_items=5, n_categories=5, interests_per_user=(5, 5), min_len=3, max_len=3)
    raw = generate(cfg)
    assert (raw.interactions.groupby("user").size() == 3).all()
    assert raw.item_side["category"].nunique() == 5
    raw = generate(SyntheticConfig(n_users=20, n_items=3, n_categories=1, interests_per_user=(1, 1), n_successors=5))
    assert raw.interactions["item"].nunique() <= 3
    assert (raw.interactions.groupby("user")["timestamp"].diff().dropna() > 0).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_items": 3, "n_categories": 4},
        {"interests_per_user": (3, 2)},
        {"interests_per_user": (2, 9)},
        {"min_len": 10, "max_len": 5},
        {"switch_prob": 1.5},
    ],
)
def test_bad_config(kwargs):
    with pytest.raises(DataError):
        generate(SyntheticConfig(**kwargs))


def test_focused_sessions_stay_within_one_interest_and_leave_the_default_data_alone():
    from sigmarec.data.preprocess import PreprocessConfig, preprocess

    plain = generate(SyntheticConfig(n_users=200, seed=4))
    focused = generate(SyntheticConfig(n_users=200, seed=4, session_focus=True))
    again = generate(SyntheticConfig(n_users=200, seed=4))
    pd.testing.assert_frame_equal(plain.interactions, again.interactions)
    data = preprocess(focused, PreprocessConfig())
    cats = data.item_side["category"].to_numpy()[data.items - 1]
    same = cats[1:] == cats[:-1]
    within = ~data.session_starts[1:]
    assert same[within].all()  # one category per session
    assert same[~within].mean() < 0.7  # and interests do change between sessions
