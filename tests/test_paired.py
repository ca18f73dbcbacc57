"""``sigmarec compare``: per-case metrics, cached ranks and paired tests between groups of runs."""

import json
import os
import shutil

import numpy as np
import pytest
import torch
import yaml
from scipy import stats

from sigmarec.cli import main
from sigmarec.evaluate.evaluator import case_ranks
from sigmarec.evaluate.paired import (compare, group_name, load_case_ranks, paired_test, per_user_metric,
                                      ranks_cache_path)
from sigmarec.evaluate.ranking import metrics_from_ranks, parse_metric, per_case_metric
from sigmarec.config import RunError
from sigmarec.runs import load_run, make_config
from sigmarec.train.trainer import Trainer

KS = [1, 3, 7, 10, 40]


def per_case_names(ks):
    return [f"{m}@{k}" for m in ("recall", "ndcg", "hit", "precision", "mrr") for k in ks] + ["mrr"]


@pytest.mark.parametrize("seed", range(3))
def test_per_case_metric_means_equal_metrics_from_ranks(seed):
    rng = np.random.default_rng(seed)
    single = rng.integers(0, 60, size=200)
    multi = rng.integers(0, 60, size=(200, 6))
    n_targets = rng.integers(1, 7, size=200)
    multi[np.arange(6)[None, :] >= n_targets[:, None]] = -1  # padded like evaluate's multi-target ranks
    for ranks in (single, multi, torch.from_numpy(multi)):
        expected = metrics_from_ranks(ranks, KS)
        for metric in per_case_names(KS):
            values = per_case_metric(ranks, metric)
            assert values.shape == (200,)
            assert values.mean() == pytest.approx(expected[metric], abs=1e-12), metric


def test_metric_names():
    assert parse_metric("NDCG@7") == ("ndcg", 7) and parse_metric("mrr") == ("mrr", None)
    for bad, match in [("foo@10", "unknown metric"), ("ndcg", "needs a cutoff"), ("ndcg@0", "positive"),
                       ("recall@x", "positive"), ("hit@-1", "positive")]:
        with pytest.raises(ValueError, match=match):
            per_case_metric(np.zeros(3, dtype=np.int64), bad)
    with pytest.raises(ValueError, match="at least one target"):
        per_case_metric(np.array([[0, -1], [-1, -1]]), "recall@5")


def test_cases_are_averaged_per_user():
    from sigmarec.evaluate.paired import _user_means

    users, values = _user_means(np.array([7, 2, 7, 7, 2]), np.array([1.0, 0.0, 0.0, 0.5, 1.0]))
    assert users.tolist() == [2, 7] and values.tolist() == [0.5, 0.5]


def test_group_names():
    assert group_name(["runs/sasrec-s1", "runs/sasrec-s2/"]) == "sasrec-s{1,2}"
    assert group_name(["runs/a"]) == "a"
    assert group_name(["seed1/run", "seed2/run"]) == "seed{1,2}/run"


def tiny(tmp, model="sasrec", epochs=6, seed=3, users=150):
    return make_config(model, {
        "data": {"dataset": "synthetic", "synthetic_users": users, "cache_dir": str(tmp / "cache"), "max_len": 20},
        "model": {"hidden_size": 16, "n_layers": 1} if model == "sasrec" else {},
        "eval": {"ks": [5, 10]},
        "train": {"epochs": epochs, "batch_size": 64, "progress": False, "seed": seed, "patience": 50,
                  "valid_metric": "ndcg@10"},
    }, preset="none")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two well-trained SASRec seeds (A) and a one-epoch SASRec (B), on the same tiny synthetic data."""
    tmp = tmp_path_factory.mktemp("paired")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = {}
        for name, epochs, seed in [("sasrec-s1", 8, 3), ("sasrec-s2", 8, 4), ("short", 1, 3)]:
            Trainer(tiny(tmp, epochs=epochs, seed=seed), tmp / name).fit()
            out[name] = tmp / name
        out["tmp"] = tmp
        yield out
    finally:
        torch.set_num_threads(before)


def test_case_ranks_give_the_run_metrics(runs):
    run = load_run(runs["sasrec-s1"], device="cpu")
    ranks = case_ranks(run.model, run.data, run.split.test, run.cfg.eval, run.cfg.data.max_len, run.device)
    assert ranks.shape == (len(run.split.test),) and ranks.dtype == np.int64
    stored = json.loads((runs["sasrec-s1"] / "metrics.json").read_text())["test"]
    for k, v in metrics_from_ranks(ranks, [5, 10]).items():
        assert stored[k] == pytest.approx(v, abs=1e-9), k
    users, values = per_user_metric(runs["sasrec-s1"], metric="ndcg@10", device="cpu")
    assert np.array_equal(users, np.unique(run.split.test.users))
    assert values.mean() == pytest.approx(stored["ndcg@10"], abs=1e-9)


def test_a_group_against_itself_is_level(runs):
    group = [runs["sasrec-s1"], runs["sasrec-s2"]]
    r = paired_test(group, group, metric="ndcg@10", device="cpu")
    assert r["diff"] == 0 and r["mean_a"] == r["mean_b"] and r["n_differ"] == 0
    assert r["wilcoxon_p"] == 1.0 and r["t_p"] == 1.0 and r["ci95"] == [0.0, 0.0]
    assert r["verdict"].startswith("level")


def test_trained_runs_beat_a_one_epoch_run(runs):
    a, b = [runs["sasrec-s1"], runs["sasrec-s2"]], [runs["short"]]
    result = compare(a, b, metrics=["recall@10", "ndcg@10", "mrr"], device="cpu")
    assert result["name_a"] == "sasrec-s{1,2}" and result["name_b"] == "short"
    assert list(result["metrics"]) == ["recall@10", "ndcg@10", "mrr"]
    r = result["metrics"]["ndcg@10"]
    assert r["n_users"] == 150 and r["mean_a"] > r["mean_b"] and r["diff"] > 0
    assert r["wilcoxon_p"] < 0.05 and r["verdict"].startswith("sasrec-s{1,2} above short")
    assert r["ci95"][0] < r["diff"] < r["ci95"][1]
    # seeds are averaged per user: the group mean is the mean of the runs' means, each run is listed
    assert [e["run"] for e in r["per_run_a"]] == [str(p) for p in a]
    assert r["mean_a"] == pytest.approx(np.mean([e["mean"] for e in r["per_run_a"]]), abs=1e-12)
    # the tests are scipy's on the per-user values
    per_user = {p: per_user_metric(p, metric="ndcg@10", device="cpu")[1] for p in a + b}
    ua, ub = (per_user[a[0]] + per_user[a[1]]) / 2, per_user[b[0]]
    assert r["t_p"] == pytest.approx(stats.ttest_rel(ua, ub).pvalue, rel=1e-9)
    assert r["wilcoxon_p"] == pytest.approx(stats.wilcoxon(ua - ub, zero_method="wilcox").pvalue, rel=1e-6)
    reverse = paired_test(b, a, metric="ndcg@10", device="cpu")
    assert reverse["diff"] == pytest.approx(-r["diff"]) and reverse["verdict"].startswith("sasrec-s{1,2} above short")


def test_ranks_are_cached_and_invalidated_by_a_new_checkpoint(runs, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    shutil.copytree(runs["short"], run_dir)
    shutil.rmtree(run_dir / "eval", ignore_errors=True)
    first = load_case_ranks(run_dir, device="cpu")
    path = ranks_cache_path(run_dir, "test", "best")
    assert not first.cached and path.exists()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    again = load_case_ranks(run_dir, device="cpu")
    assert again.cached and np.array_equal(again.ranks, first.ranks)

    # a cached read never ranks again, nor builds the model
    import sigmarec.evaluate.paired as paired

    monkeypatch.setattr(paired, "case_ranks", lambda *a, **k: pytest.fail("ranked again"))
    monkeypatch.setattr(paired, "load_run", lambda *a, **k: pytest.fail("model loaded on a cache hit"))
    assert load_case_ranks(run_dir, device="cpu").cached
    monkeypatch.undo()

    weights = run_dir / "checkpoints" / "best" / "model.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a rewritten checkpoint
    stale = load_case_ranks(run_dir, device="cpu")
    assert not stale.cached and np.array_equal(stale.ranks, first.ranks)
    assert load_case_ranks(run_dir, device="cpu").cached
    assert not load_case_ranks(run_dir, device="cpu", recompute=True).cached

    # a run kept without its weights (checkpoints removed) is still compared from its cached ranks, and only from them
    shutil.rmtree(run_dir / "checkpoints")
    kept = load_case_ranks(run_dir, device="cpu", recompute=True)
    assert kept.cached and np.array_equal(kept.ranks, first.ranks)
    with pytest.raises(RunError, match="no 'best' checkpoint and no cached ranks on 'valid'"):
        load_case_ranks(run_dir, split="valid", device="cpu")


def edited_copy(src, dst, section, key, value):
    shutil.copytree(src, dst)
    cfg = yaml.safe_load((dst / "config.yaml").read_text())
    cfg[section][key] = value
    (dst / "config.yaml").write_text(yaml.safe_dump(cfg))
    return dst


def test_runs_on_different_data_are_refused(runs, tmp_path):
    other = edited_copy(runs["short"], tmp_path / "other", "data", "dataset", "synthetic-sessions")
    with pytest.raises(ValueError, match=r"different data\.dataset: synthetic \(.*sasrec-s1\); synthetic-sessions \(.*other\)"):
        paired_test([runs["sasrec-s1"]], [other], device="cpu")
    split = edited_copy(runs["short"], tmp_path / "split", "protocol", "name", "comirec")
    with pytest.raises(ValueError, match="different protocol"):
        paired_test([runs["sasrec-s1"], split], [runs["short"]], device="cpu")
    # same data set name, other users (another synthetic size): named by run directory
    Trainer(tiny(runs["tmp"], model="pop", epochs=1, users=120), tmp_path / "pop120").fit()
    with pytest.raises(ValueError, match=r"do not cover the same users.*sasrec-s1 has 150, .*pop120 has 120"):
        compare([runs["sasrec-s1"]], [tmp_path / "pop120"], device="cpu")
    with pytest.raises(FileNotFoundError, match="no such run directory"):
        compare([runs["sasrec-s1"]], [tmp_path / "missing"], device="cpu")


def test_cli_compare(runs, capsys):
    a, b = [str(runs["sasrec-s1"]), str(runs["sasrec-s2"])], [str(runs["short"])]
    assert main(["compare", "--runs", *a, "--against", *b, "--metric", "mrr", "--metric", "ndcg@7", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for text in ("A: sasrec-s{1,2}", "B: short", "Wilcoxon p", "paired-t p", "95% CI", "recall@40", "ndcg@40", "mrr",
                 "ndcg@7", "sasrec-s{1,2} above short (p=", "caution: the groups have 2 and 1 runs"):
        assert text in out, text
    assert main(["compare", "--runs", *a, "--against", *a, "--json", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["metrics"]) == ["recall@40", "ndcg@40"]
    assert main(["compare", "--runs", *a, "--against", *a, "--device", "cpu"]) == 0
    assert "caution" not in capsys.readouterr().out  # equal numbers of runs
    assert result["metrics"]["ndcg@40"]["diff"] == 0 and result["metrics"]["ndcg@40"]["wilcoxon_p"] == 1.0
    assert main(["compare", "--runs", *a, "--against", *b, "--metric", "foo@10"]) == 2
    assert "error: unknown metric 'foo@10'" in capsys.readouterr().err
    assert main(["compare", "--runs", *a, "--against", str(runs["tmp"] / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
