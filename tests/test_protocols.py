import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigmarec.config import ProtocolConfig
from sigmarec.data.batching import batch_plan, gather_left_padded, train_batches
from sigmarec.data.protocols import comirec_user_split, leave_one_out, make_windows
from sigmarec.data.sequences import SequenceData


def make_data(lengths, n_items=30, seed=0):
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    items = rng.integers(1, n_items + 1, lengths.sum())
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return SequenceData(items, offsets, np.array([f"u{i}" for i in range(len(lengths))], dtype=object),
                        np.array(["<pad>"] + [f"i{i}" for i in range(1, n_items + 1)], dtype=object))


def test_loo_counts_and_targets():
    data = make_data([5, 3, 2, 10])
    split = leave_one_out(data, ProtocolConfig(), max_len=50)
    # users with >= 3 items are evaluated; the 2-item user only trains
    assert list(split.test.users) == [0, 1, 3]
    for cases, back in ((split.valid, 2), (split.test, 1)):
        for u, s, e, t in zip(cases.users, cases.starts, cases.ends, cases.targets):
            seq = data.sequence(u)
            assert e - s == len(seq) - back  # validation input: first n-2 items; test input: first n-1
            assert t == seq[len(seq) - back]
            assert e <= data.offsets[u + 1] - back  # the target position is never inside its own input
    # training targets of an evaluated user stop before the validation target
    trained = {(u, p) for u, s, e in zip(split.train_users, split.train_starts, split.train_ends) for p in range(s + 1, e)}
    assert (0, data.offsets[0] + 3) not in trained and (0, data.offsets[0] + 4) not in trained
    assert (2, data.offsets[2] + 1) in trained  # 2-item user trains on its second item


@pytest.mark.parametrize("last", [0, 1, 3])
def test_train_targets_are_each_ranges_items_after_its_first(last):
    data = make_data([5, 3, 2, 10, 1])
    split = leave_one_out(data, ProtocolConfig(), max_len=50)
    expected = []
    for s, e in zip(split.train_starts, split.train_ends):
        targets = list(data.items[s + 1:e])
        expected += targets[::-1][:last][::-1] if last else targets
    assert sorted(split.train_targets(last).tolist()) == sorted(expected)
    assert len(split.train_targets()) == split.n_train_targets


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=20), st.integers(1, 12))
def test_windows_cover_every_position_once(lengths, max_len):
    lengths = np.asarray(lengths)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    users, ws, we = make_windows(np.arange(len(lengths)), starts, ends, max_len, "all")
    assert np.all(we - ws <= max_len + 1)
    targets = np.concatenate([np.arange(s + 1, e) for s, e in zip(ws, we)]) if len(ws) else np.zeros(0, int)
    expected = np.concatenate([np.arange(s + 1, e) for s, e in zip(starts, ends)])
    assert sorted(targets.tolist()) == sorted(expected.tolist())


def test_last_window_mode_truncates():
    users, ws, we = make_windows(np.array([0]), np.array([0]), np.array([30]), 10, "last")
    assert (ws[0], we[0]) == (19, 30)
    with pytest.raises(ValueError, match="train_windows"):
        make_windows(np.array([0]), np.array([0]), np.array([30]), 10, "bogus")


def test_gather_left_padded():
    flat = np.arange(1, 11)
    out = gather_left_padded(flat, np.array([0, 5]), np.array([3, 10]), length=4)
    assert out.tolist() == [[0, 1, 2, 3], [7, 8, 9, 10]]


@pytest.mark.parametrize("bucket", [True, False])
def test_batches_have_no_leak_and_cover_all_windows(bucket):
    data = make_data(np.random.default_rng(1).integers(3, 40, 50))
    split = leave_one_out(data, ProtocolConfig(), max_len=8)
    seen = 0
    for b in train_batches(split, 16, 8, np.random.default_rng(0), bucket):
        x, t = b.inputs.numpy(), b.targets.numpy()
        assert np.all(t[x == 0] == 0)  # no target at padding
        assert np.array_equal(x[:, 1:][t[:, :-1] > 0], t[:, :-1][t[:, :-1] > 0])  # target t is input t+1
        seen += int((t > 0).sum())
    assert seen == split.n_train_targets


def test_bucketed_plan_is_a_partition_with_even_token_counts():
    lengths = np.random.default_rng(0).integers(1, 50, 1000)
    plan = batch_plan(lengths, 32, np.random.default_rng(0), True)
    assert sorted(np.concatenate(plan).tolist()) == list(range(1000))
    tokens = np.array([lengths[b].sum() for b in plan])
    budget = 32 * lengths.mean()
    assert tokens[:-1].max() <= budget + 50 and np.median(tokens) > 0.5 * budget


def test_comirec_user_split_partitions_users_and_never_leaks():
    lengths = np.random.default_rng(1).integers(1, 30, 200)
    data = make_data(lengths, seed=2)
    cfg = ProtocolConfig(name="comirec")
    split = comirec_user_split(data, cfg, max_len=8)
    valid, test = set(split.valid.users), set(split.test.users)
    train = set(split.train_users)
    assert not (valid & test) and not (train & (valid | test))
    eligible = int((lengths >= 2).sum())
    assert len(valid) == round(eligible * 0.1) and len(test) == round(eligible * 0.1)
    assert train | valid | test == set(np.flatnonzero(lengths >= 2))  # one-item users never train (no target)
    for cases in (split.valid, split.test):
        n = lengths[cases.users]
        assert (cases.ends - cases.starts == np.clip(np.floor(n * 0.8), 1, n - 1)).all()
        assert (cases.target_ends == data.offsets[cases.users + 1]).all()
        assert (cases.targets == data.items[cases.ends]).all()
    # training windows cover exactly the training users' sequences
    assert set(split.train_users) == train
    # same seed, same split; another seed, another split
    again = comirec_user_split(data, cfg, max_len=8)
    assert (again.test.users == split.test.users).all()
    other = comirec_user_split(data, ProtocolConfig(name="comirec", split_seed=1), max_len=8)
    assert set(other.test.users) != test


@pytest.mark.parametrize("field,value", [("user_split", [0.8, 0.2]), ("user_split", [1, 0, 0]), ("history_fraction", 1.0),
                                         ("split_seed", -1)])
def test_comirec_user_split_rejects_bad_settings(field, value):
    data = make_data([5] * 20)
    with pytest.raises(ValueError, match=field):
        comirec_user_split(data, ProtocolConfig(name="comirec", **{field: value}), max_len=8)


@pytest.mark.parametrize("name", ["loo", "comirec"])
@pytest.mark.parametrize("max_len", [3, 50])
def test_train_on_valid_trains_each_validation_case_and_never_a_test_target(name, max_len):
    from sigmarec.data.protocols import make_split

    data = make_data([5, 3, 2, 10, 7, 4, 6, 9, 3, 8], seed=1)
    plain = make_split(data, ProtocolConfig(name=name), max_len)
    refit = make_split(data, ProtocolConfig(name=name, train_on_valid=True), max_len)

    def positions(split):  # every (user, position) a training window predicts
        return {(u, p) for u, s, e in zip(split.train_users, split.train_starts, split.train_ends) for p in range(s + 1, e)}

    def cases(c, first):  # (user, position) of each case from ``first`` (its input's start or end) to its targets' end
        target_ends = c.target_ends if c.target_ends is not None else c.ends + 1
        return {(u, p) for u, f, te in zip(c.users, first(c), target_ends) for p in range(f, te)}

    before, after = positions(plain), positions(refit)
    valid_targets = cases(plain.valid, lambda c: c.ends)
    assert valid_targets and not valid_targets & before  # held out before...
    whole = cases(plain.valid, lambda c: c.starts + 1)  # a validation case's whole range (a comirec user's history too)
    assert after == before | whole  # ...trained after, and nothing else
    assert not cases(plain.test, lambda c: c.ends) & after
    assert np.all(refit.train_ends - refit.train_starts <= max_len + 1)
    users, items = refit.train_interactions()  # an id model's graph gains the validation pairs
    pairs = set(zip(users.tolist(), items.tolist()))
    assert {(u, int(data.items[p])) for u, p in valid_targets} <= pairs
