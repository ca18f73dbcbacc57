"""The one place a run's configuration is assembled: which layers exist and in what order.

Precedence, lowest first: code defaults (the config dataclasses) <- the model's training defaults
(``train_defaults`` on its class) <- the data set's catalog settings <- the preset shipped for this
model and data set <- the ``--config`` YAML file <- ``--set`` overrides. ``sigmarec.config.resolve``
merges them; what it returns is exactly what is written to ``config.yaml`` and what runs.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import yaml

from sigmarec.config import ConfigError, MissingFileError, RunConfig, RunError, build_config, describe, load_yaml, resolve
from sigmarec.data.catalog import CATALOG, dataset_defaults
from sigmarec.models.registry import get_model_class

PRESETS = Path(__file__).resolve().parent.parent / "presets"
DEFAULT_DATASET = "synthetic"  # the data set when no layer names one (DataConfig's default)
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
            raise MissingFileError(f"preset {preset!r} not found ({path}); presets for {model}: {known or 'none'}")
        return path
    for name in (dataset, "default"):
        path = PRESETS / f"{model}-{name}.yaml"
        if name and path.exists():
            return path
    return None


def config_layers(model: str, overrides: dict[str, Any] | None = None, config_file: str | Path | None = None,
                  preset: str | None = "auto", refit_of: str | Path | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The named layers ``make_config`` resolves, lowest precedence first (see the module docstring). ``refit_of``:
    a finished run whose ``config.yaml`` is the config file, under a ``--refit`` layer (``refit_plan``)."""
    cls = get_model_class(model)
    if refit_of is not None:
        if config_file:
            raise ConfigError("--refit takes its configuration from the run it names; drop --config")
        config_file, stored, values = refit_plan(refit_of, model)
        user = [(f"config file {config_file}", stored), (f"--refit {refit_of}", values)]
    else:
        user = [(f"config file {config_file}", load_yaml(config_file))] if config_file else []
    user.append(("--set", dict(overrides or {})))
    dataset = DEFAULT_DATASET
    for _, values in user:
        data = values.get("data") if isinstance(values.get("data"), dict) else {}
        if data.get("dataset") is not None:
            dataset = str(data["dataset"])
            if dataset not in CATALOG and Path(dataset).exists():  # a file: stored as an absolute path
                values["data"] = {**data, "dataset": str(Path(dataset).resolve())}
    layers: list[tuple[str, dict[str, Any]]] = []
    if cls.train_defaults:
        layers.append((f"{model.lower()} training defaults", cls.train_defaults))
    if catalog := dataset_defaults(dataset):
        layers.append((f"data set {dataset}", {"data": catalog}))
    path = find_preset(model, dataset, preset)
    if path is not None:
        layers.append((f"preset {path.name}", load_yaml(path)))
    elif preset == "auto" and any(PRESETS.glob(f"{model.lower()}-*.yaml")):
        log.info("no preset for %s on %s: code defaults", model, dataset)
    return layers + user


def make_config(model: str, overrides: dict[str, Any] | None = None, config_file: str | Path | None = None,
                preset: str | None = "auto", sources: dict[str, str] | None = None,
                refit_of: str | Path | None = None) -> RunConfig:
    """Resolve the layers of ``config_layers``; ``sources``, if given, is filled with the layer that set each key."""
    layers = config_layers(model, overrides, config_file, preset, refit_of)
    cfg, found = resolve(model.lower(), get_model_class(model).config_class, layers)
    for name, _ in layers:
        if name.startswith("preset "):
            log.info("using %s", name)
    if sources is not None:
        sources.update(found)
    return cfg


def show_config(model: str, overrides: dict[str, Any] | None = None, config_file: str | Path | None = None,
                preset: str | None = "auto") -> str:
    """The resolved configuration as YAML, each non-default value marked with the layer that set it."""
    sources: dict[str, str] = {}
    cfg = make_config(model, overrides, config_file, preset, sources)
    return describe(cfg, sources)


def default_run_dir(cfg: RunConfig, root: str | Path = "runs") -> Path:
    ds = Path(cfg.data.dataset).name.split(".")[0]
    return Path(root) / f"{cfg.model_name}-{ds}-{time.strftime('%Y%m%d-%H%M%S')}"


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The configuration a run directory was trained with (its ``config.yaml``)."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise MissingFileError(f"{path}: not found; is {run_dir} a sigmarec run directory?")
    try:
        values = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping with model_name and the config sections")
    name = values.get("model_name")
    if not name:
        raise ConfigError(f"{path}: missing model_name")
    return build_config(name, get_model_class(name).config_class, values)


def refit_plan(run_dir: str | Path, model: str) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """``(config file, its values, overrides)`` that retrain a finished run from scratch with its validation targets as training
    data (``protocol.train_on_valid``) for the epoch count validation chose for it (its best epoch): the protocol's
    final refit, after which the test case is the only one held out."""
    run_dir = Path(run_dir)
    cfg_path, metrics_path = run_dir / "config.yaml", run_dir / "metrics.json"
    if not cfg_path.exists() or not metrics_path.exists():
        raise RunError(f"--refit {run_dir}: not a finished run (it needs config.yaml and metrics.json; train it to the end first)")
    stored = load_yaml(cfg_path)
    if str(stored.get("model_name", "")).lower() != model.lower():
        raise ConfigError(f"--refit {run_dir}: that run trained {stored.get('model_name')!r}, not {model!r}")
    if (stored.get("protocol") or {}).get("train_on_valid"):
        raise ConfigError(f"--refit {run_dir}: that run is already a refit (protocol.train_on_valid is true)")
    try:
        best = int(json.loads(metrics_path.read_text())["best_epoch"])
    except (ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{metrics_path}: no readable best_epoch ({type(exc).__name__}: {exc})") from None
    if best < 1:
        raise RunError(f"{metrics_path}: best_epoch is {best}; a refit needs a run that validated at least once")
    return cfg_path, stored, {"protocol": {"train_on_valid": True}, "train": {"epochs": best}}


# Settings a resumed run may change: the budget and where/how it runs, never what is learned
# (``eval_every`` only decides when validation runs; every epoch reseeds, so training is unchanged).
RESUMABLE_CHANGES = ("epochs", "patience", "eval_every", "progress", "num_threads", "device", "reuse_freed_memory")


def _without_budget(cfg: dict) -> dict:
    train = {k: v for k, v in (cfg.get("train") or {}).items() if k not in RESUMABLE_CHANGES}
    return {**cfg, "train": train}


def config_differences(stored: dict, cfg: RunConfig) -> list[str]:
    """``section.field`` names where a run directory's stored config differs from ``cfg``, ignoring
    the fields a resume may change. Fields the stored file lacks (added to the library after the run
    began) take their current defaults, so a new option with its default never blocks a resume."""
    if stored.get("model_name", cfg.model_name) != cfg.model_name:  # before the fields: they differ because of it
        return [f"model_name ({stored.get('model_name')} vs {cfg.model_name}: the run was trained as "
                f"{stored.get('model_name')})"]
    try:
        full = build_config(cfg.model_name, get_model_class(cfg.model_name).config_class, stored).to_dict()
    except ValueError as e:  # a field this version no longer has, or a value it rejects
        return [str(e)]
    a, b = _without_budget(full), _without_budget(cfg.to_dict())
    out = []
    for section in sorted(set(a) | set(b)):
        x, y = a.get(section), b.get(section)
        if isinstance(x, dict) and isinstance(y, dict):
            out += [f"{section}.{k} ({x.get(k)!r} vs {y.get(k)!r})" for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)]
        elif x != y:
            out.append(section)
    return out
