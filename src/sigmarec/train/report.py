"""What a training run tells its user: a start summary (device, threads, parameters, data), an end summary (why it
stopped, which checkpoint it restored, whether it was still improving), ``curves.png`` in the run directory and a
TensorBoard log when ``tensorboard`` is installed."""

from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from sigmarec.files import make_readable

log = logging.getLogger("sigmarec")


def start_summary(cfg: Any, model: torch.nn.Module, data: Any, split: Any, device: torch.device, world: int = 1) -> str:
    params = sum(p.numel() for p in model.parameters())
    procs = f" per process, {world} processes (DDP)" if world > 1 else ""
    return (f"{cfg.model_name} on {data.name}: {data.n_users:,} users, {data.n_items:,} items, {data.n_interactions:,} "
            f"interactions ({split.n_train_targets:,} training targets, {len(split.valid):,} validation and "
            f"{len(split.test):,} test cases); {params:,} parameters; device {device}, {torch.get_num_threads()} "
            f"thread(s){procs}; up to {cfg.train.epochs} epochs, patience {cfg.train.patience}")


def end_summary(state: dict[str, Any], tc: Any, restored: bool, held_out: bool = True) -> str:
    """Why training ended and what that means for the result."""
    epoch, best = state["epoch"], state["best_epoch"]
    if not held_out:
        return (f"trained the fixed budget of {epoch} epochs with the validation targets as training data "
                "(protocol.train_on_valid): nothing held out to select on, so the last epoch is the model")
    if state["bad_epochs"] >= tc.patience:
        why = f"stopped early at epoch {epoch}: no better validation {tc.valid_metric} for {tc.patience} validations"
    else:
        why = f"reached the epoch budget ({epoch} of {tc.epochs})"
    text = why + (f"; restored the best checkpoint (epoch {best}, {tc.valid_metric} {state['best_value']:.4f})" if restored else "")
    if best == epoch and state["bad_epochs"] < tc.patience and epoch > 0:
        text += ("; the model was still improving at its last epoch: more epochs (train.epochs) would likely help")
    return text


def write_curves(run_dir: Path, metric: str) -> Path | None:
    """``RUN_DIR/curves.png``: training loss and validation ``metric`` per epoch (written atomically)."""
    path = Path(run_dir) / "epochs.jsonl"
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, left = plt.subplots(figsize=(7, 4))
    left.plot([r["epoch"] for r in records], [r["loss"] for r in records], color="#777", label="training loss")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    valid = [(r["epoch"], r["valid"][metric]) for r in records if metric in r.get("valid", {})]
    if valid:
        right = left.twinx()
        right.plot(*zip(*valid), color="#2a6fdb", label=f"validation {metric}")
        right.set_ylabel(f"validation {metric}", color="#2a6fdb")
    left.set_title(Path(run_dir).name, fontsize=9)
    fig.tight_layout()
    out = Path(run_dir) / "curves.png"
    fd, tmp = tempfile.mkstemp(prefix=".curves.png.", dir=run_dir)
    os.close(fd)
    make_readable(tmp)
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return out


class TensorBoard:
    """Scalars per epoch into ``RUN_DIR/tensorboard`` when the ``tensorboard`` package is installed, else nothing."""

    def __init__(self, run_dir: Path) -> None:
        self.writer = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: an optional extra
            return
        self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def log(self, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        epoch = record["epoch"]
        for key, value in record.items():
            if isinstance(value, (int, float)) and key != "epoch":
                self.writer.add_scalar(f"train/{key}", value, epoch)
        for key, value in record.get("valid", {}).items():
            self.writer.add_scalar(f"valid/{key}", value, epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def fmt_seconds(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def time_left(recent_seconds: list[float], epoch: int, epochs: int, best_epoch: int | None = None,
              patience_epochs: int = 0) -> str:
    """The time left at the recent pace (median of ``recent_seconds``, so a paused or disturbed epoch does not skew
    it): ``~A (early stop) / B (budget)``, A until ``patience_epochs`` after ``best_epoch`` if nothing improves and B
    until ``epochs``; the budget's alone when nothing selects an epoch (``best_epoch`` None)."""
    per_epoch = statistics.median(recent_seconds)
    budget = max(0, epochs - epoch)
    if best_epoch is None:
        return fmt_seconds(budget * per_epoch)
    stop = min(budget, max(0, best_epoch + patience_epochs - epoch))
    return f"~{fmt_seconds(stop * per_epoch)} (early stop) / {fmt_seconds(budget * per_epoch)} (budget)"
