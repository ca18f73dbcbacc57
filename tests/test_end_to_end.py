"""Train, evaluate and recommend through the CLI on tiny data; kill and resume a run."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from sigmarec.runs import make_config
from sigmarec.train.trainer import RESUMABLE_CHANGES, Trainer

from conftest import run_cli


def set_args(overrides):
    return [a for section, values in overrides.items() for k, v in values.items()
            for a in ("--set", f"{section}.{k}={json.dumps(v) if isinstance(v, list) else v}")]


@pytest.mark.parametrize("model", ["sasrec", "gru4rec", "comirec_sa"])  # comirec_sa: K interest vectors
def test_train_evaluate_recommend_roundtrip(tmp_path, tiny_overrides, model):
    out = tmp_path / "run"
    if model == "comirec_sa":
        tiny_overrides["model"] = {"hidden_size": 16}  # no layers to set
    run_cli("train", model, *set_args(tiny_overrides), "--out", str(out))
    for name in ("config.yaml", "epochs.jsonl", "metrics.json", "data.json"):
        assert (out / name).exists(), name
    assert (out / "checkpoints" / "best" / "model.safetensors").exists()
    assert (out / "checkpoints" / "last" / "optimizer.safetensors").exists()
    epochs = [json.loads(l) for l in (out / "epochs.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4] and all("loss" in e and "valid" in e for e in epochs)
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"recall@5", "ndcg@10", "mrr", "precision@5", "coverage@10"} <= set(metrics["test"])

    evaluated = json.loads(run_cli("evaluate", str(out), "--json").stdout)
    for k, v in metrics["test"].items():
        assert evaluated[k] == pytest.approx(v, abs=1e-9), k

    rec_file = tmp_path / "rec.csv"
    run_cli("recommend", str(out), "--split", "test", "-k", "10", "--output", str(rec_file))
    recs = pd.read_csv(rec_file, dtype={"user": str, "item": str})
    assert list(recs.columns) == ["user", "rank", "item", "score"]
    # recompute metrics from the file with the test targets in original ids
    from sigmarec.runs import load_run

    run = load_run(out)
    targets = pd.DataFrame({"user": run.data.user_ids[run.split.test.users].astype(str),
                            "target": run.data.item_ids[run.split.test.targets].astype(str)})
    merged = recs.merge(targets, on="user")
    hits = merged[merged["item"] == merged["target"]].set_index("user")["rank"]
    ranks = targets["user"].map(hits).to_numpy(dtype=float)  # NaN = not in the top 10
    for k in (5, 10):
        hit = np.nan_to_num(ranks <= k)
        ndcg = np.where(ranks <= k, 1 / np.log2(np.nan_to_num(ranks, nan=1e9) + 1), 0.0)
        assert hit.mean() == pytest.approx(metrics["test"][f"recall@{k}"], abs=1e-9)
        assert ndcg.mean() == pytest.approx(metrics["test"][f"ndcg@{k}"], abs=1e-9)
    # recommended items never come from the user's input history
    seqs = {str(run.data.user_ids[u]): set(run.data.item_ids[run.data.items[s:e]]) for u, s, e in
            zip(run.split.test.users, run.split.test.starts, run.split.test.ends)}
    assert not any(item in seqs[user] for user, item in zip(recs["user"], recs["item"]))

    user = str(run.data.user_ids[0])
    proc = run_cli("recommend", str(out), "--user", user, "-k", "5")
    assert len(pd.read_csv(pd.io.common.StringIO(proc.stdout))) == 5
    history = ",".join(str(i) for i in run.data.item_ids[run.data.sequence(0)[:3]])
    proc = run_cli("recommend", str(out), "--history", history, "-k", "3")
    assert len(pd.read_csv(pd.io.common.StringIO(proc.stdout))) == 3
    bad = run_cli("recommend", str(out), "--history", "no-such-item", "-k", "3", check=False)
    assert bad.returncode == 2 and "no-such-item" in bad.stderr


def test_comirec_protocol_trains_and_evaluates_held_out_users(tmp_path, tiny_overrides):
    overrides = {**tiny_overrides, "protocol": {"name": "comirec"}, "model": {"hidden_size": 16},
                 "train": {**tiny_overrides["train"], "epochs": 2}}
    out = tmp_path / "run"
    run_cli("train", "mind", *set_args(overrides), "--out", str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    from sigmarec.runs import load_run

    run = load_run(out)
    test_users = set(run.split.test.users.tolist())
    assert metrics["test"]["n"] == len(test_users) > 0
    assert not test_users & set(run.split.train_users.tolist())  # held-out users never train
    assert 0 < metrics["test"]["recall@10"] <= metrics["test"]["hit@10"] <= 1  # several targets: recall <= hit
    evaluated = json.loads(run_cli("evaluate", str(out), "--json").stdout)
    assert evaluated["recall@10"] == pytest.approx(metrics["test"]["recall@10"], abs=1e-9)


def test_session_model_end_to_end_knows_when_a_session_opens(tmp_path, tiny_overrides):
    """HNVM under the session protocol: evaluation gives it the sessions, the user and whether the target
    opens a session; ``recommend --user --new-session`` asks for a new session's first item."""
    overrides = {**tiny_overrides, "protocol": {"name": "session"},
                 "data": {**tiny_overrides["data"], "dataset": "synthetic-sessions"},
                 "model": {"hidden_size": 16, "gru_size": 16, "z_size": 8, "user_size": 4},
                 "eval": {"ks": [5]}, "train": {**tiny_overrides["train"], "epochs": 2, "valid_metric": "mrr@5"}}
    out = tmp_path / "run"
    run_cli("train", "hnvm", *set_args(overrides), "--out", str(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"recall@5", "mrr@5", "precision@5"} <= set(metrics["test"])
    from sigmarec.serve.recommender import Recommender

    rec = Recommender.from_run(out)
    opens = rec.data.session_starts[rec.run.split.test.ends]
    assert 0 < opens.mean() < 1  # the test set has both kinds of target
    user = str(rec.data.user_ids[rec.run.split.test.users[0]])
    cont, new = rec.recommend_user(user, k=5), rec.recommend_user(user, k=5, new_session=True)
    assert [s for _, s in cont] != [s for _, s in new]
    proc = run_cli("recommend", str(out), "--user", user, "-k", "5", "--new-session")
    assert pd.read_csv(pd.io.common.StringIO(proc.stdout), dtype={"item": str})["item"].tolist() == [i for i, _ in new]


def test_killed_run_resumes_to_same_metrics(tmp_path, tiny_overrides):
    tiny_overrides["train"]["epochs"] = 12
    ref = Trainer(make_config("sasrec", tiny_overrides), tmp_path / "ref").fit()

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "sigmarec.cli", "train", "sasrec", *set_args(tiny_overrides), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "epochs.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "metrics.json").exists()

    run_cli("train", "sasrec", *set_args(tiny_overrides), "--out", str(out))
    resumed = json.loads((out / "metrics.json").read_text())
    for split in ("valid", "test"):
        for k, v in ref[split].items():
            assert resumed[split][k] == pytest.approx(v, abs=1e-6), (split, k)
    assert resumed["best_epoch"] == ref["best_epoch"]
    epochs = [json.loads(l)["epoch"] for l in log.read_text().splitlines()]
    assert epochs == list(range(1, 13))


def test_resume_refuses_a_different_config(tmp_path, tiny_overrides):
    tiny_overrides["train"]["epochs"] = 1
    Trainer(make_config("sasrec", tiny_overrides), tmp_path / "r").fit()
    tiny_overrides["model"]["hidden_size"] = 32
    with pytest.raises(ValueError, match=r"different configuration \(model.hidden_size \(16 vs 32\)"):
        Trainer(make_config("sasrec", tiny_overrides), tmp_path / "r").fit()
    # a larger budget is not a different run: it continues where the first stopped
    tiny_overrides["model"]["hidden_size"] = 16
    tiny_overrides["train"]["epochs"] = 2
    tiny_overrides["train"]["eval_every"] = 2  # nor is validating less often
    Trainer(make_config("sasrec", tiny_overrides), tmp_path / "r").fit()
    epochs = [json.loads(l)["epoch"] for l in (tmp_path / "r" / "epochs.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    del tiny_overrides["train"]["eval_every"]
    # a field the stored config lacks (an option added to the library since) resumes at its default...
    path = tmp_path / "r" / "config.yaml"
    stored = yaml.safe_load(path.read_text())
    del stored["data"]["session_gap"], stored["protocol"]["split_seed"]
    path.write_text(yaml.safe_dump(stored))
    tiny_overrides["train"]["epochs"] = 3
    Trainer(make_config("sasrec", tiny_overrides), tmp_path / "r").fit()
    assert len((tmp_path / "r" / "epochs.jsonl").read_text().splitlines()) == 3
    # ...but not when the run asks for another value, and a field this version lacks is named
    tiny_overrides["data"]["session_gap"] = 60.0
    with pytest.raises(ValueError, match=r"data.session_gap \(1800.0 vs 60.0\)"):
        Trainer(make_config("sasrec", tiny_overrides), tmp_path / "r").fit()
    del tiny_overrides["data"]["session_gap"]
    stored = yaml.safe_load(path.read_text())
    stored["model"]["no_such_option"] = 1
    path.write_text(yaml.safe_dump(stored))
    with pytest.raises(ValueError, match="no_such_option"):
        Trainer(make_config("sasrec", tiny_overrides), tmp_path / "r").fit()


def test_cli_errors_are_clear(tmp_path):
    proc = run_cli("train", "nosuchmodel", check=False)
    assert proc.returncode == 2 and "unknown model" in proc.stderr
    proc = run_cli("train", "sasrec", "--set", "train.lr=abc", check=False)
    assert proc.returncode == 2 and "train.lr" in proc.stderr
    proc = run_cli("train", "sasrec", "--dataset", str(tmp_path / "missing.txt"), "--set",
                   f"data.cache_dir={tmp_path}", check=False)
    assert proc.returncode == 2 and "missing.txt" in proc.stderr
    for cmd in (["--help"], ["train", "--help"], ["evaluate", "--help"], ["recommend", "--help"], ["data", "--help"], ["demo", "--help"]):
        assert run_cli(*cmd).stdout.startswith("usage")


def test_readme_names_every_field_a_resume_may_change():
    """The README lists the resumable fields by hand for readers; it must not drift from the code."""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    if not readme.exists():
        pytest.skip("README.md not beside tests/ (installed package only)")
    paragraph = readme.read_text().split("A resume may change only", 1)[1].split(";", 1)[0]
    named = {name.split(".")[-1] for name in re.findall(r"`([\w.]+)`", paragraph)}
    assert named == set(RESUMABLE_CHANGES)


def test_refit_trains_the_validation_targets_for_the_best_epoch_count(tmp_path, tiny_overrides, one_thread, capsys):
    from sigmarec.cli import main
    from sigmarec.config import ConfigError, RunError
    from sigmarec.runs import load_run

    tiny_overrides["train"]["epochs"] = 3
    tiny_overrides["model"] = {"hidden_size": 16}
    first = Trainer(make_config("bprmf", tiny_overrides), tmp_path / "bpr").fit()
    with pytest.raises(ConfigError, match="trained 'bprmf', not 'sasrec'"):
        make_config("sasrec", refit_of=tmp_path / "bpr")
    (tmp_path / "half").mkdir()
    with pytest.raises(RunError, match="not a finished run"):
        make_config("bprmf", refit_of=tmp_path / "half")

    assert main(["train", "bprmf", "--refit", str(tmp_path / "bpr"), "--threads", "1"]) == 0
    out = tmp_path / "bpr-refit"
    cfg = load_run(out).cfg
    assert cfg.protocol.train_on_valid and cfg.train.epochs == first["best_epoch"]
    assert cfg.data == make_config("bprmf", tiny_overrides).data and cfg.model == make_config("bprmf", tiny_overrides).model
    metrics = json.loads((out / "metrics.json").read_text())
    assert "valid" not in metrics and metrics["epochs"] == metrics["best_epoch"] == first["best_epoch"]
    records = [json.loads(l) for l in (out / "epochs.jsonl").read_text().splitlines()]
    assert len(records) == first["best_epoch"] and not any("valid" in r for r in records)  # nothing held out to validate
    assert (out / "checkpoints" / "best").exists()  # the last epoch is the selected model, for every reader
    with pytest.raises(ConfigError, match="already a refit"):
        make_config("bprmf", refit_of=out)
    assert main(["evaluate", str(out), "--split", "valid"]) != 0  # its validation cases were trained on
    assert "validation cases were trained on" in capsys.readouterr().err
    from sigmarec.evaluate.paired import compare
    result = compare([tmp_path / "bpr"], [out], "test", ["recall@10"], device="cpu")  # same test cases: comparable
    assert result["n_users"] > 0
