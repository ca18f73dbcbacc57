"""The fused full-softmax cross-entropy (``layers/softmax_ce.py``) against ``F.cross_entropy`` over the
materialised logits, measured in one process, alternating the two (ABAB...) so drift hits both alike.

1. The loss alone (forward + backward) at a data set's shape: ``M`` target positions of a batch, all items.
2. Whole training steps of models on a data set (batches as the trainer builds them), the library's ``ce``
   against the same models with the ``F.cross_entropy`` formulation swapped in.

    python benchmarks/ce_speed.py --dataset beauty --models sasrec acvae --threads 1 --batches 20 --rounds 3

Writes one JSON line per measurement to stdout and ``benchmarks/results/ce_speed.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sigmarec.data.batching import train_batches
from sigmarec.data.catalog import load_dataset
from sigmarec.data.protocols import make_split
from sigmarec.models.layers import losses
from sigmarec.models.layers.softmax_ce import softmax_cross_entropy
from sigmarec.runs import build_model, make_config

OUT = Path(__file__).parent / "results" / "ce_speed.jsonl"


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


def time_steps(model, opt, batches) -> float:
    t0 = time.perf_counter()
    for b in batches:
        loss = model(b)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / len(batches)


def emit(row: dict) -> None:
    print(json.dumps(row), flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("a") as f:
        f.write(json.dumps(row) + "\n")


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
        cfg = make_config(name, {"data": {"dataset": args.dataset}, "train": {"num_threads": args.threads}})
        data = load_dataset(cfg.data)
        split = make_split(data, cfg.protocol, cfg.data.max_len)
        torch.manual_seed(0)
        model = build_model(cfg, data, split)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        batches = list(train_batches(split, cfg.train.batch_size, cfg.data.max_len, np.random.default_rng(0), True))
        batches = batches[: args.batches + 2]
        m = int(np.median([int((b.targets > 0).sum()) for b in batches]))
        d = model.item_embeddings().shape[1]
        n = data.n_items
        loss_t = {"reference": [], "fused": []}
        step_t = {"reference": [], "fused": []}
        time_steps(model, opt, batches[:2])  # warm-up
        for _ in range(args.rounds):
            for label, fn in (("reference", reference_ce), ("fused", softmax_cross_entropy)):
                loss_t[label].append(time_loss(fn, m, n, d, 5))
                with loss_impl(fn):
                    step_t[label].append(time_steps(model, opt, batches[2:]))
        med = {k: float(np.median(v)) for k, v in (("loss_ref", loss_t["reference"]), ("loss_fused", loss_t["fused"]),
                                                   ("step_ref", step_t["reference"]), ("step_fused", step_t["fused"]))}
        emit({"session": session, "dataset": args.dataset, "model": name, "threads": args.threads,
              "loss_shape": [m, n, d], "sec_loss_reference": med["loss_ref"], "sec_loss_fused": med["loss_fused"],
              "loss_speedup": med["loss_ref"] / med["loss_fused"], "sec_step_reference": med["step_ref"],
              "sec_step_fused": med["step_fused"], "step_speedup": med["step_ref"] / med["step_fused"],
              "batches": len(batches) - 2, "rounds": args.rounds, "torch": torch.__version__})


if __name__ == "__main__":
    main()
