"""RecBole 1.2.1's SASRec on Office (run with benchmarks/peers/.venv-recbole/bin/python): one JSON line per epoch
(training seconds, validation seconds, validation NDCG@10, wall seconds since start, peak RSS) to --log.

Settings matched to sigmarec's run in peers/compare.py: d = 64, 2 layers, 2 heads, max length 50, CE over all
items, training batch 256, Adam lr 1e-3, dropout 0.5/0.5 (RecBole's SASRec defaults), leave-one-out split in
sequence order, full ranking with the history excluded, one torch thread.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch


def write_atomic(data_file: Path, out_dir: Path) -> None:
    """S3Rec lines ``user item item ...`` as RecBole's ``office.inter`` (the position as the timestamp)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = ["user_id:token\titem_id:token\ttimestamp:float"]
    for line in data_file.read_text().splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        rows += [f"{parts[0]}\t{item}\t{t}" for t, item in enumerate(parts[1:])]
    (out_dir / "office.inter").write_text("\n".join(rows) + "\n")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="../shared/data/Office_Products.txt")
    p.add_argument("--work", default="/tmp/recbole-office")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--log", required=True)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(1)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    work = Path(args.work)
    write_atomic(Path(args.data), work / "office")
    cfg = Config(model="SASRec", dataset="office", config_dict={
        "data_path": str(work), "checkpoint_dir": str(work / "saved"), "seed": args.seed, "reproducibility": True,
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "MAX_ITEM_LIST_LENGTH": 50,
        "hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2, "loss_type": "CE",
        "train_neg_sample_args": None, "train_batch_size": 256, "eval_batch_size": 4096, "learning_rate": 1e-3,
        "epochs": args.epochs, "stopping_step": 10, "eval_step": 1,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Recall", "NDCG"], "topk": [10], "valid_metric": "NDCG@10", "show_progress": False,
        "device": "cpu", "use_gpu": False, "worker": 0})
    init_seed(cfg["seed"], cfg["reproducibility"])
    torch.set_num_threads(1)
    dataset = create_dataset(cfg)
    train, valid, _test = data_preparation(cfg, dataset)
    model = SASRec(cfg, train.dataset)
    trainer = Trainer(cfg, model)
    start, best, bad = time.time(), -1.0, 0
    with open(args.log, "w") as log:
        for epoch in range(args.epochs):
            t0 = time.time()
            trainer._train_epoch(train, epoch, show_progress=False)
            t1 = time.time()
            score, result = trainer._valid_epoch(valid, show_progress=False)
            t2 = time.time()
            log.write(json.dumps({"epoch": epoch + 1, "train_s": round(t1 - t0, 2), "valid_s": round(t2 - t1, 2),
                                  "valid_ndcg@10": float(score), "wall_s": round(t2 - start, 1),
                                  "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}) + "\n")
            log.flush()
            best, bad = (score, 0) if score > best else (best, bad + 1)
            if bad >= 10:
                break


if __name__ == "__main__":
    main()
