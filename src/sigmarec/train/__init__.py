"""Training: the trainer (``trainer.py``) and compare's grid of runs (``grid.py``).

The package itself is callable, so ``sigmarec.train("sasrec", dataset="office", train={"epochs": 50})`` trains a
run in one line (``sigmarec.train.fit``); a module cannot be called, so its class is swapped for one that can.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any


def fit(name: str, dataset: str = "synthetic", out: str | Path | None = None, preset: str | None = "auto",
        verbose: bool = True, **sections: dict[str, Any]) -> Any:
    """Train (or resume) model ``name`` on ``dataset`` and return the loaded run (``sigmarec.runs.LoadedRun``:
    ``cfg``, ``data``, ``split``, ``model``, ``run_dir`` and the final ``metrics``). ``sections``: settings by
    section, e.g. ``train={"epochs": 5}, model={"hidden_size": 32}``; ``out`` defaults to a new
    ``runs/MODEL-DATASET-TIME``. ``verbose`` logs progress to stderr for this call (the ``sigmarec`` logger only)."""
    import logging

    from sigmarec.runs import default_run_dir, load_run, make_config
    from sigmarec.train.trainer import Trainer

    unknown = set(sections) - {"data", "model", "train", "eval", "protocol"}
    if unknown:
        raise TypeError(f"unknown section(s) {sorted(unknown)}: use data=, model=, train=, eval=, protocol=")
    overrides = {k: dict(v) for k, v in sections.items()}
    overrides.setdefault("data", {})["dataset"] = dataset
    cfg = make_config(name, overrides, preset=preset)
    run_dir = Path(out) if out is not None else default_run_dir(cfg)
    logger = logging.getLogger("sigmarec")
    handler = None
    if verbose and not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        level, logger.level = logger.level, logging.INFO
    try:
        metrics = Trainer(cfg, run_dir).fit()
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            logger.setLevel(level)
    run = load_run(run_dir, device=cfg.train.device)
    run.run_dir, run.metrics = run_dir, metrics
    return run


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return fit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
