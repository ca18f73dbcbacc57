"""The fused full-softmax cross-entropy (``layers/softmax_ce.py``) against ``F.cross_entropy`` over the
materialised logits, measured in one process, alternating the two (ABAB...) so drift hits both alike.

1. The loss alone (forward + backward) at a data set's shape: ``M`` target positions of a batch, all items.
2. Whole training steps of models on a data set (batches as the trainer builds them), the library's ``ce``
   against the same models with the ``F.cross_entropy`` formulation swapped in.

    python benchmarks/ce_speed.py --dataset beauty --models sasrec acvae --threads 1 --batches 20 --rounds 3

Writes one JSON line per model to stdout and ``benchmarks/results/ce_speed.jsonl`` (with date, code, machine and
command, as ``benchmarks/run.py`` records).
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F

from run import record, setup_model, train_seconds  # benchmarks/run.py, beside this script
from sigmarec.data.batching import train_batches
from sigmarec.models.layers import losses
from sigmarec.models.layers.softmax_ce import softmax_cross_entropy


def reference_ce(hidden: torch.Tensor, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The formulation the library used before: autograd through matmul, log_softmax and nll_loss."""
    return F.cross_entropy((hidden @ items.T).float(), targets)


@contextmanager
def loss_impl(fn):
    """Swap the ``ce`` kernel that ``next_item_loss`` calls (benchmark-only counterfactual)."""
    saved = losses.softmax_cross_entropy
    losses.softmax_cross_entropy = fn
    try:
        yield
    finally:
        losses.softmax_cross_entropy = saved


def time_loss(fn, m: int, n: int, d: int, repeats: int) -> float:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(m, d, generator=g, requires_grad=True)
    items = (torch.randn(n, d, generator=g) * 0.1).requires_grad_()
    targets = torch.randint(0, n, (m,), generator=g)
    fn(hidden, items, targets).backward()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn(hidden, items, targets).backward()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="beauty")
    p.add_argument("--models", nargs="*", default=["sasrec", "acvae"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", type=int, default=20, help="training batches per timing")
    p.add_argument("--rounds", type=int, default=3, help="ABAB rounds; the median is reported")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    session = time.strftime("%Y%m%d-%H%M%S")
    for name in args.models:
        cfg, data, split, model = setup_model(name, {"data": {"dataset": args.dataset}, "train": {"num_threads": args.threads}})
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        batches = list(train_batches(split, cfg.train.batch_size, cfg.data.max_len, np.random.default_rng(0), True))
        warm, timed = batches[:2], batches[2: args.batches + 2]
        m = int(np.median([int((b.targets > 0).sum()) for b in warm + timed]))
        d, n = model.item_embeddings().shape[1], data.n_items
        kernels = {"reference": reference_ce, "fused": softmax_cross_entropy}
        loss_t = {label: [] for label in kernels}
        step_t = {label: [] for label in kernels}
        train_seconds(model, opt, warm)
        for _ in range(args.rounds):
            for label, fn in kernels.items():
                loss_t[label].append(time_loss(fn, m, n, d, 5))
                with loss_impl(fn):
                    step_t[label].append(train_seconds(model, opt, timed) / len(timed))
        loss_s = {label: float(np.median(v)) for label, v in loss_t.items()}
        step_s = {label: float(np.median(v)) for label, v in step_t.items()}
        row = {"session": session, "dataset": args.dataset, "model": name, "threads": args.threads,
               "loss_shape": [m, n, d], "sec_loss_reference": loss_s["reference"], "sec_loss_fused": loss_s["fused"],
               "loss_speedup": loss_s["reference"] / loss_s["fused"], "sec_step_reference": step_s["reference"],
               "sec_step_fused": step_s["fused"], "step_speedup": step_s["reference"] / step_s["fused"],
               "batches": len(timed), "rounds": args.rounds, "torch": torch.__version__}
        print(json.dumps(row), flush=True)
        record("ce_speed", row)


if __name__ == "__main__":
    main()
