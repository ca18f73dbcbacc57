"""Test metrics of a trained ACVAE run with and without noise at inference (issue 18, ACVAE's Office gap).

The library scores ACVAE with ``eps = 0``; the authors' code samples ``eps`` at evaluation too
(``model.inference_noise``). This scores the run's best checkpoint both ways on the test cases (``--draws``
noise draws, each a full evaluation) and tests per-user R@K / N@K of the noisy scoring (averaged over draws)
against the deterministic one (Wilcoxon signed-rank, paired t; scipy).

    python benchmarks/inference_noise.py RUN_DIR [--draws 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from sigmarec.evaluate.evaluator import case_ranks
from sigmarec.evaluate.ranking import metrics_from_ranks
from sigmarec.runs.load import load_run

ROOT = Path(__file__).resolve().parents[1]


def per_user(ranks: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-user recall@k and ndcg@k from 0-based single-target ranks."""
    hit = ranks < k
    return hit.astype(float), np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--k", type=int, nargs="+", default=[20, 40])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    run = load_run(args.run_dir, "best", "cpu")
    if not hasattr(run.model.cfg, "inference_noise"):
        raise SystemExit(f"{args.run_dir}: model {run.cfg.model.name!r} has no inference_noise setting")
    cases, ec, L = run.split.test, run.cfg.eval, run.cfg.data.max_len
    run.model.cfg.inference_noise = False
    base = case_ranks(run.model, run.data, cases, ec, L, run.device)
    run.model.cfg.inference_noise = True
    noisy = []
    for d in range(args.draws):
        torch.manual_seed(d)
        noisy.append(case_ranks(run.model, run.data, cases, ec, L, run.device))
    row: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "run": args.run_dir, "draws": args.draws, "cases": len(cases),
                 "deterministic": {m: round(v, 4) for m, v in metrics_from_ranks(base, args.k).items()
                                   if m.split("@")[0] in ("recall", "ndcg")},
                 "noisy_per_draw": [{m: round(v, 4) for m, v in metrics_from_ranks(r, args.k).items()
                                     if m.split("@")[0] in ("recall", "ndcg")} for r in noisy]}
    tests = {}
    for k in args.k:
        r0, n0 = per_user(base, k)
        pairs = [per_user(r, k) for r in noisy]
        r1, n1 = np.mean([x[0] for x in pairs], 0), np.mean([x[1] for x in pairs], 0)
        for name, a, b in ((f"recall@{k}", r1, r0), (f"ndcg@{k}", n1, n0)):
            tests[name] = {"noisy_mean": round(float(a.mean()), 4), "deterministic": round(float(b.mean()), 4),
                           "relative": round(float(a.mean() / b.mean() - 1), 4),
                           "wilcoxon_p": float(stats.wilcoxon(a, b).pvalue), "ttest_p": float(stats.ttest_rel(a, b).pvalue)}
    row["noisy_vs_deterministic"] = tests
    print(json.dumps(row, indent=1))
    with open(ROOT / "benchmarks" / "results" / "inference_noise.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
