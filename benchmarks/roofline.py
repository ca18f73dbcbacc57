"""Roofline of a SASRec training epoch (issue 20): the epoch's floating-point work and memory traffic, mostly the
full-softmax logits, against this machine's measured fp32 matmul rate and memory bandwidth, and the epoch as
measured in the same process.

    python benchmarks/roofline.py [--dataset beauty] [--threads 1] [--epochs 1] [--loss ce] [--no-reuse]

Work model (per epoch, T training targets, N items, d width, P positions through the Transformer, l layers):
logits 2TNd forward + 4TNd backward; the Transformer ~ 3 x l x P x (2 x 6d^2 + 4Ld) (projections, feed-forward,
attention; x3 for the backward). Memory: the [T, N] float32 logits, through the fused cross-entropy
(models/layers/softmax_ce.py), are written by the matmul, read by the softmax which writes the probabilities, and
those are read by the two backward matmuls: 5 passes (F.cross_entropy's log-softmax, nll gradient and
log-softmax backward made it 7, the count in rows recorded before the fused loss).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def matmul_rate(m: int, k: int, n: int, repeats: int = 5) -> float:
    """GFLOP/s of an [m, k] @ [k, n] fp32 product (median of ``repeats``)."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * m * k * n / float(np.median(times)) / 1e9


def bandwidth(gb: float = 1.0, repeats: int = 5) -> float:
    """GB/s of a large float32 copy (read + write counted)."""
    n = int(gb * 2**30 / 4)
    src, dst = torch.randn(n), torch.empty(n)
    dst.copy_(src)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dst.copy_(src)
        times.append(time.perf_counter() - t0)
    return 2 * n * 4 / float(np.median(times)) / 1e9


def main() -> None:
    from sigmarec.data.batching import train_batches
    from sigmarec.memory import reuse_freed_memory

    from run import record, setup_model, train_seconds  # benchmarks/run.py, beside this script

    p = argparse.ArgumentParser()
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--loss", default="ce")
    p.add_argument("--no-reuse", action="store_true", help="leave glibc's allocator as it is (train.reuse_freed_memory=false)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    reused = False if args.no_reuse else reuse_freed_memory()  # as the trainer does on CPU by default
    cfg, data, split, model = setup_model("sasrec", {"data": {"dataset": args.dataset}, "model": {"loss": args.loss}})
    d, layers, L, N = cfg.model.hidden_size, cfg.model.n_layers, cfg.data.max_len, data.n_items
    batches = list(train_batches(split, cfg.train.batch_size, L, np.random.default_rng(0)))
    T = int(sum(int((b.targets > 0).sum()) for b in batches))
    P = int(sum(b.inputs.numel() for b in batches))  # positions through the Transformer, padding included
    m = int(np.median([int((b.targets > 0).sum()) for b in batches]))
    flops_logits = 6 * T * N * d
    flops_tf = 3 * layers * P * (2 * 6 * d * d + 4 * L * d)
    passes = 5  # see the docstring: matmul write, softmax read + write, two backward matmul reads
    bytes_logits = passes * T * N * 4
    rate_fwd, rate_bwd = matmul_rate(m, d, N), matmul_rate(N, m, d)  # [m,d]@[d,N]; the item gradient [N,m]@[m,d]
    bw = bandwidth()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = [train_seconds(model, opt, batches) for _ in range(args.epochs)]
    epoch = float(np.median(times))
    rate = (rate_fwd + 2 * rate_bwd) / 3
    bound_compute = (flops_logits + flops_tf) / (rate * 1e9)
    bound_memory = bytes_logits / (bw * 1e9)
    row = {"dataset": args.dataset, "loss": args.loss, "threads": args.threads,
           "reuse_freed_memory": reused,
           "targets": T, "positions": P, "items": N, "median_batch_targets": m, "gflop_logits": round(flops_logits / 1e9, 1),
           "gflop_transformer": round(flops_tf / 1e9, 1), "logit_passes": passes, "gb_logits_traffic": round(bytes_logits / 1e9, 1),
           "matmul_gflops_fwd": round(rate_fwd, 1), "matmul_gflops_item_grad": round(rate_bwd, 1),
           "bandwidth_gbs": round(bw, 1), "bound_compute_s": round(bound_compute, 1), "bound_memory_s": round(bound_memory, 1),
           "roofline_s": round(max(bound_compute, bound_memory), 1), "no_overlap_s": round(bound_compute + bound_memory, 1),
           "epoch_s": round(epoch, 1), "epoch_over_roofline": round(epoch / max(bound_compute, bound_memory), 2)}
    print(json.dumps(row))
    record("roofline", row)  # with date, time, code, machine and command


if __name__ == "__main__":
    main()
