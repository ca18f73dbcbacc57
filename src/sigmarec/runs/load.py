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
from sigmarec.data.sequences import MissingDataError, SequenceData
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


def build_model(cfg: RunConfig, data: SequenceData, split: Split | None = None) -> SequentialRecommender:
    """The run's model for ``data``; ``split`` gives the training interactions to the models built from them
    (LightGCN's graph), so training and reloading build the same model."""
    return get_model_class(cfg.model_name).from_data(cfg.model, data, cfg.data.max_len, split=split)


@dataclass
class LoadedRun:
    cfg: RunConfig
    data: SequenceData
    split: Split
    model: SequentialRecommender
    device: torch.device
    run_dir: Path | None = None
    metrics: dict | None = None  # the final metrics, when the run was just trained (``sigmarec.train``)


def check_data_pin(run_dir: str | Path, data: SequenceData, allow_change: bool = False) -> None:
    """Refuse ``data`` if the run directory was trained on something else (``data.json``'s fingerprint: the input
    file's content hash and the preprocessing settings), unless ``allow_change``. Runs written before the
    fingerprint existed, or a run directory without data.json yet, pass."""
    pinned = _pinned_fingerprint(run_dir)
    if pinned and data.fingerprint and pinned != data.fingerprint:
        if allow_change:
            log.warning("%s: the data differ from what this run was trained on (allowed by --allow-data-change)", run_dir)
            return
        raise RunError(f"{run_dir} was trained on other data than {data.name!r} gives now (the file's content or the "
                       f"preprocessing changed: {pinned} vs {data.fingerprint}); its metrics and ids would not mean what "
                       "they did. Restore the file, or pass --allow-data-change if you know what changed")


SNAPSHOT = "data"  # RUN_DIR/data: the processed data the run was trained on (id maps, sequences, side tables)


def save_data_snapshot(run_dir: str | Path, data: SequenceData) -> None:
    """Keep the run's own copy of its processed data, so the run can be evaluated and served (user histories and
    id maps) when the original file is gone. Written atomically; kept while the data stay the same."""
    path = Path(run_dir) / SNAPSHOT
    if (path / "ids.json").exists() and _pinned_fingerprint(run_dir) == data.fingerprint:
        return
    data.save(path)


def _pinned_fingerprint(run_dir: str | Path) -> str:
    path = Path(run_dir) / "data.json"
    if not path.exists():
        return ""
    try:
        return str(json.loads(path.read_text()).get("fingerprint", ""))
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise RunError(f"{path}: not valid JSON (truncated or corrupted)") from None


def load_run_data(run_dir: str | Path, allow_data_change: bool = False) -> tuple[RunConfig, SequenceData, Split]:
    """A run's config, data and split, without building the model. The data come from the input file (through the
    cache; refused if it is not the data the run was trained on), or, when that file is gone, from the run's copy."""
    cfg = load_run_config(run_dir)
    snapshot = Path(run_dir) / SNAPSHOT
    has_snapshot = (snapshot / "ids.json").exists()
    try:
        data = load_dataset(cfg.data, download=not has_snapshot)
    except MissingDataError as exc:
        if not has_snapshot:
            raise
        try:
            data = SequenceData.load(snapshot)
        except Exception as load_exc:  # noqa: BLE001 - any damage to the copy: name it, with the original problem
            raise RunError(f"{exc}; and the run's own copy of its data ({snapshot}) is unreadable "
                           f"({type(load_exc).__name__}: {load_exc})") from None
        data.fingerprint = _pinned_fingerprint(run_dir)
        log.info("%s: the data file is not available (%s); using the run's own copy of the data it was trained on",
                 run_dir, str(exc).split(":")[0])
    else:
        check_data_pin(run_dir, data, allow_data_change)
    return cfg, data, make_split(data, cfg.protocol, cfg.data.max_len)


def load_run(run_dir: str | Path, checkpoint: str = "best", device: str = "auto", allow_data_change: bool = False) -> LoadedRun:
    """Rebuild a trained run: its config, data (from the cache), split and model weights."""
    dev = resolve_device(device)
    cfg, data, split = load_run_data(run_dir, allow_data_change)
    model = build_model(cfg, data, split).to(dev)
    ckpt = find_checkpoint(Path(run_dir) / "checkpoints" / checkpoint)
    if ckpt is None:
        raise RunError(f"{run_dir}: no '{checkpoint}' checkpoint; has training run for at least one epoch?")
    load_checkpoint(ckpt, model, None, dev)
    model.eval()
    return LoadedRun(cfg, data, split, model, dev, Path(run_dir))
