"""The command-line commands beyond training and evaluation (``compare``, ``recommend``, ``export``, ``serve``,
``interests``, ``demo``) and the metric table they print; ``cli.py`` builds the parser and dispatches."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from sigmarec.config import ConfigError

def _finite_or_none(obj):
    """NaN and infinities as null, so ``--json`` output is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def cmd_compare(args: argparse.Namespace) -> int:
    from sigmarec.evaluate.paired import DEFAULT_METRICS, compare, format_comparison, normalize_metrics

    if args.against:
        if not args.runs:
            raise ConfigError("--against needs --runs (group A)")
        metrics = normalize_metrics(list(DEFAULT_METRICS) + (args.metric or []))
        result = compare(args.runs, args.against, args.split, metrics, args.checkpoint, args.device, args.alpha, args.recompute)
        print(json.dumps(_finite_or_none(result), indent=2) if args.json else format_comparison(result))
        return 0
    return _compare_table(args)


def _compare_table(args: argparse.Namespace) -> int:
    """``compare --runs DIR...`` (finished runs, grouped by name) or ``--dataset D --models M... --seeds S...``
    (missing runs trained first): the results table with significance marks, its files and learning curves."""
    from sigmarec.evaluate.paired import normalize_metrics
    from sigmarec.evaluate.table import (TABLE_METRICS, build_table, check_focus, group_runs, learning_curves, to_csv,
                                         to_latex, to_markdown)
    from sigmarec.runs import write_text_atomic
    from sigmarec.train.grid import plan, train_missing

    if args.jobs < 1 or args.threads < 1:
        raise ConfigError(f"--jobs and --threads must be >= 1, got {args.jobs} and {args.threads}")
    if args.models and args.runs:
        raise ConfigError("give either --runs (finished runs) or --models with --dataset and --seeds, not both")
    if not args.models and not args.runs:
        raise ConfigError("compare needs --runs (with --against for two groups), or --models and --dataset")
    # everything that can be wrong with the request is refused here, before hours of training
    metrics = normalize_metrics(list(TABLE_METRICS) + (args.metric or []))
    out = args.out or (f"runs/compare-{Path(args.dataset).name.split('.')[0]}" if args.models else None)
    out = Path(out) if out else None
    if out is not None and out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; expected a folder for the runs and the table")
    if args.models:
        jobs = plan(args.models, args.seeds, out)
        if args.focus:
            check_focus(args.focus, list(jobs))
        train_missing(jobs, args.dataset, args.set or [], args.jobs, args.threads, echo=lambda line: print(line, flush=True))
        groups = {m: [j.run_dir for j in js] for m, js in jobs.items()}
    else:
        groups = group_runs(args.runs)
    table = build_table(groups, metrics, args.split, args.focus, args.alpha, args.checkpoint, args.device)
    if args.json:
        print(json.dumps(_finite_or_none(table), indent=2))
    else:
        print(to_markdown(table))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in (("table.md", to_markdown(table)), ("table.csv", to_csv(table)), ("table.tex", to_latex(table)),
                           ("table.json", json.dumps(_finite_or_none(table), indent=2) + "\n")):
            write_text_atomic(out / name, text)
        curves = learning_curves(groups, "ndcg@20", out / "curves.png")
        print(f"wrote {out}/table.md, table.csv, table.tex, table.json and {curves.name}", file=sys.stderr)
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from sigmarec.serve.recommender import Recommender
    from sigmarec.runs import write_text_atomic

    rec = Recommender.from_run(args.run_dir, args.checkpoint, args.device, args.allow_data_change)
    if args.all_users:
        if not args.output:
            raise ConfigError("--all-users needs --output (a .parquet file, or a .csv)")
        n = rec.recommend_all_users(args.output, args.k)
        print(f"wrote {n} rows ({rec.data.n_users} users) to {args.output}", file=sys.stderr)
        return 0
    if args.split:
        frame = rec.recommend_split(args.split, args.k)
    else:
        if args.history is not None:
            history = [h.strip() for h in args.history.split(",") if h.strip()]
            if not history:
                raise ConfigError("--history: give at least one item id (comma-separated, oldest first)")
            items = rec.recommend(history, args.k)
        else:
            items = rec.recommend_user(args.user, args.k, new_session=args.new_session)
        import pandas as pd

        frame = pd.DataFrame({"rank": range(1, len(items) + 1), "item": [i for i, _ in items], "score": [s for _, s in items]})
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(Path(args.output), frame.to_csv(index=False))
        print(f"wrote {len(frame)} rows to {args.output}", file=sys.stderr)
    else:
        print(frame.to_csv(index=False), end="")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from sigmarec.serve.export import export_run

    params = {k: v for k, v in (("hnsw_m", args.hnsw_m), ("ef_search", args.ef_search), ("nlist", args.nlist),
                                ("nprobe", args.nprobe)) if v is not None}
    summary = export_run(args.run_dir, args.out, args.index, args.k, args.checkpoint, args.device, **params)
    r = summary["recall_at_k"]
    print(f"exported {summary['n_items']} item vectors (d = {summary['dim']}) and a {summary['index']} index to {args.out}; "
          f"recall@{r['k']} against exact ranking on {r['queries']} test users: {r['recall']:.4f} "
          f"(search {summary['search_seconds']} s)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("serving needs FastAPI and uvicorn: pip install 'sigmarec[serve]'") from None
    from sigmarec.serve.app import create_app

    app = create_app(args.run_dir, args.checkpoint, args.device, args.index, args.max_batch)
    print(f"serving {args.run_dir} on http://{args.host}:{args.port} (docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_interests(args: argparse.Namespace) -> int:
    from sigmarec.evaluate.interests import interest_report

    out = Path(args.out) if args.out else Path(args.run_dir) / "interests"
    report = interest_report(args.run_dir, out, args.top, args.checkpoint, args.device, args.allow_data_change)
    nmi = report["nmi"]
    summary = "no known item categories" if nmi is None else f"NMI {nmi['value']:.4f} (random {nmi['random_baseline']:.4f})"
    print(f"wrote {out / 'interests.md'}: {summary}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from sigmarec.evaluate.interests import interest_report
    from sigmarec.runs import make_config
    from sigmarec.train.trainer import Trainer

    root = Path(args.out) / time.strftime("demo-%Y%m%d-%H%M%S")
    results, timing = {}, {}
    for model in ("sigma", "sasrec"):
        train = {"epochs": args.epochs, "patience": 10, "progress": not args.quiet}
        if args.threads:
            train["num_threads"] = args.threads
        cfg = make_config(model, {"data": {"dataset": "synthetic"}, "train": train})
        metrics = Trainer(cfg, root / model).fit()
        results[model] = metrics["test"]
        lines = [json.loads(l) for l in (root / model / "epochs.jsonl").read_text().splitlines()]
        timing[model] = sum(l["train_seconds"] for l in lines) / len(lines)
    report = interest_report(root / "sigma")
    print(f"\nsynthetic data set, leave-one-out, full ranking (test split); runs in {root}\n")
    print(metrics_table(results, [10, 20], extra={"s/epoch": timing}))
    if report.get("nmi"):
        n = report["nmi"]
        print(f"\nSIGMA's {report['n_interests']} learned categories vs the {n['known_categories']} planted ones: "
              f"NMI {n['value']:.3f} (random assignment of the same sizes: {n['random_baseline']:.3f}); "
              f"report in {root / 'sigma' / 'interests'}")
    return 0


SESSION_PROTOCOLS = ("session", "next_session")


def metrics_table(results: dict[str, dict[str, float]], ks: list[int], extra: dict[str, dict[str, float]] | None = None,
           protocol: str = "loo") -> str:
    """Metrics table; session protocols show the HNVM paper's Recall, MRR and Precision at K."""
    if protocol in SESSION_PROTOCOLS:
        cols = [f"{m}@{k}" for m in ("recall", "mrr", "precision") for k in ks]
    else:
        cols = [f"recall@{k}" for k in ks] + [f"ndcg@{k}" for k in ks] + ["mrr"]
    extra = extra or {}
    head = ["model"] + cols + list(extra)
    rows = [[name] + [f"{m.get(c, float('nan')):.4f}" for c in cols] + [f"{extra[e][name]:.2f}" for e in extra]
            for name, m in results.items()]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])
