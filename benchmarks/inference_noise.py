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

import numpy as np
import torch
from scipy import stats

from run import record  # benchmarks/run.py, beside this script
from sigmarec.evaluate.evaluator import case_ranks
from sigmarec.evaluate.ranking import per_case_metric
from sigmarec.runs.load import load_run


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
    metrics = [f"{name}@{k}" for k in args.k for name in ("recall", "ndcg")]
    base_user = {m: per_case_metric(base, m) for m in metrics}
    noisy_user = [{m: per_case_metric(r, m) for m in metrics} for r in noisy]
    row: dict = {"run": args.run_dir, "draws": args.draws, "cases": len(cases),
                 "deterministic": {m: round(float(v.mean()), 4) for m, v in base_user.items()},
                 "noisy_per_draw": [{m: round(float(v.mean()), 4) for m, v in draw.items()} for draw in noisy_user]}
    tests = {}
    for m in metrics:
        a, b = np.mean([draw[m] for draw in noisy_user], 0), base_user[m]  # per user, noise averaged over draws
        tests[m] = {"noisy_mean": round(float(a.mean()), 4), "deterministic": round(float(b.mean()), 4),
                    "relative": round(float(a.mean() / b.mean() - 1), 4),
                    "wilcoxon_p": float(stats.wilcoxon(a, b).pvalue), "ttest_p": float(stats.ttest_rel(a, b).pvalue)}
    row["noisy_vs_deterministic"] = tests
    print(json.dumps(row, indent=1))
    record("inference_noise", row)  # with date, time, code, machine and command


if __name__ == "__main__":
    main()
