"""Rebuild a model from a run directory (config, data, weights) without the trainer."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from sigmarec.config import ConfigError, RunConfig, RunError
from sigmarec.data.catalog import load_dataset
from sigmarec.data.protocols import Split, make_split
from sigmarec.data.sequences import SequenceData
from sigmarec.models.base import SequentialRecommender
from sigmarec.models.registry import get_model_class
from sigmarec.runs.checkpoint import find_checkpoint, load_checkpoint
from sigmarec.runs.config import load_run_config

log = logging.getLogger("sigmarec")


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU) or a named device, refused with a clear message when this torch
    build or machine does not have it (checked before any data is read)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} is not a device name torch knows (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r}: this torch build ({torch.__version__}) sees no CUDA device; use cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {name!r}: MPS is not available on this machine; use cpu or auto")
    return dev


def build_model(cfg: RunConfig, data: SequenceData) -> SequentialRecommender:
    return get_model_class(cfg.model_name).from_data(cfg.model, data, cfg.data.max_len)


@dataclass
class LoadedRun:
    cfg: RunConfig
    data: SequenceData
    split: Split
    model: SequentialRecommender
    device: torch.device


def check_data_pin(run_dir: str | Path, data: SequenceData, allow_change: bool = False) -> None:
    """Refuse ``data`` if the run directory was trained on something else (``data.json``'s fingerprint: the input
    file's content hash and the preprocessing settings), unless ``allow_change``. Runs written before the
    fingerprint existed, or a run directory without data.json yet, pass."""
    path = Path(run_dir) / "data.json"
    if not path.exists():
        return
    try:
        pinned = json.loads(path.read_text()).get("fingerprint", "")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise RunError(f"{path}: not valid JSON (truncated or corrupted)") from None
    if pinned and data.fingerprint and pinned != data.fingerprint:
        if allow_change:
            log.warning("%s: the data differ from what this run was trained on (allowed by --allow-data-change)", run_dir)
            return
        raise RunError(f"{run_dir} was trained on other data than {data.name!r} gives now (the file's content or the "
                       f"preprocessing changed: {pinned} vs {data.fingerprint}); its metrics and ids would not mean what "
                       "they did. Restore the file, or pass --allow-data-change if you know what changed")


def load_run_data(run_dir: str | Path, allow_data_change: bool = False) -> tuple[RunConfig, SequenceData, Split]:
    """A run's config, data (from the cache; refused if it is not the data the run was trained on) and split,
    without building the model."""
    cfg = load_run_config(run_dir)
    data = load_dataset(cfg.data)
    check_data_pin(run_dir, data, allow_data_change)
    return cfg, data, make_split(data, cfg.protocol, cfg.data.max_len)


def load_run(run_dir: str | Path, checkpoint: str = "best", device: str = "auto", allow_data_change: bool = False) -> LoadedRun:
    """Rebuild a trained run: its config, data (from the cache), split and model weights."""
    dev = resolve_device(device)
    cfg, data, split = load_run_data(run_dir, allow_data_change)
    model = build_model(cfg, data).to(dev)
    ckpt = find_checkpoint(Path(run_dir) / "checkpoints" / checkpoint)
    if ckpt is None:
        raise RunError(f"{run_dir}: no '{checkpoint}' checkpoint; has training run for at least one epoch?")
    load_checkpoint(ckpt, model, None, dev)
    model.eval()
    return LoadedRun(cfg, data, split, model, dev)
