"""`sigmarec compare` in table mode: Holm correction, the table and its files, training what is missing, resuming
after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sigmarec.config import ConfigError
from sigmarec.evaluate.table import holm, learning_curves, line_styles
from sigmarec.train.grid import Job, model_seeds, progress_line

from conftest import run_cli

TINY = ["--set", "data.synthetic_users=120", "--set", "model.hidden_size=16", "--set", "train.epochs=2",
        "--set", "eval.ks=[5,10,20,40]"]


def test_models_take_their_own_seeds_and_bad_entries_fail_before_training():
    assert model_seeds(["sigma", "sasrec:1,3"], [1, 2]) == {"sigma": [1, 2], "sasrec": [1, 3]}
    for bad, says in ((["sasrc"], "unknown model 'sasrc'"), (["sasrec:1,x"], "integer seeds"),
                      (["sasrec:1,1"], "each once"), (["sasrec:-1"], ">= 0"), (["sasrec", "sasrec:2"], "twice")):
        with pytest.raises(ConfigError, match=says):
            model_seeds(bad, [1])


def test_progress_line_shows_epoch_metric_and_time_left(tmp_path):
    job = Job("sasrec", 1, tmp_path / "sasrec-s1")
    assert progress_line(job) == "sasrec-s1: starting"
    job.run_dir.mkdir()
    (job.run_dir / "config.yaml").write_text("train:\n  epochs: 100\n  patience: 10\n  eval_every: 1\n")
    seconds = [60, 60, 600, 60, 60]  # one disturbed epoch: the median ignores it
    rows = [{"epoch": e, "loss": 1.0 / e, "train_seconds": t - 10, "eval_seconds": 10, "valid": {"ndcg@20": v}}
            for e, t, v in zip(range(1, 6), seconds, [0.1, 0.3, 0.2, 0.25, 0.2])]
    (job.run_dir / "epochs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    line = progress_line(job)  # best at epoch 2: patience ends at epoch 12, 7 epochs of 60 s; the budget 95 epochs
    assert line == ("sasrec-s1: epoch 5, loss 0.2000, valid ndcg@20 0.2000 (best 0.3000 @ 2), "
                    "time left ~7m00s (early stop) / 1h35m (budget)")
    (job.run_dir / "metrics.json").write_text("{}")
    assert progress_line(job) == "sasrec-s1: done"


def test_twelve_models_get_twelve_distinct_lines(tmp_path, monkeypatch):
    styles = line_styles(12)  # SIGMA's Table 1: matplotlib's default cycle would repeat its first two colours
    assert len(set(styles)) == 12 and styles[0] == ("C0", "-") and styles[10] == ("C0", "--")
    groups = {}
    for i in range(12):
        run = tmp_path / f"m{i}-s1"
        run.mkdir()
        rows = [{"epoch": e, "valid": {"ndcg@20": 0.01 * e + 0.001 * i}} for e in (1, 2, 3)]
        (run / "epochs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        groups[f"m{i}"] = [run]
    import matplotlib.pyplot as plt

    seen = []
    real_savefig = plt.Figure.savefig

    def spy(fig, *a, **k):
        seen.extend((line.get_color(), line.get_linestyle()) for line in fig.axes[0].get_lines())
        return real_savefig(fig, *a, **k)

    monkeypatch.setattr(plt.Figure, "savefig", spy)
    path = learning_curves(groups, "ndcg@20", tmp_path / "curves.png")
    assert path.stat().st_size > 0 and len(seen) == 12 and len(set(seen)) == 12


@pytest.mark.parametrize("extra,says", [
    (["--set", "train.lrr=1"], "unknown key train.lrr"), (["--set", "model.hidden_size=-4"], "model.hidden_size"),
    (["--focus", "gru4rec"], "--focus 'gru4rec' is not one of the models"), (["--metric", "recal@5"], "unknown metric"),
    (["--out", "FILE"], "is a file; expected a folder"), (["--seeds", "-1"], "--seeds: needs"),
])
def test_a_bad_compare_request_fails_before_anything_trains(tmp_path, capsys, extra, says):
    from sigmarec.cli import main

    (tmp_path / "FILE").write_text("")
    extra = [str(tmp_path / "FILE") if a == "FILE" else a for a in extra]
    out = tmp_path / "cmp"
    assert main(["compare", "--models", "sasrec", "--dataset", "synthetic", "--seeds", "1", "--out", str(out), *extra]) == 2
    assert says in capsys.readouterr().err and not out.exists()


def test_a_row_never_averages_runs_of_different_configurations(tmp_path):
    import yaml

    from sigmarec.config import RunError
    from sigmarec.evaluate.table import check_group_configs, group_runs
    from sigmarec.runs import load_run_config, make_config

    def run(name, **train):
        (tmp_path / name).mkdir()
        cfg = make_config("sasrec", {"train": train, "model": {"hidden_size": 16 if name != "sasrec-s3" else 32}})
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
        return tmp_path / name

    def check(dirs):
        check_group_configs(group_runs(dirs), {p: load_run_config(p) for p in dirs})

    same = [run("sasrec-s1", seed=1), run("sasrec-s2", seed=2, epochs=7)]  # seed and budget may differ
    check(same)
    with pytest.raises(RunError, match=r"row 'sasrec'.*model.hidden_size \(16 vs 32\)|row 'sasrec'.*model.hidden_size \(32 vs 16\)"):
        check([*same, run("sasrec-s3", seed=3)])


def test_holm_matches_a_worked_example():
    # sorted p: .01 x 3 = .03; .03 x 2 = .06; .04 x 1 = .04 -> kept monotone: .06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([0.2]) == pytest.approx([0.2])


def _compare(tmp_path, *extra, check=True):
    return run_cli("compare", "--models", "sasrec", "gru4rec", "--dataset", "synthetic", "--seeds", "1", "2",
                   "--out", str(tmp_path / "cmp"), "--set", f"data.cache_dir={tmp_path / 'cache'}", *TINY, *extra, check=check)


def test_compare_trains_what_is_missing_resumes_after_a_kill_and_writes_the_table(tmp_path):
    out = tmp_path / "cmp"
    cmd = [sys.executable, "-m", "sigmarec.cli", "compare", "--models", "sasrec", "gru4rec", "--dataset", "synthetic",
           "--seeds", "1", "2", "--jobs", "2", "--out", str(out), "--set", f"data.cache_dir={tmp_path / 'cache'}", *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    first = out / "sasrec-s1" / "epochs.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (first.exists() and first.read_text().strip()):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the compare and its training children, mid-run
    proc.wait()
    assert not (out / "table.md").exists()
    done = _compare(tmp_path, "--jobs", "2")  # resumes: finished runs reused, the others trained or resumed
    assert "run(s), 2 at a time" in done.stdout
    for name in ("table.md", "table.csv", "table.tex", "table.json", "curves.png"):
        assert (out / name).exists(), name
    md = (out / "table.md").read_text()
    assert "| sasrec |" in md and "| gru4rec |" in md and "**" in md and "Improv. (sasrec vs best other)" in md
    assert "\\textbf{" in (out / "table.tex").read_text()
    for m in ("sasrec", "gru4rec"):
        for s in (1, 2):
            assert (out / f"{m}-s{s}" / "metrics.json").exists()
    again = _compare(tmp_path, "--focus", "gru4rec")
    assert "training" not in again.stdout and "Improv. (gru4rec vs best other)" in again.stdout  # finished runs reused
    tests = json.loads((out / "table.json").read_text())["tests"]["sasrec"]  # one compared model: Holm leaves p as is
    assert all(t["t_p_holm"] == pytest.approx(min(1.0, t["t_p"])) for t in tests.values())
    assert "recall@40_t_p_holm" in (out / "table.csv").read_text().splitlines()[0]
    other = _compare(tmp_path, "--set", "train.lr=0.01", check=False)  # not what the finished runs were trained with
    assert other.returncode != 0 and "sasrec-s1" in other.stderr and "train.lr (0.001 vs 0.01)" in other.stderr
    table = run_cli("compare", "--focus", "gru4rec", "--runs", *[str(out / f"{m}-s{s}") for m in ("sasrec", "gru4rec") for s in (1, 2)])
    assert table.stdout.splitlines()[2:4] == again.stdout.splitlines()[2:4]  # the same rows from --runs
    one = run_cli("compare", "--runs", str(out / "sasrec-s1"), str(out / "sasrec-s2"), "--out", str(tmp_path / "one"))
    assert "| sasrec |" in one.stdout and "no tests" in one.stdout and "Improv." not in one.stdout  # one model: its seeds
    assert "sasrec" in (tmp_path / "one" / "table.tex").read_text()
    mixed = _compare(tmp_path, "--models", "sasrec", "gru4rec:1")  # its own seeds (finished: reused); no "± 0.0000"
    gru_row = next(line for line in mixed.stdout.splitlines() if line.startswith("| gru4rec |"))
    assert "±" not in gru_row and "±" in mixed.stdout.splitlines()[2] and "runs: sasrec 2, gru4rec 1" in mixed.stdout
    assert "training" not in mixed.stdout
    gru_csv = next(r for r in (out / "table.csv").read_text().splitlines() if r.startswith("gru4rec,"))
    assert gru_csv.split(",")[1:4] == ["1", gru_csv.split(",")[2], ""]  # runs 1, a mean, an empty std


def test_a_two_group_compare_refuses_a_group_of_different_configurations(tmp_path):
    """``compare --runs A... --against B...`` averages each group's runs per user, so each group must be one
    configuration (seeds apart), as a table row must; refused before any run is ranked."""
    import yaml

    from sigmarec.config import RunError
    from sigmarec.evaluate.paired import compare
    from sigmarec.runs import make_config

    def run(name, hidden, seed):
        (tmp_path / name).mkdir()
        cfg = make_config("sasrec", {"train": {"seed": seed}, "model": {"hidden_size": hidden}})
        (tmp_path / name / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
        return tmp_path / name

    a = [run("a-s1", 16, 1), run("a-s2", 32, 2)]
    b = [run("b-s1", 16, 1)]
    with pytest.raises(RunError, match=r"group A \(--runs\).*model.hidden_size"):
        compare(a, b)
    with pytest.raises(RunError, match=r"group B \(--against\).*model.hidden_size"):
        compare(b, a)
