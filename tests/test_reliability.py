"""Bad settings, ids and requests give one clear line and a non-zero exit, never a traceback or garbage."""

from __future__ import annotations

import pandas as pd
import pytest

from sigmarec.serve.recommender import Recommender

from conftest import run_cli, train_tiny


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rel")
    return train_tiny("sasrec", tmp, train={"batch_size": 64}, hidden_size=16, n_layers=1)


def test_recommend_split_with_k_above_the_eligible_items_returns_only_eligible_items(run_dir):
    rec = Recommender.from_run(run_dir, device="cpu")
    frame = rec.recommend_split("test", k=10**6)
    assert "<pad>" not in set(frame["item"]) and frame["score"].map(lambda s: s > float("-inf")).all()
    data, cases = rec.data, rec.run.split.test
    for row in range(0, len(cases), 37):  # a sample of users: history items never come back
        user = data.user_ids[cases.users[row]]
        history = set(data.item_ids[data.items[cases.starts[row]:cases.ends[row]]])
        got = frame[frame["user"] == user]
        assert not history & set(got["item"])
        assert len(got) == data.n_items - len(history)
        assert list(got["rank"]) == list(range(1, len(got) + 1))


@pytest.mark.parametrize("args,fragment", [
    (["--split", "test", "-k", "-1"], "k (the number of recommendations) must be an integer >= 1"),
    (["--history", "", "-k", "3"], "--history: give at least one item id"),
    (["--history", " , ", "-k", "3"], "--history: give at least one item id"),
    (["--user", "no-such-user"], "unknown user id 'no-such-user'"),
    (["--history", "nope", "-k", "2"], "unknown item id(s) ['nope']"),
    (["--user", "0", "--device", "cuda:7"], "device 'cuda:7'"),
    (["--user", "0", "--threads", "0"], "--threads must be >= 1"),
])
def test_bad_recommend_requests_fail_in_one_line(run_dir, args, fragment, capsys):
    rc, err = _main("recommend", str(run_dir), *args, capsys=capsys)
    assert rc == 2 and fragment in err and "Traceback" not in err, err


def _main(*args: str, capsys) -> tuple[int, str]:
    """The CLI in this process (what a subprocess would print on stderr, without its start-up cost)."""
    from sigmarec.cli import main

    capsys.readouterr()
    rc = main(list(args))
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("sets,fragment", [
    (["train.device=bogus"], "train.device: expected auto, cpu, mps, cuda or cuda:N"),
    (["train.epochs=.nan"], "train.epochs: expected an integer"),
    (["train.epochs=inf"], "train.epochs: expected an integer"),
    (["eval.ks=[0,5]"], "eval.ks: expected a non-empty list"),
    (["model.hidden_size=0"], "model.hidden_size: expected an integer >= 1"),
    (["train.valid_metric=ndcg@7"], "train.valid_metric 'ndcg@7' is not produced"),
    (["train.lr=["], "--set train.lr: '[' is not a valid value"),
])
def test_bad_training_settings_fail_before_any_work(tmp_path, sets, fragment, capsys):
    out = tmp_path / "run"
    args = [a for s in sets for a in ("--set", s)]
    rc, err = _main("train", "sasrec", "--set", f"data.cache_dir={tmp_path / 'cache'}", *args, "--out", str(out), capsys=capsys)
    assert rc == 2 and fragment in err and "Traceback" not in err, err
    assert not (out / "epochs.jsonl").exists()


def test_a_cuda_device_on_a_machine_without_one_is_refused_before_reading_data(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = run_cli("train", "sasrec", "--dataset", str(tmp_path / "missing.csv"), "--set", "train.device=cuda",
                   "--out", str(tmp_path / "r"), check=False)
    assert proc.returncode == 2 and "sees no CUDA device" in proc.stderr and "missing.csv" not in proc.stderr


def test_a_second_writer_is_refused_with_the_pid_holding_the_run(tmp_path):
    import os

    from sigmarec.runs import RunLock

    out = tmp_path / "run"
    with RunLock(out):
        proc = run_cli("train", "sasrec", "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.epochs=1",
                       "--out", str(out), check=False)
    assert proc.returncode == 2 and f"in use by process {os.getpid()}" in proc.stderr, proc.stderr
    assert not (out / "epochs.jsonl").exists()
    with RunLock(out):  # released: it can be taken again
        pass


def test_stale_temporaries_of_a_killed_run_are_removed_on_start(tmp_path):
    from sigmarec.runs import remove_stale_temporaries

    run = tmp_path / "run"
    (run / "checkpoints" / ".last.k3j2x9").mkdir(parents=True)
    (run / "checkpoints" / ".last.k3j2x9" / "model.safetensors").write_bytes(b"half")
    (run / ".epochs.jsonl.ab12").write_text("{")
    (run / "checkpoints" / "best.old").mkdir()  # a fallback checkpoint, not a temporary: kept
    (run / "notes.txt").write_text("mine")
    removed = remove_stale_temporaries(run)
    assert sorted(p.name for p in removed) == [".epochs.jsonl.ab12", ".last.k3j2x9"]
    assert (run / "checkpoints" / "best.old").exists() and (run / "notes.txt").exists()


def _tiny_train_args(tmp_path, epochs):
    return ["train", "sasrec", "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "data.synthetic_users=120",
            "--set", "model.hidden_size=16", "--set", "model.n_layers=1", "--set", f"train.epochs={epochs}",
            "--set", "train.progress=false", "--set", "eval.ks=[5,10]", "--set", "train.valid_metric=ndcg@10",
            "--out", str(tmp_path / "run")]


def test_a_log_line_cut_short_by_a_crash_does_not_block_resume(tmp_path):
    import json

    run_cli(*_tiny_train_args(tmp_path, 2))
    log = tmp_path / "run" / "epochs.jsonl"
    log.write_text(log.read_text() + '{"epoch": 3, "loss": 4.')  # killed while writing the next record
    proc = run_cli(*_tiny_train_args(tmp_path, 3), check=False)
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["epoch"] for line in log.read_text().splitlines()] == [1, 2, 3]


def test_a_run_without_its_trainer_state_is_not_silently_restarted(tmp_path):
    run_cli(*_tiny_train_args(tmp_path, 1))
    (tmp_path / "run" / "checkpoints" / "last" / "state.json").unlink()
    (tmp_path / "run" / "checkpoints" / "best" / "state.json").unlink()  # with it, best would stand in (tested below)
    metrics = (tmp_path / "run" / "metrics.json").read_text()
    proc = run_cli(*_tiny_train_args(tmp_path, 1), check=False)
    assert proc.returncode == 2 and "--restart" in proc.stderr, proc.stderr
    assert (tmp_path / "run" / "metrics.json").read_text() == metrics  # nothing overwritten
    proc = run_cli(*_tiny_train_args(tmp_path, 1), "--restart", check=False)
    assert proc.returncode == 0, proc.stderr


def test_restart_trains_a_finished_run_again_from_scratch(tmp_path):
    """Without --restart a finished run resumes (nothing to do); with it, the run starts over: epoch 1 is trained
    again, not skipped, and the old results are gone."""
    import json

    run_cli(*_tiny_train_args(tmp_path, 2))
    log = tmp_path / "run" / "epochs.jsonl"
    first = [json.loads(line) for line in log.read_text().splitlines()]
    log.write_text("".join(json.dumps({**r, "loss": -1.0}) + "\n" for r in first))  # marks the old epochs
    run_cli(*_tiny_train_args(tmp_path, 2))  # resumes a finished run: the marked log stays
    assert [json.loads(line)["loss"] for line in log.read_text().splitlines()] == [-1.0, -1.0]
    proc = run_cli(*_tiny_train_args(tmp_path, 2), "--restart", check=False)
    assert proc.returncode == 0 and "starting over" in proc.stderr, proc.stderr
    again = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["epoch"] for r in again] == [1, 2] and all(r["loss"] > 0 for r in again)


def test_a_run_refuses_data_that_changed_after_training(tmp_path):
    """Shuffling the item column of the training file must not silently change evaluate's metrics."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{rng.integers(0, 40)}", t) for u in range(60) for t in range(8)]
    data = tmp_path / "log.csv"
    data.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    args = ["train", "sasrec", "--dataset", str(data), "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.epochs=1",
            "--set", "model.hidden_size=16", "--set", "model.n_layers=1", "--set", "train.progress=false", "--out", str(tmp_path / "run")]
    run_cli(*args)
    items = [i for _, i, _ in rows]
    rng.shuffle(items)
    data.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for (u, _, t), i in zip(rows, items)))
    for cmd in (["evaluate", str(tmp_path / "run")], ["recommend", str(tmp_path / "run"), "--user", "u1"], args):
        proc = run_cli(*cmd, check=False)
        assert proc.returncode == 2 and "trained on other data" in proc.stderr and "--allow-data-change" in proc.stderr, (cmd, proc.stderr)
    assert run_cli("evaluate", str(tmp_path / "run"), "--allow-data-change", check=False).returncode == 0


@pytest.mark.parametrize("case", ["out under a file", "dataset is a folder", "config is a folder"])
def test_paths_the_machine_refuses_give_one_line(tmp_path, case):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    args = ["train", "sasrec", "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.epochs=1"]
    if case == "out under a file":
        args += ["--out", str(blocker / "run")]
    elif case == "dataset is a folder":
        args += ["--dataset", str(tmp_path), "--out", str(tmp_path / "r")]
    else:
        args += ["--config", str(tmp_path), "--out", str(tmp_path / "r")]
    proc = run_cli(*args, check=False)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("damage", ["truncated npz", "bad ids.json", "missing array"])
def test_a_damaged_data_cache_is_rebuilt(tmp_path, damage, caplog):
    import numpy as np

    from sigmarec.config import DataConfig
    from sigmarec.data.catalog import cache_path, load_dataset

    cfg = DataConfig(dataset="synthetic", synthetic_users=80, cache_dir=str(tmp_path))
    first = load_dataset(cfg)
    cache = cache_path(cfg)
    if damage == "truncated npz":
        raw = (cache / "arrays.npz").read_bytes()
        (cache / "arrays.npz").write_bytes(raw[: len(raw) // 2])
    elif damage == "bad ids.json":
        (cache / "ids.json").write_text('{"users": [')
    else:
        np.savez(cache / "arrays.npz", items=first.items)  # offsets gone
    with caplog.at_level("WARNING", logger="sigmarec"):
        again = load_dataset(cfg)
    assert "rebuilding it" in caplog.text
    assert np.array_equal(again.items, first.items) and np.array_equal(again.offsets, first.offsets)
    assert load_dataset(cfg).n_items == first.n_items  # and the rebuilt cache reads


def test_a_run_serves_and_evaluates_from_its_own_copy_when_the_data_file_is_gone(tmp_path):
    """The run directory keeps the processed data it was trained on (id maps, sequences): evaluate and recommend
    give the same answers after the input file is deleted; without that copy the error names the missing file."""
    import json
    import shutil

    rows = [(f"u{u}", f"i{(u * 7 + t * 3) % 37}", t) for u in range(60) for t in range(8)]
    data = tmp_path / "log.csv"
    data.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    run = tmp_path / "run"
    run_cli("train", "sasrec", "--dataset", str(data), "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set", "train.epochs=1",
            "--set", "model.hidden_size=16", "--set", "model.n_layers=1", "--set", "train.progress=false", "--out", str(run))
    assert (run / "data" / "ids.json").exists()
    before = [run_cli("evaluate", str(run), "--json").stdout, run_cli("recommend", str(run), "--user", "u3", "-k", "5").stdout]
    data.unlink()
    after = [run_cli("evaluate", str(run), "--json").stdout, run_cli("recommend", str(run), "--user", "u3", "-k", "5").stdout]
    assert after == before and json.loads(after[0])
    shutil.rmtree(run / "data")
    proc = run_cli("evaluate", str(run), check=False)
    assert proc.returncode == 2 and "log.csv: no such file" in proc.stderr and "Traceback" not in proc.stderr


def _flip_a_byte(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x20
    path.write_bytes(bytes(raw))


def test_a_damaged_last_checkpoint_resumes_from_best_and_reaches_the_same_result(tmp_path):
    """`best` keeps the trainer state, so a run whose `last` is corrupt trains the epochs after `best` again, seeded
    as before, and ends where it did; with both damaged the error names them and --restart starts over."""
    import json

    args = _tiny_train_args(tmp_path, 6)
    run_cli(*args)
    run = tmp_path / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    log_before = (run / "epochs.jsonl").read_text()
    best_epoch = json.loads((run / "checkpoints" / "best" / "state.json").read_text())["epoch"]
    _flip_a_byte(run / "checkpoints" / "last" / "model.safetensors")
    proc = run_cli(*args, "--set", "train.epochs=6")
    assert "checksum mismatch" in proc.stderr and f"resuming from checkpoints/best (epoch {best_epoch})" in proc.stderr
    again = json.loads((run / "metrics.json").read_text())
    assert again["test"] == metrics["test"] and again["best_epoch"] == metrics["best_epoch"]
    assert [json.loads(l)["epoch"] for l in (run / "epochs.jsonl").read_text().splitlines()] == \
        [json.loads(l)["epoch"] for l in log_before.splitlines()]
    _flip_a_byte(run / "checkpoints" / "last" / "model.safetensors")
    _flip_a_byte(run / "checkpoints" / "best" / "model.safetensors")
    proc = run_cli(*args, check=False)
    assert proc.returncode == 2 and "last/model.safetensors" in proc.stderr and "best/model.safetensors" in proc.stderr
    assert "--restart" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli(*args, "--restart", check=False)
    assert proc.returncode == 0 and "starting over" in proc.stderr


def test_a_full_disk_while_checkpointing_fails_in_one_line_and_the_run_resumes_to_the_same_result(tmp_path, monkeypatch, capsys):
    import errno
    import json

    import sigmarec.runs.checkpoint as checkpoint
    from sigmarec.cli import main

    reference = tmp_path / "reference"
    reference.mkdir()
    assert main(_tiny_train_args(reference, 4)) == 0
    real_save, calls = checkpoint.save_file, []

    def full_disk(tensors, filename, *a, **k):
        calls.append(filename)
        if len(calls) == 4:  # the second epoch's checkpoint
            real_save(tensors, filename, *a, **k)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(tensors, filename, *a, **k)

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    capsys.readouterr()
    assert main(_tiny_train_args(tmp_path, 4)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ") and "No space left on device" in err and "cannot write checkpoint" in err
    assert not [p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".")]  # nothing half-written
    monkeypatch.setattr(checkpoint, "save_file", real_save)
    assert main(_tiny_train_args(tmp_path, 4)) == 0
    ours = json.loads((tmp_path / "run" / "metrics.json").read_text())
    theirs = json.loads((reference / "run" / "metrics.json").read_text())
    assert ours["test"] == theirs["test"] and ours["best_epoch"] == theirs["best_epoch"]


@pytest.mark.parametrize("case", ["other model", "config.yaml not YAML", "config.yaml empty"])
def test_a_run_directory_that_does_not_fit_gives_one_line(run_dir, tmp_path, case):
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(run_dir, run)
    if case == "other model":
        proc = run_cli("train", "gru4rec", "--set", "train.epochs=1", "--out", str(run), check=False)
        fragment = "model_name (sasrec vs gru4rec: the run was trained as sasrec)"
    else:
        (run / "config.yaml").write_text("model: [\n" if case == "config.yaml not YAML" else "")
        proc = run_cli("evaluate", str(run), check=False)
        fragment = "not valid YAML" if case == "config.yaml not YAML" else "expected a mapping with model_name"
    assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_run_files_are_as_readable_as_the_epoch_log(run_dir):
    """Atomic writes go through mkstemp/mkdtemp (0600/0700); the files they leave keep the ordinary permissions."""
    import stat

    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    log = mode(run_dir / "epochs.jsonl")
    names = ["config.yaml", "metrics.json", "data.json", "checkpoints/last/state.json", "data/ids.json"]
    names += [str(p.relative_to(run_dir)) for p in sorted(run_dir.glob("checkpoints/*/*.safetensors"))]  # safetensors: 0600
    assert any(n.endswith(".safetensors") for n in names)
    for name in names:
        assert mode(run_dir / name) == log, name
    assert mode(run_dir / "checkpoints" / "last") == mode(run_dir / "checkpoints")


def test_a_kill_before_the_first_checkpoint_starts_over(tmp_path):
    """Killed after the first epoch's log line but before its checkpoint: nothing to resume from and no result to
    protect, so the run starts over (with a warning) instead of asking for --restart."""
    import json
    import shutil

    args = _tiny_train_args(tmp_path, 1)
    run_cli(*args)
    run = tmp_path / "run"
    first = json.loads((run / "metrics.json").read_text())
    shutil.rmtree(run / "checkpoints")
    (run / "metrics.json").unlink()
    proc = run_cli(*args)
    assert "starting over" in proc.stderr
    assert json.loads((run / "metrics.json").read_text())["test"] == first["test"]
    assert len((run / "epochs.jsonl").read_text().splitlines()) == 1
