import numpy as np
import torch
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigmarec.config import ProtocolConfig
from sigmarec.data.batching import gather_session_starts
from sigmarec.data.preprocess import PreprocessConfig, preprocess
from sigmarec.data.protocols import next_session, session_loo
from sigmarec.data.sequences import DataError, RawData, SequenceData
from sigmarec.data.sessions import session_filter, session_offsets, session_starts, user_features
from sigmarec.evaluate.ranking import metrics_from_ranks

GAP = 1800.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0, 5000)), min_size=1, max_size=40))
def test_sessions_split_exactly_at_gaps_above_the_threshold(events):
    users = np.sort(np.array([u for u, _ in events]))
    gaps = np.array([g for _, g in events])
    ts = np.zeros(len(events))
    for i in range(1, len(events)):  # per-user clocks: reset at a new user
        ts[i] = (ts[i - 1] if users[i] == users[i - 1] else 0.0) + gaps[i]
    starts = session_starts(ts, users, GAP)
    for i in range(len(events)):
        expect = i == 0 or users[i] != users[i - 1] or ts[i] - ts[i - 1] > GAP
        assert starts[i] == expect
    # no session crosses users: every user's first event starts one
    first = np.r_[True, users[1:] != users[:-1]]
    assert starts[first].all()


def test_session_filter_drops_short_sessions_then_users_with_few():
    users = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2, 2])
    starts = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0], dtype=bool)
    # sessions: u0 [0,1] [2] [3,4]; u1 [5,6] [7]; u2 [8,9]
    keep = session_filter(starts, users, min_len=2, min_sessions=2)
    assert keep.tolist() == [1, 1, 0, 1, 1, 0, 0, 0, 0, 0]
    with pytest.raises(DataError, match="min_sessions"):
        session_filter(starts, users, 1, 0)


def raw_with_times():
    df = pd.DataFrame({
        "user": ["a"] * 6 + ["b"] * 3,
        "item": ["x", "y", "z", "x", "w", "y", "y", "z", "w"],
        "timestamp": [0, 60, 4000, 4100, 9000, 9001, 0, 10, 20000],
        "rating": np.nan,
    })
    return RawData(df, "mem")


def test_preprocess_keeps_session_flags_and_applies_the_filters():
    data = preprocess(raw_with_times(), PreprocessConfig())
    assert data.session_starts.tolist() == [1, 0, 1, 0, 1, 0, 1, 0, 1]
    bounds, per_user = session_offsets(data)
    assert bounds.tolist() == [0, 2, 4, 6, 8, 9] and per_user.tolist() == [0, 3, 5]
    filtered = preprocess(raw_with_times(), PreprocessConfig(min_session_len=2, min_sessions=3))
    assert filtered.n_users == 1 and filtered.n_interactions == 6  # b has one 2-item session left
    no_time = raw_with_times()
    no_time.interactions["timestamp"] = np.nan
    assert preprocess(no_time, PreprocessConfig()).session_starts is None
    with pytest.raises(DataError, match="need timestamps"):
        preprocess(no_time, PreprocessConfig(min_sessions=2))


def test_saved_data_keeps_sessions(tmp_path):
    data = preprocess(raw_with_times(), PreprocessConfig())
    data.save(tmp_path / "d")
    assert SequenceData.load(tmp_path / "d").session_starts.tolist() == data.session_starts.tolist()


def test_user_features_standardise_numbers_and_one_hot_categories():
    data = preprocess(raw_with_times(), PreprocessConfig())
    data.user_side = pd.DataFrame({"age": [20.0, 40.0], "gender": ["F", None], "zip": ["1", "2"]})
    feats = user_features(data, max_categories=1)  # zip (2 values) is left out
    assert feats.shape == (2, 2)
    np.testing.assert_allclose(feats[:, 0], [-1, 1])
    assert feats[:, 1].tolist() == [1, 0]  # missing category: all zeros
    data.user_side = None
    assert user_features(data) is None


def session_data():
    # user 0: sessions [1,2] [3] [4,5,6]; user 1: [7,8,9] one session; user 2: [1] [2]
    items = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2])
    starts = np.array([1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 1], dtype=bool)
    return SequenceData(items, np.array([0, 6, 9, 11]), np.array(["u0", "u1", "u2"], dtype=object),
                        np.array(["<pad>"] + [f"i{i}" for i in range(1, 10)], dtype=object), session_starts=starts)


def test_session_protocol_never_leaks_the_target():
    data = session_data()
    split = session_loo(data, ProtocolConfig(name="session"), max_len=50)
    assert split.test.users.tolist() == [0]  # user 1 has one session, user 2 two items
    assert split.test.ends.tolist() == [5] and split.test.targets.tolist() == [6]
    assert split.valid.ends.tolist() == [4] and split.valid.targets.tolist() == [5]
    for u, s, e in zip(split.train_users, split.train_starts, split.train_ends):
        if u == 0:
            assert e <= 4  # training never reaches the validation or test target
    flags = gather_session_starts(data.session_starts, split.test.starts, split.test.ends, 5)
    assert flags.tolist() == [[True, False, True, True, False]]
    cut = gather_session_starts(data.session_starts, split.test.starts, split.test.ends, 3)  # window opens mid-session
    assert cut.tolist() == [[True, True, False]]


def test_next_session_protocol_targets_the_whole_last_session():
    data = session_data()
    split = next_session(data, ProtocolConfig(name="next_session"), max_len=50)
    assert split.test.users.tolist() == [0]
    assert (split.test.ends.tolist(), split.test.target_ends.tolist()) == ([3], [6])  # input [1,2,3], targets [4,5,6]
    assert (split.valid.ends.tolist(), split.valid.target_ends.tolist()) == ([2], [3])
    assert all(e <= 2 for u, e in zip(split.train_users, split.train_ends) if u == 0)
    no_sessions = SequenceData(data.items, data.offsets, data.user_ids, data.item_ids)
    with pytest.raises(DataError, match="needs sessions"):
        next_session(no_sessions, ProtocolConfig(), max_len=50)


def test_mrr_at_k_counts_only_hits_inside_the_cutoff():
    m = metrics_from_ranks(np.array([0, 3, 9]), [5])
    assert m["mrr@5"] == pytest.approx((1 + 1 / 4 + 0) / 3)
    assert m["mrr"] == pytest.approx((1 + 1 / 4 + 1 / 10) / 3)


def test_training_batches_flag_session_starts_of_inputs_and_targets():
    from sigmarec.data.batching import train_batches

    data = session_data()
    split = session_loo(data, ProtocolConfig(name="session"), max_len=50)
    batches = list(train_batches(split, 8, 50, np.random.default_rng(0), bucket=False))
    seen = 0
    for b in batches:
        for r in range(len(b.inputs)):
            real = b.inputs[r] > 0
            u = int(b.users[r])
            s = int(data.offsets[u])
            n = int(real.sum())
            assert b.session_starts[r][real].tolist() == [True] + data.session_starts[s + 1:s + n].tolist()
            has = b.targets[r] > 0
            assert b.target_session_starts[r][has].tolist() == data.session_starts[s + 1:s + 1 + int(has.sum())].tolist()
            assert not b.target_session_starts[r][~has].any()
            seen += 1
    assert seen == 3


class _ContextSpy(torch.nn.Module):
    """A model that records the context the evaluator hands it and scores nothing in particular."""

    context = frozenset({"session_starts", "users", "new_session"})

    def __init__(self):
        super().__init__()
        self.seen: list[dict] = []
        self.n_items = 9

    def score_all(self, inputs, **context):
        self.seen.append({k: None if v is None else v.clone() for k, v in context.items()})
        return torch.zeros(inputs.shape[0], self.n_items + 1)


@pytest.mark.parametrize("protocol", ["session", "next_session"])
def test_evaluator_says_when_the_target_opens_a_session(protocol):
    """``new_session`` is the session flag of each case's (first) target: set for every next-session
    case, and for a session-protocol target that is the only item of its session."""
    from sigmarec.config import EvalConfig
    from sigmarec.data.protocols import make_split
    from sigmarec.evaluate.evaluator import evaluate

    data = session_data()
    # user 0 again, but whose last session is one item: [1,2] [3] [4,5] [6]
    data.session_starts[5] = True
    split = make_split(data, ProtocolConfig(name=protocol), max_len=50)
    spy = _ContextSpy()
    for cases, expect in ((split.valid, [protocol == "next_session"]), (split.test, [True])):
        spy.seen.clear()
        evaluate(spy, data, cases, EvalConfig(ks=[5]), max_len=50)
        assert [c["new_session"].tolist() for c in spy.seen] == [expect]
        assert spy.seen[0]["users"].tolist() == cases.users.tolist()


def test_refit_trains_the_validation_session_never_the_test_one():
    data = session_data()
    for name, fn, trained_end in (("session", session_loo, 5), ("next_session", next_session, 3)):
        from sigmarec.data.protocols import make_split

        split = make_split(data, ProtocolConfig(name=name, train_on_valid=True), 50)
        assert split.valid_trained and split.test.ends.tolist() == fn(data, ProtocolConfig(name=name), 50).test.ends.tolist()
        ends = [e for u, e in zip(split.train_users, split.train_ends) if u == 0]
        assert max(ends) == trained_end  # through the validation target (session) or the validation session
        assert all(e <= split.test.ends[0] for e in ends)  # never a test target
