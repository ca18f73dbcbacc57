"""Reading and preprocessing a large interaction log (issue 20): wall time and peak RSS per stage of the library's
path (the streaming reader, then preprocess with 5-core filtering and id remapping), of the in-memory reader it
replaces for large files, and of pandas reading the same file and numbering its ids, each in its own process so
each peak RSS is its own.

    python benchmarks/biglog.py [--rows 50000000] [--users 1000000] [--items 200000] [--file /tmp/biglog.csv]
                                [--readers sigmarec sigmarec-inmemory pandas]

The file is generated once (user, item, timestamp; Zipf-like item popularity) and reused. Rows are printed as JSON
and appended to benchmarks/results/biglog.jsonl.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def generate(path: Path, rows: int, users: int, items: int, chunk: int = 5_000_000) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    rng = np.random.default_rng(0)
    tmp = path.with_suffix(".tmp")
    schema = pa.schema([("user", pa.string()), ("item", pa.string()), ("timestamp", pa.int64())])
    with pa_csv.CSVWriter(str(tmp), schema) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            u = rng.integers(0, users, n)
            i = np.minimum((rng.pareto(1.2, n) * items / 20).astype(np.int64), items - 1)
            t = 1_600_000_000 + rng.integers(0, 10**8, n)
            writer.write_table(pa.table({"user": pa.array(np.char.add("u", u.astype(str))),
                                         "item": pa.array(np.char.add("i", i.astype(str))), "timestamp": pa.array(t)},
                                        schema=schema))
    tmp.replace(path)


def stage(kind: str, path: str) -> dict:
    out: dict = {}
    t0 = time.perf_counter()
    if kind == "pandas":  # the baseline: pandas reads the file, then numbers the ids (no checks, no k-core)
        import pandas as pd

        df = pd.read_csv(path)
        out["read_s"] = round(time.perf_counter() - t0, 1)
        out["read_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
        t1 = time.perf_counter()
        pd.factorize(df["user"])
        pd.factorize(df["item"])
        out["factorize_s"] = round(time.perf_counter() - t1, 1)
        out["rows"] = len(df)
    else:
        from sigmarec.data.preprocess import PreprocessConfig, preprocess
        from sigmarec.data.readers.tables import read_delimited

        raw = read_delimited(path, stream=kind == "sigmarec")  # sigmarec-inmemory: the reader before streaming
        out["read_s"] = round(time.perf_counter() - t0, 1)
        out["read_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
        t1 = time.perf_counter()
        data = preprocess(raw, PreprocessConfig(user_core=5, item_core=5))
        out["preprocess_s"] = round(time.perf_counter() - t1, 1)
        out.update(rows=len(raw.interactions), kept=len(data.items), users=data.n_users, items=data.n_items)
    out["total_s"] = round(time.perf_counter() - t0, 1)
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=50_000_000)
    p.add_argument("--users", type=int, default=1_000_000)
    p.add_argument("--items", type=int, default=200_000)
    p.add_argument("--file", default="/tmp/biglog.csv")
    p.add_argument("--readers", nargs="+", default=["sigmarec", "sigmarec-inmemory", "pandas"],
                   choices=["sigmarec", "sigmarec-inmemory", "pandas"])
    p.add_argument("--stage", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.stage:
        print(json.dumps(stage(args.stage, args.file)))
        return
    path = Path(args.file)
    if not path.exists():
        t0 = time.perf_counter()
        generate(path, args.rows, args.users, args.items)
        print(f"generated {path} ({path.stat().st_size / 2**30:.2f} GB) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    for kind in args.readers:
        proc = subprocess.run([sys.executable, __file__, "--stage", kind, "--file", str(path)], capture_output=True, text=True)
        row = {"date": time.strftime("%Y-%m-%d %H:%M"), "file": str(path), "bytes": path.stat().st_size, "reader": kind}
        row.update(json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else
                   {"failed": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]})
        print(json.dumps(row), flush=True)
        with open(ROOT / "benchmarks" / "results" / "biglog.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
