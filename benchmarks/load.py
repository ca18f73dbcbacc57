"""Load test of ``sigmarec serve`` on loopback: concurrent clients posting ``history`` requests (histories of the
run's test users), bounded in count and time; prints p50/p99 latency, requests per second and errors as JSON and
appends them to benchmarks/results/load.jsonl.

    python benchmarks/load.py RUN_DIR [--index EXPORT_DIR] [--clients 8] [--requests 2000] [--seconds 60] [--k 10] [--max-batch 64]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def histories(run_dir: str, n: int) -> list[list[str]]:
    from sigmarec.runs import load_run_data

    _, data, split = load_run_data(run_dir)
    cases = split.test
    rows = np.random.default_rng(0).choice(len(cases), size=min(n, len(cases)), replace=False)
    return [[str(data.item_ids[i]) for i in data.items[cases.starts[r]:cases.ends[r]]] for r in rows]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--index", help="an exported folder: FAISS scoring instead of exact")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    p.add_argument("--max-batch", type=int, default=64, help="the server's --max-batch (1 = no batching)")
    args = p.parse_args()
    port = free_port()
    cmd = [sys.executable, "-c", f"import torch, sys; torch.set_num_threads({args.threads}); from sigmarec.cli import main; "
           "sys.exit(main())", "serve", args.run_dir, "--port", str(port), "--device", "cpu",
           "--max-batch", str(args.max_batch)]
    if args.index:
        cmd += ["--index", args.index]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise SystemExit(f"server did not start: {server.stderr.read().decode()[-500:] if server.poll() is not None else ''}")
        hist = histories(args.run_dir, 5000)
        latencies: list[float] = []
        errors = [0]
        lock = threading.Lock()
        counter = iter(range(args.requests))
        stop = time.time() + args.seconds

        def client(seed: int) -> None:
            rng = np.random.default_rng(seed)
            with httpx.Client(timeout=30) as c:
                for _ in counter:
                    if time.time() > stop:
                        return
                    body = {"history": hist[int(rng.integers(len(hist)))], "k": args.k}
                    t0 = time.perf_counter()
                    try:
                        ok = c.post(f"{url}/recommend", json=body).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    dt = time.perf_counter() - t0
                    with lock:
                        latencies.append(dt)
                        errors[0] += not ok

        t0 = time.time()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.time() - t0
        ms = np.array(latencies) * 1000
        batching = httpx.get(f"{url}/metadata", timeout=10).json().get("batching", {})
        row = {"date": time.strftime("%Y-%m-%d"), "run": args.run_dir, "scoring": "faiss" if args.index else "exact",
               "clients": args.clients, "server_threads": args.threads, "max_batch": args.max_batch,
               "mean_batch": batching.get("mean_batch"), "requests": len(ms), "errors": errors[0],
               "seconds": round(wall, 2), "rps": round(len(ms) / wall, 1), "p50_ms": round(float(np.percentile(ms, 50)), 2),
               "p99_ms": round(float(np.percentile(ms, 99)), 2)}
        print(json.dumps(row))
        with open(ROOT / "benchmarks" / "results" / "load.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
