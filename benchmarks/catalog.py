"""Training steps at a large catalog (issue 20): peak memory and seconds per step of SASRec with the full-softmax
``ce``, the chunked exact ``ce_chunked`` and the sampled softmax, on sequences of the synthetic generator scaled
to 10^6 items. Each configuration runs in its own process, so its peak RSS is its own.

    python benchmarks/catalog.py [--items 1000000] [--configs ce:16 ce_chunked:16 sampled:16 ce_chunked:256 sampled:256]
                                 [--steps 3] [--threads 1]

Rows are printed as JSON and appended to benchmarks/results/catalog.jsonl. A configuration whose materialised
logits (and their gradient) would not fit in the memory available is reported with its estimate, not run.
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


def child(loss: str, batch: int, items: int, steps: int, threads: int, max_len: int, device: str = "cpu") -> dict:
    import numpy as np
    import torch

    from sigmarec.data.batching import Batch
    from sigmarec.data.synthetic import SyntheticConfig, generate
    from sigmarec.models import MODELS

    torch.set_num_threads(threads)
    raw = generate(SyntheticConfig(n_users=batch, n_items=items, n_categories=64, seed=0)).interactions
    ids = raw["item"].str.slice(1).astype(np.int64).to_numpy() + 1 if raw["item"].str.startswith("i").all() else \
        raw["item"].astype("category").cat.codes.to_numpy().astype(np.int64) + 1
    seqs = [ids[idx] for idx in raw.groupby("user", sort=False).indices.values()]
    rows = np.zeros((batch, max_len + 1), dtype=np.int64)
    for r, s in enumerate(seqs[:batch]):  # setup only, not the measured steps
        s = s[-(max_len + 1):]
        rows[r, -len(s):] = s
    t = torch.from_numpy(rows)
    b = Batch(t[:, :-1], torch.where(t[:, :-1] > 0, t[:, 1:], 0), torch.arange(batch)).to(torch.device(device))
    cls = MODELS["sasrec"]
    model = cls(cls.config_class(loss=loss, n_negatives=100), items, max_len).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(steps + 1):  # the first step warms up (allocations, Adam state)
        t0 = time.perf_counter()
        value = model(b)["loss"]
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    out = {"loss_value": round(float(value), 4), "targets": int((b.targets > 0).sum()),
           "sec_per_step": round(float(np.median(times[1:])), 3), "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}
    if device.startswith("cuda"):
        out["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("inf")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--configs", nargs="+", default=["ce:16", "ce_chunked:16", "sampled:16", "ce_chunked:256", "sampled:256"])
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        loss, batch = args.child.split(":")
        print(json.dumps(child(loss, int(batch), args.items, args.steps, args.threads, args.max_len, args.device)))
        return
    for config in args.configs:
        loss, batch = config.split(":")
        row = {"date": time.strftime("%Y-%m-%d %H:%M"), "items": args.items, "loss": loss, "batch": int(batch),
               "max_len": args.max_len, "threads": args.threads, "steps": args.steps, "device": args.device}
        # the full softmax holds [targets, items] float32 logits, their softmax and its gradient: ~3 copies
        logits_gb = int(batch) * args.max_len * args.items * 4 * 3 / 2**30
        if loss == "ce" and args.device == "cpu" and logits_gb > 0.8 * available_gb():
            row.update(skipped=f"needs ~{logits_gb:.0f} GB for the logits, {available_gb():.0f} GB available")
        else:
            proc = subprocess.run([sys.executable, __file__, "--child", config, "--items", str(args.items), "--steps",
                                   str(args.steps), "--threads", str(args.threads), "--max-len", str(args.max_len), "--device", args.device],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                row.update(failed=proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")
            else:
                row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
                row["sec_per_1000_steps"] = round(row["sec_per_step"] * 1000, 0)
        print(json.dumps(row), flush=True)
        with open(ROOT / "benchmarks" / "results" / "catalog.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
