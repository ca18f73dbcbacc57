"""Training loop with early stopping, checkpoints and crash-safe resume.

A run directory holds ``config.yaml`` (resolved config), ``epochs.jsonl`` (one JSON line per
epoch), ``checkpoints/{last,best}`` and ``metrics.json``. Every epoch reseeds torch and the batch
shuffler from ``(seed, epoch)``, so a run resumed from its last checkpoint retraces exactly the
epochs an uninterrupted run would have taken.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sigmarec.config import ConfigError, RunConfig, RunError, TrainConfig, describe, load_yaml
from sigmarec.data.batching import n_train_batches, train_batches
from sigmarec.data.catalog import load_dataset
from sigmarec.data.protocols import Split, make_split
from sigmarec.data.sequences import SequenceData
from sigmarec.evaluate.evaluator import evaluate
from sigmarec.memory import reuse_freed_memory
from sigmarec.parallel import Distributed
from sigmarec.train.distributed import shard, wrap_ddp
from sigmarec.train.report import TensorBoard, end_summary, start_summary, time_left, write_curves
from sigmarec.runs import (RunLock, build_model, check_data_pin, find_checkpoint, load_checkpoint, read_state, remove_checkpoint,
                           remove_stale_temporaries, resolve_device, save_data_snapshot,
                           save_checkpoint, write_json_atomic, write_text_atomic)
from sigmarec.runs.config import RESUMABLE_CHANGES, config_differences

log = logging.getLogger("sigmarec")
LOG_EVERY = 50  # steps between reading the summed losses back from the device (progress bar, non-finite check)
_IMPORTED = time.time()  # about when this process started working (its own CPU use is not another job's)


def free_cores() -> int:
    """CPU cores not busy with other work: the cores this process may use minus the 1-minute load average (at least
    1). Threads beyond the free cores compete with the other jobs, and torch's default of one per core collapses on a
    shared machine (measured: 2.8x slower epochs with one other job on 2 cores, against 1.07x with one thread)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        load = os.getloadavg()[0]
    except (OSError, AttributeError):  # not available on this platform
        return cores
    t = os.times()
    own = (t.user + t.system) / max(time.time() - _IMPORTED, 60.0)  # this process's share of the 1-minute load
    return max(1, min(cores, cores - int(round(max(load - own, 0.0)))))


def make_optimizer(model: torch.nn.Module, tc: TrainConfig) -> torch.optim.Optimizer:
    """Adam or AdamW with ``weight_decay`` on the parameters ``train.decay`` names: two parameter groups, or one
    group in model order when nothing is exempt (no decay, or ``decay=all``), the optimizer state's layout before
    the option existed, so older runs resume."""
    opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[tc.optimizer]
    params = [p for p in model.parameters() if p.requires_grad]
    if tc.weight_decay == 0 or tc.decay == "all":
        return opt_cls(params, lr=tc.lr, weight_decay=tc.weight_decay)
    decayed = [p for p in params if p.dim() >= 2]
    ids = {id(p) for p in decayed}
    groups = [{"params": decayed, "weight_decay": tc.weight_decay},
              {"params": [p for p in params if id(p) not in ids], "weight_decay": 0.0}]
    return opt_cls([g for g in groups if g["params"]], lr=tc.lr)


def check_metric_name(name: str, ks: list[int], sampled: bool = False) -> None:
    """Fail before training if early stopping watches a metric the evaluator will not produce
    (``coverage@K`` exists only for full ranking, not with ``eval.sampled_negatives``)."""
    base, _, k = name.partition("@")
    bases = ("recall", "hit", "ndcg", "precision", "mrr") + (() if sampled else ("coverage",))
    ok = name == "mrr" or (base in bases and k.isdigit() and int(k) in ks)
    if not ok:
        raise ConfigError(f"train.valid_metric {name!r} is not produced: use mrr or {'|'.join(bases)}@K with K in eval.ks {ks}")


class Trainer:
    """Fits one model on one split; ``fit()`` returns the final validation and test metrics."""

    def __init__(self, cfg: RunConfig, run_dir: str | Path, data: SequenceData | None = None,
                 sources: dict[str, str] | None = None, wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None,
                 restart: bool = False, allow_data_change: bool = False) -> None:
        self.cfg = cfg
        self.allow_data_change = allow_data_change  # resume on data that differs from what the run was trained on
        self.restart = restart  # train from scratch whatever the run directory holds (its results are discarded)
        self.sources = sources or {}  # the layer that set each key (``runs.make_config``), noted in config.yaml
        self.run_dir = Path(run_dir)
        self.device = resolve_device(cfg.train.device)  # before reading data: a missing device fails fast
        self.group = Distributed.current()  # rank and world of a torchrun launch (rank 0 of 1 otherwise)
        self.data = data if data is not None else load_dataset(cfg.data)
        self.split: Split = make_split(self.data, cfg.protocol, cfg.data.max_len)
        check_metric_name(cfg.train.valid_metric, cfg.eval.ks, cfg.eval.sampled_negatives > 0)
        if self.device.type == "cpu" or cfg.train.num_threads:  # the free cores shared by the ranks on this machine
            torch.set_num_threads(cfg.train.num_threads or max(1, free_cores() // self.group.world))
        if self.device.type == "cpu" and cfg.train.reuse_freed_memory:
            reuse_freed_memory()  # the step's logits are not page-faulted in afresh each step (sigmarec/memory.py)
        torch.manual_seed(cfg.train.seed)
        self.model = build_model(cfg, self.data, self.split).to(self.device)
        self.optimizer = make_optimizer(self.model, cfg.train)
        self.amp = cfg.train.amp and self.device.type == "cuda"
        # logged loss sums: float64 (the sum a Python float loop gives), float32 where the device has no float64
        self.sum_dtype = torch.float32 if self.device.type == "mps" else torch.float64
        # what a training step calls: the model, or a wrapper around it (DistributedDataParallel, torch.compile)
        if wrap is None and self.group.active:
            wrap = lambda m: wrap_ddp(m, self.device)  # noqa: E731
        self.train_module: torch.nn.Module = wrap(self.model) if wrap is not None else self.model
        if cfg.train.compile:  # after DDP, so the compiled graph includes its hooks
            self.train_module = torch.compile(self.train_module)

    # ---- run directory ----
    def _prepare_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "checkpoints").mkdir(exist_ok=True)
        text = describe(self.cfg, self.sources)
        path = self.run_dir / "config.yaml"
        diff = config_differences(load_yaml(path), self.cfg) if path.exists() else []
        if diff:
            raise RunError(f"{path} holds a different configuration ({'; '.join(diff)}: stored vs requested); resume with "
                             f"the same settings or use a new --out (only train.{', train.'.join(RESUMABLE_CHANGES)} "
                             "may change on resume)")
        write_text_atomic(path, text)
        check_data_pin(self.run_dir, self.data, self.allow_data_change)
        save_data_snapshot(self.run_dir, self.data)
        write_json_atomic(self.run_dir / "data.json", {"name": self.data.name, "fingerprint": self.data.fingerprint, **self.data.stats(),
                                                       "train_windows": int(len(self.split.train_starts)),
                                                       "train_targets": self.split.n_train_targets,
                                                       "valid_cases": len(self.split.valid), "test_cases": len(self.split.test)})

    def _resume_state(self, ckpt_dir: Path) -> dict[str, Any] | None:
        """Load ``last`` (or its intact previous copy) and return its trainer state; None when there is none. When
        ``last`` is damaged or missing, ``best`` stands in if it is intact and carries a trainer state (the epochs after it are
        trained again, the same way: each epoch's randomness is seeded by its number); else the error names the file."""
        last = find_checkpoint(ckpt_dir / "last")
        best = find_checkpoint(ckpt_dir / "best")
        if last is None and best is None:
            return None
        if last is None:
            damage = f"{ckpt_dir / 'last'}: missing"
        else:
            try:
                return load_checkpoint(last, self.model, self.optimizer, self.device)
            except RunError as exc:
                damage = str(exc)
        if best is not None:
            try:
                if "bad_epochs" not in read_state(best):
                    raise RunError(f"{best} cannot stand in (written before best checkpoints kept the trainer state)")
                state = load_checkpoint(best, self.model, self.optimizer, self.device)
            except RunError as exc:
                damage += f"; and {exc}"
            else:
                state.pop(self.cfg.train.valid_metric, None)
                log.warning("%s; resuming from checkpoints/best (epoch %d) instead: the epochs after it are trained again",
                            damage, state["epoch"])
                return state
        raise RunError(f"{damage}; no intact checkpoint to resume from: pass --restart (Trainer(restart=True)) to start "
                       "over, or use another --out")

    def _holds_training(self) -> bool:
        """Whether the run directory has results of earlier training that a restart would overwrite: a metrics file or
        a best checkpoint. Logged epochs alone (a kill before the first checkpoint was in place) cannot be resumed
        from and are not results: those runs start over, with a warning."""
        return (self.run_dir / "metrics.json").exists() or find_checkpoint(self.run_dir / "checkpoints" / "best") is not None

    def _discard_results(self) -> None:
        """What a restart replaces: the metrics file first (so a crash mid-way never pairs old metrics with new
        epochs), then the checkpoints and the epoch log."""
        (self.run_dir / "metrics.json").unlink(missing_ok=True)
        for kind in ("last", "best"):
            remove_checkpoint(self.run_dir / "checkpoints" / kind)
        self._truncate_log(0)

    def _log_epoch(self, record: dict[str, Any]) -> None:
        with open(self.run_dir / "epochs.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def _truncate_log(self, last_epoch: int) -> None:
        """Keep the log lines of epochs up to the checkpoint's; a line cut short by a crash is dropped, not fatal."""
        path = self.run_dir / "epochs.jsonl"
        if not path.exists():
            return
        kept = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                epoch = json.loads(line)["epoch"]
            except (json.JSONDecodeError, KeyError, TypeError):
                log.warning("%s line %d: not a complete epoch record (cut short by a crash?); dropped", path, n)
                continue
            if epoch <= last_epoch:
                kept.append(line)
        write_text_atomic(path, "".join(l + "\n" for l in kept))

    # ---- training ----
    def _train_epoch(self, epoch: int) -> dict[str, float]:
        tc = self.cfg.train
        torch.manual_seed(tc.seed * 1_000_003 + epoch)
        rng = np.random.default_rng([tc.seed, epoch])
        self.train_module.train()
        self.model.on_epoch_start(epoch)
        total = n_train_batches(self.split, tc.batch_size, self.cfg.data.max_len, tc.bucket_by_length)
        sums: dict[str, torch.Tensor] = {}  # loss parts summed on the device, read back only when logged
        nonfinite = torch.zeros((), dtype=torch.bool, device=self.device)
        n = 0
        bar = tqdm(train_batches(self.split, tc.batch_size, self.cfg.data.max_len, rng, tc.bucket_by_length), total=total,
                   desc=f"epoch {epoch}", disable=not tc.progress or not sys.stderr.isatty(), leave=False, dynamic_ncols=True)
        for batch in bar:
            batch, weight = shard(batch, self.group)  # this rank's rows and its share of the targets (1 process: all, 1)
            batch = batch.to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                parts = self.train_module(batch)
            loss = parts["loss"]
            if self.group.active:  # DDP averages the ranks' gradients: weighted, that is the global batch's gradient
                loss = loss * weight
                parts = {k: v * (weight / self.group.world) for k, v in parts.items()}  # summed over ranks when logged
            nonfinite |= ~torch.isfinite(loss.detach())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.clip_grad:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), tc.clip_grad)
            self.optimizer.step()
            self.model.on_train_step()
            for k, v in parts.items():
                v = v.detach().to(self.sum_dtype)
                sums[k] = sums[k] + v if k in sums else v
            n += 1
            if n % LOG_EVERY == 0 or n == total:
                self._check_finite(self._any(nonfinite), epoch, n)
                if tc.progress:
                    bar.set_postfix(loss=f"{float(sums['loss']) / n:.4f}")
        bar.close()
        self._check_finite(self._any(nonfinite), epoch, n)
        if self.group.active and sums:  # the global batches' loss parts: the ranks' weighted sums added up
            keys = sorted(sums)
            total_sums = self.group.sum_(torch.stack([sums[k] for k in keys]).cpu().double())
            sums = dict(zip(keys, total_sums))
        return {k: float(v) / max(n, 1) for k, v in sums.items()}

    def _any(self, flag: torch.Tensor) -> torch.Tensor:
        """A flag raised on any rank (every rank then raises the same error instead of waiting on the others)."""
        return torch.tensor(self.group.any(bool(flag))) if self.group.active else flag

    @staticmethod
    def _check_finite(nonfinite: torch.Tensor, epoch: int, step: int) -> None:
        if bool(nonfinite):
            raise FloatingPointError(f"epoch {epoch}: the loss became NaN or infinite by step {step} (checked every "
                                     f"{LOG_EVERY} steps); lower train.lr or check the data")

    def evaluate(self, which: str) -> dict[str, float]:
        cases = self.split.cases(which)
        return evaluate(self.model, self.data, cases, self.cfg.eval, self.cfg.data.max_len, self.device, self.group)

    def fit(self) -> dict[str, Any]:
        """Train (or resume) to the end, holding the run directory's lock throughout; returns the final metrics."""
        if not self.group.main:  # rank 0 holds the lock and writes; the others wait for its run directory
            self.group.barrier()
            return self._fit()
        with RunLock(self.run_dir):
            removed = remove_stale_temporaries(self.run_dir)
            if removed:
                log.info("removed %d temporary file(s) left by an interrupted run in %s", len(removed), self.run_dir)
            self._prepare_run_dir()
            self.group.barrier()
            return self._fit()

    def _fit(self) -> dict[str, Any]:
        tc = self.cfg.train
        main = self.group.main
        ckpt_dir = self.run_dir / "checkpoints"
        state = {"epoch": 0, "best_epoch": 0, "best_value": -math.inf, "bad_epochs": 0, "finished": False}
        resumed = None if self.restart else self._resume_state(ckpt_dir)
        if resumed is not None:
            if not tc.num_threads and resumed.get("num_threads") and self.device.type == "cpu":
                torch.set_num_threads(resumed["num_threads"])  # the automatic choice of the first start: same sums
            state.update(resumed)
            state["finished"] = state["bad_epochs"] >= tc.patience  # a larger budget on resume continues the run
            if main:
                self._truncate_log(state["epoch"])
            log.info("resumed %s from epoch %d (best %s=%.4f at epoch %d)", self.run_dir, state["epoch"], tc.valid_metric,
                     state["best_value"], state["best_epoch"])
        elif self._holds_training() or (self.restart and (self.run_dir / "epochs.jsonl").exists()):
            if not self.restart:
                raise RunError(f"{self.run_dir} holds a trained or partly trained run but no readable checkpoints/last; "
                               "training again would overwrite it: pass --restart (Trainer(restart=True)) to start over, "
                               "or use another --out")
            log.warning("%s: starting over (--restart): its earlier epochs, checkpoints and metrics are discarded", self.run_dir)
            if main:
                self._discard_results()
        elif main and (self.run_dir / "epochs.jsonl").exists():
            if (self.run_dir / "epochs.jsonl").read_text().strip():
                log.warning("%s: logged epochs but no checkpoint (interrupted before the first was saved); starting over",
                            self.run_dir)
            self._truncate_log(0)
        state["num_threads"] = torch.get_num_threads()
        log.info("%s", start_summary(self.cfg, self.model, self.data, self.split, self.device, self.group.world))
        board = TensorBoard(self.run_dir) if main else None
        start = time.time()
        epoch_times: list[float] = []
        held_out = not self.split.valid_trained  # a refit: nothing is held out to validate or select on
        while not state["finished"] and state["epoch"] < tc.epochs:
            epoch = state["epoch"] + 1
            t0 = time.time()
            losses = self._train_epoch(epoch)
            train_s = time.time() - t0
            record: dict[str, Any] = {"epoch": epoch, **losses, "train_seconds": round(train_s, 3)}
            improved = False
            if held_out and (epoch % tc.eval_every == 0 or epoch == tc.epochs):
                t1 = time.time()
                valid = self.evaluate("valid")
                record["eval_seconds"] = round(time.time() - t1, 3)
                record["valid"] = valid
                if tc.valid_metric not in valid:
                    raise ConfigError(f"train.valid_metric {tc.valid_metric!r} is not among {sorted(valid)}")
                value = valid[tc.valid_metric]
                if value > state["best_value"]:
                    state.update(best_value=value, best_epoch=epoch, bad_epochs=0)
                    improved = True
                else:
                    state["bad_epochs"] += 1
            epoch_times.append(time.time() - t0)
            state["epoch"] = epoch
            if state["bad_epochs"] >= tc.patience:
                state["finished"] = True
            if main:
                self._log_epoch(record)  # before the checkpoint that claims the epoch: a resume truncates it, never loses it
                board.log(record)
                if improved:  # with the optimizer and trainer state, so a run whose `last` is damaged can resume from here
                    save_checkpoint(ckpt_dir / "best", self.model, self.optimizer, {**state, tc.valid_metric: state["best_value"]})
                save_checkpoint(ckpt_dir / "last", self.model, self.optimizer, state)
            msg = f"epoch {epoch:3d} loss {losses['loss']:.4f} ({train_s:.1f}s)"
            if "valid" in record:
                msg += f" valid {tc.valid_metric} {record['valid'][tc.valid_metric]:.4f} (best {state['best_value']:.4f} @ {state['best_epoch']})"
            left = time_left(epoch_times[-5:], epoch, epoch if state["finished"] else tc.epochs,
                             state["best_epoch"] if held_out else None, tc.patience * tc.eval_every)
            log.info("%s  time left %s", msg, left)
        state["finished"] = True
        if main:
            save_checkpoint(ckpt_dir / "last", self.model, self.optimizer, state)
            if not held_out:  # the model a refit selects is its last epoch: `best` for every reader of the run
                save_checkpoint(ckpt_dir / "best", self.model, self.optimizer, {**state, "best_epoch": state["epoch"]})
            board.close()
        self.group.barrier()  # rank 0's checkpoints are in place before any rank reloads the best
        best = find_checkpoint(ckpt_dir / "best")
        if best is not None:
            load_checkpoint(best, self.model, None, self.device)
        log.info("%s", end_summary(state, tc, best is not None, held_out))
        if main:
            write_curves(self.run_dir, tc.valid_metric)
        metrics = {**({"valid": self.evaluate("valid")} if held_out else {}), "test": self.evaluate("test"),
                   "best_epoch": state["best_epoch"] if held_out else state["epoch"], "epochs": state["epoch"],
                   "train_seconds_this_session": round(time.time() - start, 2)}
        if main:
            write_json_atomic(self.run_dir / "metrics.json", metrics)
        log.info("test %s", _fmt_metrics(metrics["test"]))
        return metrics


def _fmt_metrics(m: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.4f}" for k, v in m.items() if k != "n")
