"""Checkpoints without pickled objects: tensors in safetensors, everything else in JSON.

A checkpoint is a directory (``model.safetensors``, ``optimizer.safetensors``, ``state.json``)
written under a temporary name and renamed into place, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from sigmarec.runs.files import write_json_atomic


def _split_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _join_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = value
    for pid, values in meta["scalars"].items():
        state.setdefault(int(pid), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, state: dict[str, Any]) -> None:
    """Write model weights, optimizer state and trainer ``state`` (JSON-serialisable) atomically."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / "model.safetensors"))
    meta = dict(state)
    if optimizer is not None:
        tensors, opt_meta = _split_optimizer(optimizer.state_dict())
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        meta["optimizer"] = opt_meta
    write_json_atomic(tmp / "state.json", meta)
    old = directory.with_name(directory.name + ".old")
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(directory: Path) -> Path | None:
    """The checkpoint at ``directory``, or its previous copy if a crash hit between the two renames."""
    directory = Path(directory)
    for cand in (directory, directory.with_name(directory.name + ".old")):
        if (cand / "state.json").exists():
            return cand
    return None


def load_checkpoint(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load weights (and optimizer state) in place; return the trainer state."""
    directory = Path(directory)
    meta = json.loads((directory / "state.json").read_text())
    model.load_state_dict(load_file(str(directory / "model.safetensors"), device=str(device)))
    if optimizer is not None and "optimizer" in meta:
        tensors = load_file(str(directory / "optimizer.safetensors"), device=str(device))
        optimizer.load_state_dict(_join_optimizer(tensors, meta["optimizer"]))
    meta.pop("optimizer", None)
    return meta
