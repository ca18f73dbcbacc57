"""Train the missing runs of a model x seed grid (``sigmarec compare --models ... --seeds ...``) in parallel
processes, each with its own thread count, printing one progress line per job. A finished run (``metrics.json``)
is reused; an unfinished one resumes, so a killed compare continues where it stopped when run again."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from sigmarec.config import RunError


@dataclass
class Job:
    model: str
    seed: int
    run_dir: Path

    @property
    def name(self) -> str:
        return f"{self.model}-s{self.seed}"


def model_seeds(models: Sequence[str], seeds: Sequence[int]) -> dict[str, list[int]]:
    """Each ``--models`` entry with its seeds: ``MODEL`` runs ``seeds``, ``MODEL:1,2,3`` its own (three seeds of the
    model that matters, one of each baseline). Unknown models and malformed seeds are refused before anything trains."""
    from sigmarec.config import ConfigError
    from sigmarec.models.registry import get_model_class

    out: dict[str, list[int]] = {}
    for entry in models:
        name, sep, own = entry.partition(":")
        get_model_class(name)
        try:
            chosen = [int(s) for s in own.split(",")] if sep else list(seeds)
        except ValueError:
            raise ConfigError(f"--models {entry!r}: expected MODEL or MODEL:SEED,SEED,... with integer seeds") from None
        if not chosen or len(set(chosen)) != len(chosen) or min(chosen) < 0:
            where = f"--models {entry!r}" if sep else "--seeds"
            raise ConfigError(f"{where}: needs at least one seed, each once and >= 0; got {chosen}")
        if name in out:
            raise ConfigError(f"--models names {name!r} twice")
        out[name] = chosen
    return out


def plan(models: Sequence[str], seeds: Sequence[int], out: str | Path) -> dict[str, list[Job]]:
    """The run directory of every (model, seed): ``OUT/MODEL-sSEED``, grouped by model (``MODEL:S1,S2`` entries
    choose their own seeds; see ``model_seeds``)."""
    return {m: [Job(m, s, Path(out) / f"{m}-s{s}") for s in ss] for m, ss in model_seeds(models, seeds).items()}


def progress_line(job: Job) -> str:
    """``model-sN: epoch E, valid METRIC V (best B @ E*)`` from the run's epoch log, or its state."""
    if (job.run_dir / "metrics.json").exists():
        return f"{job.name}: done"
    log = job.run_dir / "epochs.jsonl"
    lines = log.read_text().splitlines() if log.exists() else []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            pass
    if not records:
        return f"{job.name}: starting"
    last = records[-1]
    text = f"{job.name}: epoch {last['epoch']}, loss {last['loss']:.4f}"
    validated = [r for r in records if r.get("valid")]
    best_epoch = last["epoch"]
    if validated:
        metric = "ndcg@20" if "ndcg@20" in validated[-1]["valid"] else next(iter(validated[-1]["valid"]))
        best = max(validated, key=lambda r: r["valid"].get(metric, float("-inf")))
        best_epoch = best["epoch"]
        text += f", valid {metric} {validated[-1]['valid'][metric]:.4f} (best {best['valid'][metric]:.4f} @ {best_epoch})"
    return text + _time_left(job, records, best_epoch)


def _time_left(job: Job, records: list[dict], best_epoch: int) -> str:
    """``, time left ~A (early stop) / B (budget)`` from the run's epoch log and its ``config.yaml`` (``time_left``)."""
    from sigmarec.config import load_yaml
    from sigmarec.train.report import time_left

    try:
        train = load_yaml(job.run_dir / "config.yaml").get("train", {})
        epochs, patience, every = int(train["epochs"]), int(train["patience"]), int(train.get("eval_every", 1))
    except (OSError, KeyError, TypeError, ValueError):
        return ""
    recent = [r.get("train_seconds", 0) + r.get("eval_seconds", 0) for r in records[-5:]]
    return ", time left " + time_left(recent, records[-1]["epoch"], epochs, best_epoch, patience * every)


def job_sets(job: Job, sets: Sequence[str]) -> list[str]:
    """The ``--set`` values a job's ``sigmarec train`` gets: the compare's own, then the job's seed (which wins), so
    the check of an existing run and the child that trains it resolve the same configuration."""
    return [*sets, f"train.seed={job.seed}"]


def check_existing(groups: dict[str, list[Job]], dataset: str, sets: Sequence[str] = ()) -> None:
    """Resolve every job's configuration (a bad ``--set`` fails before anything trains) and refuse a run directory
    already in the grid whose ``config.yaml`` differs from what ``sigmarec train`` would now resolve for it (another
    ``--set``, a changed preset): a finished one would otherwise be reused silently in the table, an unfinished one
    fail hours later. Budget and thread fields may differ."""
    from sigmarec.config import load_yaml, parse_set
    from sigmarec.runs import make_config
    from sigmarec.runs.config import RESUMABLE_CHANGES, config_differences

    for job in (j for js in groups.values() for j in js):
        overrides = parse_set(job_sets(job, sets))
        overrides.setdefault("data", {})["dataset"] = dataset
        requested = make_config(job.model, overrides)  # a bad --set fails here, for every job, before any training
        path = job.run_dir / "config.yaml"
        if not path.exists():
            continue
        diff = config_differences(load_yaml(path), requested)
        if diff:
            raise RunError(f"{job.run_dir} was trained with another configuration than this compare asks for "
                           f"({'; '.join(diff)}: stored vs requested); give compare another --out, or remove that run "
                           f"to train it again (only train.{', train.'.join(RESUMABLE_CHANGES)} may differ)")


def train_missing(groups: dict[str, list[Job]], dataset: str, sets: Sequence[str] = (), jobs: int = 1, threads: int = 1,
                  poll_seconds: float = 30.0, echo: Callable[[str], None] = print) -> None:
    """Train every job without ``metrics.json`` (``sigmarec train`` in a child process), ``jobs`` at a time, after
    ``check_existing`` has found every run already there made with the requested configuration."""
    check_existing(groups, dataset, sets)
    todo = [j for js in groups.values() for j in js if not (j.run_dir / "metrics.json").exists()]
    if not todo:
        return
    echo(f"training {len(todo)} run(s), {jobs} at a time, {threads} thread(s) each")
    running: list[tuple[Job, subprocess.Popen, Path]] = []
    last_report = 0.0
    while todo or running:
        while todo and len(running) < jobs:
            job = todo.pop(0)
            job.run_dir.parent.mkdir(parents=True, exist_ok=True)
            log = job.run_dir.parent / f"{job.name}.log"
            cmd = [sys.executable, "-m", "sigmarec.cli", "train", job.model, "--dataset", dataset, "--out", str(job.run_dir),
                   "--set", f"train.num_threads={threads}", "--set", "train.progress=false"]
            for kv in job_sets(job, sets):
                cmd += ["--set", kv]
            with open(log, "a") as f:
                running.append((job, subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT), log))
        time.sleep(min(poll_seconds, 1.0))
        for entry in list(running):
            job, proc, log = entry
            if proc.poll() is None:
                continue
            running.remove(entry)
            if proc.returncode != 0:
                for _, other, _ in running:
                    other.terminate()
                tail = log.read_text().strip().splitlines()[-1:] if log.exists() else []
                raise RunError(f"training {job.name} failed (exit {proc.returncode}; log {log}): {' '.join(tail)}")
            echo(progress_line(job))
        if running and time.time() - last_report >= poll_seconds:
            last_report = time.time()
            for job, _, _ in running:
                echo(progress_line(job))
