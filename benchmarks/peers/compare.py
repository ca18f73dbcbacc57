"""SASRec in RecBole 1.2.1 against sigmarec's, side by side on this machine, one thread each, on Office: seconds
per epoch, seconds per validation (full ranking), peak RSS, and the wall time until each first reaches RecBole's
best validation NDCG@10 (time to quality). Both processes run at once, so each sees the same machine load.

    bash benchmarks/peers/setup.sh                     # once: RecBole in its own virtualenv
    python benchmarks/peers/compare.py [--epochs 200]  # prints ratios, appends to benchmarks/results/peers.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def peak_kb(stderr: str) -> int | None:
    found = re.findall(r"MAXRSS (\d+)", stderr)
    return int(found[-1]) if found else None


def first_reach(records: list[dict], key: str, target: float, time_of) -> float | None:
    """Seconds (cumulative, from ``time_of``) at the first epoch whose validation ``key`` reaches ``target``."""
    for r in records:
        if r[key] >= target - 1e-12:
            return time_of(r)
    return None


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "Office_Products.txt"))
    p.add_argument("--out", default=str(ROOT / "runs" / "peers"))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rb_log, ours_dir = out / "recbole-sasrec-office.jsonl", out / "sigmarec-sasrec-office"
    timer = ["/usr/bin/time", "-f", "MAXRSS %M"]
    recbole = subprocess.Popen([*timer, str(HERE / ".venv-recbole" / "bin" / "python"), str(HERE / "recbole_sasrec.py"),
                                "--data", args.data, "--epochs", str(args.epochs), "--log", str(rb_log)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ours = subprocess.Popen([*timer, sys.executable, "-m", "sigmarec", "train", "sasrec", "--dataset", "office",
                             "--preset", "none", "--threads", "1", "--out", str(ours_dir), "--restart",
                             "--set", "model.hidden_size=64", "--set", "model.n_layers=2", "--set", "model.n_heads=2",
                             "--set", "data.max_len=50", "--set", "model.loss=ce", "--set", "train.batch_size=256",
                             "--set", "train.lr=0.001", "--set", f"train.epochs={args.epochs}", "--set", "train.patience=10",
                             "--set", "train.valid_metric=ndcg@10", "--set", "train.progress=false", "--set", "train.seed=1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rb_err, ours_err = recbole.communicate()[1], ours.communicate()[1]
    if recbole.returncode or ours.returncode:
        raise SystemExit(f"recbole rc {recbole.returncode}: {rb_err[-1500:]}\nsigmarec rc {ours.returncode}: {ours_err[-1500:]}")
    rb = [json.loads(line) for line in rb_log.read_text().splitlines()]
    mine = [json.loads(line) for line in (ours_dir / "epochs.jsonl").read_text().splitlines()]
    t = 0.0
    for r in mine:  # cumulative training + validation seconds
        t += r["train_seconds"] + r.get("eval_seconds", 0.0)
        r["cum_s"], r["ndcg10"] = t, r["valid"]["ndcg@10"]
    rb_best = max(r["valid_ndcg@10"] for r in rb)
    median = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    row = {"date": time.strftime("%Y-%m-%d %H:%M"), "epochs_run": {"recbole": len(rb), "sigmarec": len(mine)},
           "sec_per_epoch": {"recbole": median([r["train_s"] for r in rb]), "sigmarec": median([r["train_seconds"] for r in mine])},
           "sec_per_validation": {"recbole": median([r["valid_s"] for r in rb]),
                                  "sigmarec": median([r["eval_seconds"] for r in mine if "eval_seconds" in r])},
           "peak_rss_gb": {"recbole": round((peak_kb(rb_err) or 0) / 2**20, 2), "sigmarec": round((peak_kb(ours_err) or 0) / 2**20, 2)},
           "best_valid_ndcg@10": {"recbole": rb_best, "sigmarec": max(r["ndcg10"] for r in mine)},
           "seconds_to_recbole_best": {"recbole": first_reach(rb, "valid_ndcg@10", rb_best, lambda r: r["wall_s"]),
                                       "sigmarec": first_reach(mine, "ndcg10", rb_best, lambda r: r["cum_s"])}}
    row["ratios_recbole_over_sigmarec"] = {k: (round(v["recbole"] / v["sigmarec"], 2) if v["recbole"] and v["sigmarec"] else None)
                                           for k, v in row.items() if k in ("sec_per_epoch", "sec_per_validation", "peak_rss_gb",
                                                                              "seconds_to_recbole_best")}
    print(json.dumps(row, indent=1))
    with open(ROOT / "benchmarks" / "results" / "peers.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
