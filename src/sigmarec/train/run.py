"""Run directories: build a config for a new run, or reload a finished run (config, data, model)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from sigmarec.config import RunConfig, build_config, load_yaml, merge
from sigmarec.data.catalog import CATALOG, load_dataset
from sigmarec.data.protocols import Split, make_split
from sigmarec.data.sequences import SequenceData
from sigmarec.models.base import SequentialRecommender
from sigmarec.models.registry import get_model_class
from sigmarec.train.checkpoint import find_checkpoint, load_checkpoint
from sigmarec.train.trainer import build_model, resolve_device


PRESETS = Path(__file__).resolve().parent.parent / "presets"
log = logging.getLogger("sigmarec")


def find_preset(model: str, dataset: str, preset: str | None = "auto") -> Path | None:
    """The tuned settings shipped for ``model`` on ``dataset``: ``presets/MODEL-DATASET.yaml`` for a
    catalog data set, else ``presets/MODEL-default.yaml``, else none. ``preset`` may name one
    (``office``, ``default``, or a YAML path) or be ``none``."""
    model = model.lower()
    if preset is None or preset == "none":
        return None
    if preset != "auto":
        path = Path(preset) if preset.endswith((".yaml", ".yml")) else PRESETS / f"{model}-{preset}.yaml"
        if not path.exists():
            known = sorted(p.stem for p in PRESETS.glob(f"{model}-*.yaml"))
            raise FileNotFoundError(f"preset {preset!r} not found ({path}); presets for {model}: {known or 'none'}")
        return path
    for name in (dataset, "default"):
        path = PRESETS / f"{model}-{name}.yaml"
        if name and path.exists():
            return path
    return None


def make_config(model: str, overrides: dict[str, Any] | None = None, config_file: str | Path | None = None,
                preset: str | None = "auto") -> RunConfig:
    """Defaults in code <- preset (tuned per data set, see ``find_preset``) <- YAML file <- overrides."""
    cls = get_model_class(model)
    values: dict[str, Any] = {}
    if config_file:
        values = load_yaml(config_file)
    values = merge(values, overrides or {})
    dataset = str((values.get("data") or {}).get("dataset", "synthetic"))
    path = find_preset(model, dataset, preset)
    if path is not None:
        values = merge(load_yaml(path), values)
        log.info("using preset %s", path.name)
    elif preset == "auto" and any(PRESETS.glob(f"{model.lower()}-*.yaml")):
        log.info("no preset for %s on %s: code defaults", model, dataset)
    cfg = build_config(model.lower(), cls.config_class, values)
    ds = cfg.data.dataset
    if ds not in CATALOG and Path(ds).exists():
        cfg.data.dataset = str(Path(ds).resolve())
    return cfg


def default_run_dir(cfg: RunConfig, root: str | Path = "runs") -> Path:
    ds = Path(cfg.data.dataset).name.split(".")[0]
    return Path(root) / f"{cfg.model_name}-{ds}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass
class LoadedRun:
    cfg: RunConfig
    data: SequenceData
    split: Split
    model: SequentialRecommender
    device: torch.device


def load_run_config(run_dir: str | Path) -> RunConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found; is {run_dir} a sigmarec run directory?")
    values = yaml.safe_load(path.read_text())
    name = values.get("model_name")
    if not name:
        raise ValueError(f"{path}: missing model_name")
    return build_config(name, get_model_class(name).config_class, values)


def load_run(run_dir: str | Path, checkpoint: str = "best", device: str = "auto") -> LoadedRun:
    """Rebuild a trained run: its config, data (from the cache), split and model weights."""
    cfg = load_run_config(run_dir)
    data = load_dataset(cfg.data)
    split = make_split(data, cfg.protocol, cfg.data.max_len)
    dev = resolve_device(device)
    model = build_model(cfg, data).to(dev)
    ckpt = find_checkpoint(Path(run_dir) / "checkpoints" / checkpoint)
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir}: no '{checkpoint}' checkpoint; has training run for at least one epoch?")
    load_checkpoint(ckpt, model, None, dev)
    model.eval()
    return LoadedRun(cfg, data, split, model, dev)
