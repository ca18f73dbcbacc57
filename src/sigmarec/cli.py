"""Command-line interface: ``sigmarec data|train|evaluate|compare|recommend|interests|demo``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from pathlib import Path

from sigmarec.commands import cmd_compare, cmd_demo, cmd_export, cmd_interests, cmd_recommend, cmd_serve, metrics_table
from sigmarec.config import ConfigError, DataConfig, SigmarecError, describe, parse_set, update_dataclass


def _data_config(args: argparse.Namespace) -> DataConfig:
    overrides = parse_set(args.set or [])
    unknown = set(overrides) - {"data"}
    if unknown:
        raise ConfigError(f"only data.* keys apply here, got {sorted(unknown)}")
    return update_dataclass(DataConfig(dataset=args.dataset), overrides.get("data", {}), "data")


def cmd_data(args: argparse.Namespace) -> int:
    from sigmarec.data.catalog import CATALOG, cache_path, load_dataset

    if args.action == "list":
        for name, entry in CATALOG.items():
            print(f"{name:10s} {entry.description}")
        return 0
    cfg = _data_config(args)
    data = load_dataset(cfg)
    stats = data.stats()
    if args.action == "prepare":
        stats["cache"] = str(cache_path(cfg))
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        for k, v in stats.items():
            print(f"{k:14s} {v:.4f}" if isinstance(v, float) else f"{k:14s} {v}")
    return 0


def _launch_torchrun(nproc: int, argv: list[str]) -> int:
    """``sigmarec train ... --nproc N``: the same command under ``torchrun --nproc-per-node N`` (one machine)."""
    import os
    import subprocess

    rest, skip = [], False
    for a in argv:  # the same arguments less --nproc
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if not a.startswith("--nproc="):
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", "-m", "sigmarec", *rest]
    print(f"launching {nproc} processes: {' '.join(cmd[1:])}", file=sys.stderr)
    return subprocess.call(cmd, env=os.environ.copy())


def cmd_train(args: argparse.Namespace) -> int:
    import os

    from sigmarec.runs import default_run_dir, make_config
    from sigmarec.train.trainer import Trainer

    if args.nproc is not None and args.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nproc and args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch_torchrun(args.nproc, args.argv)

    overrides = parse_set(args.set or [])
    if args.threads:
        overrides.setdefault("train", {})["num_threads"] = args.threads
    if args.dataset:
        overrides.setdefault("data", {})["dataset"] = args.dataset
    if args.protocol:
        overrides.setdefault("protocol", {})["name"] = args.protocol
    sources: dict[str, str] = {}
    cfg = make_config(args.model, overrides, args.config, preset=args.preset, sources=sources, refit_of=args.refit)
    if args.show_config:
        print(describe(cfg, sources), end="")
        return 0
    from sigmarec.parallel import init_from_env

    group = init_from_env(os.environ, cfg.train.device)  # a torchrun launch: join its process group
    if group.active and not args.out:
        raise ConfigError("a multi-process run needs --out (each process would otherwise name its own directory)")
    if not group.main:
        logging.getLogger("sigmarec").setLevel(logging.WARNING)  # rank 0 reports
    out = Path(args.out) if args.out else Path(f"{Path(args.refit)}-refit") if args.refit else default_run_dir(cfg)
    if group.main:
        print(f"run directory: {out}" + (f" ({group.world} processes)" if group.active else ""), file=sys.stderr)
    metrics = Trainer(cfg, out, sources=sources, restart=args.restart, allow_data_change=args.allow_data_change).fit()
    if not group.main:
        return 0
    print(json.dumps(metrics["test"], indent=2) if args.json else metrics_table({cfg.model_name: metrics["test"]}, cfg.eval.ks,
                                                                         protocol=cfg.protocol.name))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from sigmarec.evaluate.evaluator import evaluate
    from sigmarec.runs import load_run

    run = load_run(args.run_dir, args.checkpoint, args.device, args.allow_data_change)
    cases = run.split.cases(args.split)
    metrics = evaluate(run.model, run.data, cases, run.cfg.eval, run.cfg.data.max_len, run.device)
    print(json.dumps(metrics, indent=2) if args.json else metrics_table({f"{run.cfg.model_name} ({args.split})": metrics}, run.cfg.eval.ks,
                                                                  protocol=run.cfg.protocol.name))
    return 0


def _allow_data_change(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-data-change", action="store_true",
                        help="use the data even if it differs from what the run was trained on (refused otherwise)")


def _threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, metavar="N", help="torch CPU threads for this command (default: torch's "
                        "choice, one per core; on a machine shared with other jobs, fewer threads degrade less)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sigmarec", description="Sequential recommendation: train, evaluate and serve models.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    from sigmarec import __version__

    p.add_argument("--version", action="version", version=f"sigmarec {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="inspect or prepare a data set")
    d.add_argument("action", choices=["info", "prepare", "list"])
    d.add_argument("dataset", nargs="?", default="synthetic", help="catalog name or file path")
    d.add_argument("--set", action="append", metavar="data.KEY=VALUE", help="override a data setting")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_data)

    t = sub.add_parser("train", help="train a model; resumes if --out holds an unfinished run")
    from sigmarec.models.registry import MODELS

    t.add_argument("model", help=f"model name: {', '.join(MODELS)}")
    t.add_argument("--dataset", help="catalog name or file path (default: synthetic)")
    t.add_argument("--protocol", help="evaluation protocol (default: loo)")
    t.add_argument("--config", help="YAML file with sections data, train, eval, protocol, model")
    t.add_argument("--preset", default="auto", help="tuned settings shipped with sigmarec: auto (the data set's preset, else MODEL-default), a name, a YAML path, or none")
    t.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override one setting, e.g. train.lr=1e-3")
    t.add_argument("--out", help="run directory (default: runs/MODEL-DATASET-TIME)")
    t.add_argument("--json", action="store_true", help="print test metrics as JSON")
    t.add_argument("--restart", action="store_true",
                   help="train from scratch, discarding the epochs, checkpoints and metrics --out holds (without it a run "
                        "resumes from its last checkpoint, and one without a readable checkpoint is refused)")
    t.add_argument("--show-config", action="store_true",
                   help="print the resolved configuration, each non-default value marked with the layer that set it "
                        "(model training defaults, data set, preset, --config, --set), and exit")
    t.add_argument("--refit", metavar="RUN_DIR", help="retrain that finished run's configuration from scratch with "
                   "its validation targets as training data, for its best epoch count (protocol.train_on_valid; default "
                   "--out RUN_DIR-refit): the final model of the leave-one-out protocol, tested on the test case alone")
    t.add_argument("--nproc", type=int, metavar="N", help="train in N processes on this machine (data-parallel, "
                   "DistributedDataParallel: gloo on CPU, NCCL on CUDA; the global batch stays train.batch_size): "
                   "the same as torchrun --nproc-per-node N -m sigmarec train ...")
    _allow_data_change(t)
    _threads(t)
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a trained run")
    e.add_argument("run_dir")
    e.add_argument("--split", choices=["valid", "test"], default="test")
    e.add_argument("--checkpoint", choices=["best", "last"], default="best")
    e.add_argument("--device", default="auto")
    e.add_argument("--json", action="store_true", help="print the metric dict as JSON")
    _allow_data_change(e)
    _threads(e)
    e.set_defaults(func=cmd_evaluate)

    c = sub.add_parser("compare", help="paired per-user significance test: runs of model A against runs of model B",
                       description="Per-user paired test between two groups of finished runs on the same data set and "
                                   "protocol (e.g. the seeds of model A against the seeds of model B): each metric is "
                                   "computed per user, averaged over a group's runs, and the differences A - B go "
                                   "through a two-sided Wilcoxon signed-rank test and a paired t-test. Ranks are cached "
                                   "in RUN_DIR/eval/.")
    c.add_argument("--runs", nargs="+", metavar="RUN_DIR", help="group A (e.g. the seeds of one model); without "
                   "--against: finished runs for a table, grouped by directory name less its seed suffix (-s1, -seed2)")
    c.add_argument("--against", nargs="+", metavar="RUN_DIR", help="group B")
    c.add_argument("--models", nargs="+", metavar="MODEL", help="table mode: the models to train (what is missing) and "
                   "compare on --dataset; the first is the focus unless --focus; MODEL:1,2,3 gives one model its own "
                   "seeds instead of --seeds")
    c.add_argument("--dataset", default="synthetic", help="for --models: catalog name or file path")
    c.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3], help="for --models: one run per seed")
    c.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="for --models: a setting for every run")
    c.add_argument("--jobs", type=int, default=1, help="for --models: runs trained at once, each its own process")
    c.add_argument("--threads", type=int, default=1, help="for --models: torch threads per run")
    c.add_argument("--focus", help="table mode: the model tested against every other (default: the first)")
    c.add_argument("--out", help="table mode: folder for the runs (--models) and table.md/.csv/.tex/.json and "
                   "curves.png (default with --models: runs/compare-DATASET)")
    c.add_argument("--split", choices=["valid", "test"], default="test")
    c.add_argument("--metric", action="append", metavar="METRIC",
                   help="also compare this metric (recall@K, ndcg@K, hit@K, precision@K, mrr@K, mrr; any K); "
                        "repeatable; recall@40 and ndcg@40 are always shown")
    c.add_argument("--checkpoint", choices=["best", "last"], default="best")
    c.add_argument("--device", default="auto")
    c.add_argument("--alpha", type=float, default=0.05, help="significance level of the verdict (Wilcoxon p)")
    c.add_argument("--recompute", action="store_true", help="rank again instead of reading RUN_DIR/eval/ranks-*.npz")
    c.add_argument("--json", action="store_true", help="print the result dict as JSON")
    c.set_defaults(func=cmd_compare)

    r = sub.add_parser("recommend", help="top-K items in original ids")
    r.add_argument("run_dir")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--history", help="comma-separated item ids, oldest first")
    src.add_argument("--user", help="a known user id: recommend after the whole sequence")
    src.add_argument("--split", choices=["valid", "test"], help="every evaluation case: columns user,rank,item,score")
    src.add_argument("--all-users", action="store_true", help="every user after the whole sequence, streamed in "
                     "batches to --output (.parquet or .csv): columns user,rank,item,score")
    r.add_argument("-k", type=int, default=10)
    r.add_argument("--new-session", action="store_true",
                   help="with --user: recommend the first item of a new session (session models; others ignore it)")
    r.add_argument("--output", help="CSV file (default: stdout); with --all-users .parquet or .csv")
    r.add_argument("--checkpoint", choices=["best", "last"], default="best")
    r.add_argument("--device", default="auto")
    _allow_data_change(r)
    _threads(r)
    r.set_defaults(func=cmd_recommend)

    x = sub.add_parser("export", help="item vectors and id map (Parquet) and a FAISS index, with its measured recall")
    x.add_argument("run_dir")
    x.add_argument("--out", required=True, help="folder for items.parquet, index.faiss, index.json, export.json")
    x.add_argument("--index", choices=["exact", "hnsw", "ivf"], default="exact",
                   help="exact inner product (default), or approximate: HNSW graph or IVF lists")
    x.add_argument("-k", type=int, default=10, help="K of the recall@K measured against exact ranking at export")
    x.add_argument("--hnsw-m", type=int, help="HNSW: links per node (default 32)")
    x.add_argument("--ef-search", type=int, help="HNSW: candidate list length at search (default 128)")
    x.add_argument("--nlist", type=int, help="IVF: number of lists (default 4 sqrt(items))")
    x.add_argument("--nprobe", type=int, help="IVF: lists searched per query (default 16)")
    x.add_argument("--checkpoint", choices=["best", "last"], default="best")
    x.add_argument("--device", default="cpu")
    _threads(x)
    x.set_defaults(func=cmd_export)

    v = sub.add_parser("serve", help="HTTP service: POST /recommend, /recommend/batch; GET /items/ID, /health, /metadata")
    v.add_argument("run_dir")
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8000)
    v.add_argument("--index", help="an exported folder (sigmarec export): search its FAISS index instead of exact scoring")
    v.add_argument("--checkpoint", choices=["best", "last"], default="best")
    v.add_argument("--device", default="auto")
    v.add_argument("--max-batch", type=int, default=64, metavar="N",
                   help="concurrent POST /recommend requests scored in one model call, at most N (1 = each alone; "
                        "default: 64). Nothing waits for a batch to fill: a lone request is scored at once")
    _threads(v)
    v.set_defaults(func=cmd_serve)

    i = sub.add_parser("interests", help="report on the interests a trained multi-interest model (sigma) learned")
    i.add_argument("run_dir")
    i.add_argument("--out", help="report folder (default: RUN_DIR/interests)")
    i.add_argument("--top", type=int, default=10, help="items listed per learned category")
    i.add_argument("--checkpoint", choices=["best", "last"], default="best")
    i.add_argument("--device", default="auto")
    _allow_data_change(i)
    _threads(i)
    i.set_defaults(func=cmd_interests)

    m = sub.add_parser("demo", help="train on the bundled synthetic data set and print a comparison")
    m.add_argument("--out", default="runs")
    m.add_argument("--epochs", type=int, default=20)
    m.add_argument("--quiet", action="store_true")
    _threads(m)
    m.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as given (train --nproc relaunches it)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        threads = getattr(args, "threads", None) if args.command != "compare" else None  # compare: per job
        if threads is not None:
            if threads < 1:
                raise ConfigError(f"--threads must be >= 1, got {threads}")
            import torch

            torch.set_num_threads(threads)
        return args.func(args)
    except (SigmarecError, OSError) as exc:  # what was asked does not work, or the machine refused (path, disk): why
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command with the same --out to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # anything else is a bug in sigmarec
        if args.verbose:
            traceback.print_exc()
        else:
            print(f"internal error ({type(exc).__name__}: {exc}); this is a bug in sigmarec: rerun with -v for the "
                  "traceback and report it", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
