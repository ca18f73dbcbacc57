"""Benchmarks behind BENCHMARKS.md: accuracy on the shared reference data and CPU speed.

    python benchmarks/run.py accuracy --dataset office --loss ce --seeds 1 2 3
    python benchmarks/run.py speed --dataset beauty

Results are appended as JSON lines to benchmarks/results/*.jsonl (with machine and command);
``summarise`` turns them into the tables pasted into BENCHMARKS.md. Missing shared data is
reported, not faked.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from sigmarec.data.catalog import load_dataset
from sigmarec.data.protocols import make_split
from sigmarec.data.sequences import DataError
from sigmarec.evaluate.evaluator import evaluate
from sigmarec.memory import reuse_freed_memory
from sigmarec.runs import build_model, make_config
from sigmarec.train.trainer import Trainer
from sigmarec.data.batching import train_batches

RESULTS = Path(__file__).resolve().parent / "results"
KEYS = ["recall@20", "recall@40", "ndcg@20", "ndcg@40"]


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def code_version() -> str:
    """The commit the running code came from (``+dirty`` with uncommitted changes to ``src`` or this script), or ``unknown``."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "src", "benchmarks/run.py"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


CODE = code_version()  # read once at start: the code this process imported, not what is on disk later


def record(name: str, row: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    row = {"date": time.strftime("%Y-%m-%d"), "time": time.strftime("%H:%M:%S"), "code": CODE,
           "machine": machine(), "command": " ".join(sys.argv), **row}
    with open(RESULTS / f"{name}.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def setup_model(name: str, overrides: dict) -> tuple:
    """``(cfg, data, split, model)`` for a speed measurement: the model's resolved config with ``overrides``, its
    data set and split, and the model built under seed 0."""
    cfg = make_config(name, overrides)
    data = load_dataset(cfg.data)
    split = make_split(data, cfg.protocol, cfg.data.max_len)
    torch.manual_seed(0)
    return cfg, data, split, build_model(cfg, data, split)


def train_seconds(model, opt: torch.optim.Optimizer, batches) -> float:
    """Wall seconds of one pass of training steps over ``batches`` (loss, backward, optimizer step, the model's
    per-step schedule), as the trainer takes them."""
    t0 = time.perf_counter()
    for b in batches:
        loss = model(b)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.on_train_step()
    return time.perf_counter() - t0


def accuracy(args: argparse.Namespace) -> None:
    for seed in args.seeds:
        overrides = {"data": {"dataset": args.dataset, "max_len": args.max_len},
                     "train": {"seed": seed, "progress": False, "patience": args.patience, "epochs": args.epochs,
                               "num_threads": args.threads},
                     "model": {"loss": args.loss}}
        for kv in args.set or []:
            key, value = kv.split("=", 1)
            section, field = key.split(".")
            overrides.setdefault(section, {})[field] = yaml.safe_load(value)
        cfg = make_config(args.model, overrides)
        out = Path(args.out) / f"{args.model}-{args.dataset}-{args.loss}-{args.tag}-s{seed}"
        t0 = time.time()
        metrics = Trainer(cfg, out).fit()
        lines = [json.loads(l) for l in (out / "epochs.jsonl").read_text().splitlines()]
        train_s = [l["train_seconds"] for l in lines]
        record("accuracy", {"model": args.model, "dataset": args.dataset, "loss": args.loss, "tag": args.tag, "seed": seed,
                            "set": args.set or [], "test": metrics["test"], "valid": metrics.get("valid"),
                            "best_epoch": metrics["best_epoch"], "epochs": metrics["epochs"],
                            "sec_per_epoch": float(np.mean(train_s)),
                            # robust to epochs that spanned a pause (SIGSTOP) or a session's end
                            "sec_per_epoch_median": float(np.median(train_s)),
                            # the whole run, over every resume: training and validation time from the epoch log
                            "run_seconds": round(sum(l["train_seconds"] + l.get("eval_seconds", 0.0) for l in lines), 1),
                            # this process only (a resumed run counts from the resume)
                            "wall_seconds": round(time.time() - t0, 1), "run_dir": str(out)})
        shown = [k for k in KEYS if k in metrics["test"]] or [k for k in metrics["test"] if "@" in k and not k.startswith("coverage")]
        print(json.dumps({k: round(metrics["test"][k], 4) for k in shown}), flush=True)


def speed(args: argparse.Namespace) -> None:
    """Seconds per training epoch and per full evaluation of each model, measured in one process
    (so ratios between models compare like with like), and the process's peak memory so far (RSS)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    reused = False if args.no_reuse else reuse_freed_memory()  # as the trainer does on CPU (train.reuse_freed_memory)
    session = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for name in args.models:
        cfg, data, split, model = setup_model(name, {"data": {"dataset": args.dataset}, "train": {"num_threads": args.threads}})
        model.on_epoch_start(10**6)  # schedules fully on (e.g. SIGMA's hard interests after warm-up)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        times = [train_seconds(model, opt, train_batches(split, cfg.train.batch_size, cfg.data.max_len,
                                                         np.random.default_rng(epoch), not args.no_bucket))
                 for epoch in range(args.epochs)]
        t0 = time.time()
        evaluate(model, data, split.test, cfg.eval, cfg.data.max_len)
        eval_s = time.time() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        row = {"model": name, "dataset": args.dataset, "bucket": not args.no_bucket, "session": session,
               "hidden_size": getattr(cfg.model, "hidden_size", None), "max_len": cfg.data.max_len,
               "sec_per_epoch": float(np.median(times)), "sec_full_eval_test": eval_s, "eval_users": len(split.test),
               "peak_rss_mb_so_far": peak_mb, "train_targets": split.n_train_targets, "reuse_freed_memory": reused}
        if rows:
            row["ratio_to_first"] = {"model": rows[0]["model"], "train": row["sec_per_epoch"] / rows[0]["sec_per_epoch"],
                                     "eval": eval_s / rows[0]["sec_full_eval_test"]}
        rows.append(row)
        record("speed", row)
        print(json.dumps(row), flush=True)


def prior(args: argparse.Namespace) -> None:
    """SIGMA's mixture prior on trained runs (``sigmarec.evaluate.prior``): KL decomposition, dependence on the
    user's own interests, gradient alignment with reconstruction; over the first ``--batches`` training batches."""
    from sigmarec.evaluate.prior import prior_diagnostics
    from sigmarec.runs import load_run

    if args.threads:
        torch.set_num_threads(args.threads)
    for run_dir in args.runs:
        run = load_run(run_dir, args.checkpoint, "cpu")
        it = train_batches(run.split, run.cfg.train.batch_size, run.cfg.data.max_len, np.random.default_rng(0))
        batches = [b for _, b in zip(range(args.batches), it)]
        row = {"run_dir": str(run_dir), "checkpoint": args.checkpoint, "batches": len(batches),
               **prior_diagnostics(run.model, batches)}
        record("prior", row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


def summarise(args: argparse.Namespace) -> None:
    rows = [json.loads(l) for l in (RESULTS / "accuracy.jsonl").read_text().splitlines()]
    rows = list({r["run_dir"]: r for r in rows}.values())  # a rerun of a finished run replaces its record
    keys = args.keys or KEYS
    groups: dict[tuple, list] = {}
    for r in rows:
        if not all(k in r["test"] for k in keys):
            continue  # another protocol's metrics: ask for them with --keys
        groups.setdefault((r["model"], r["dataset"], r["loss"], r["tag"]), []).append(r)
    print("| model | data | loss | config | seeds | " + " | ".join(f"test {k}" for k in keys) + " | best epoch | s/epoch |")
    print("|---|---|---|---|---|" + "---|" * (len(keys) + 2))
    for (model, ds, loss, tag), rs in sorted(groups.items()):
        cells = []
        for k in keys:
            v = np.array([r["test"][k] for r in rs])
            cells.append(f"{v.mean():.4f} ± {v.std(ddof=1) if len(v) > 1 else 0:.4f}")
        print(f"| {model} | {ds} | {loss} | {tag} | {len(rs)} | " + " | ".join(cells)
              + f" | {np.mean([r['best_epoch'] for r in rs]):.0f} | {np.mean([r['sec_per_epoch'] for r in rs]):.2f} |")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("accuracy")
    a.add_argument("--model", default="sasrec")
    a.add_argument("--dataset", default="office")
    a.add_argument("--loss", default="ce")
    a.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    a.add_argument("--max-len", type=int, default=50)
    a.add_argument("--epochs", type=int, default=300)
    a.add_argument("--patience", type=int, default=20)
    a.add_argument("--threads", type=int, default=None)
    a.add_argument("--set", action="append")
    a.add_argument("--tag", default="default")
    a.add_argument("--out", default="runs/bench")
    a.set_defaults(func=accuracy)
    s = sub.add_parser("speed")
    s.add_argument("--models", nargs="+", default=["sasrec"], help="measured one after the other in one process")
    s.add_argument("--dataset", default="beauty")
    s.add_argument("--epochs", type=int, default=3)
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--no-reuse", action="store_true", help="leave glibc's allocator as it is (train.reuse_freed_memory=false)")
    s.add_argument("--no-bucket", action="store_true")
    s.set_defaults(func=speed)
    d = sub.add_parser("prior", help="SIGMA's mixture prior on trained runs: KL terms, shuffled/uniform controls, gradient cosines")
    d.add_argument("--runs", nargs="+", required=True)
    d.add_argument("--checkpoint", default="best")
    d.add_argument("--batches", type=int, default=20)
    d.add_argument("--threads", type=int, default=None)
    d.set_defaults(func=prior)
    m = sub.add_parser("summarise")
    m.add_argument("--keys", nargs="+", help=f"test metrics to tabulate (default {' '.join(KEYS)})")
    m.set_defaults(func=summarise)
    args = p.parse_args()
    try:
        args.func(args)
    except DataError as exc:
        print(f"skipped: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
