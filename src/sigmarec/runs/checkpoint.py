"""Checkpoints without pickled objects: tensors in safetensors, everything else in JSON.

A checkpoint is a directory (``model.safetensors``, ``optimizer.safetensors``, ``state.json``)
written under a temporary name and renamed into place, so a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sigmarec.config import RunError
from sigmarec.runs.files import make_readable, write_json_atomic

log = logging.getLogger("sigmarec")


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
    make_readable(tmp, directory=True)
    try:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"))
        meta = dict(state)
        if optimizer is not None:
            tensors, opt_meta = _split_optimizer(optimizer.state_dict())
            save_file(tensors, str(tmp / "optimizer.safetensors"))
            meta["optimizer"] = opt_meta
        tensor_files = sorted(tmp.glob("*.safetensors"))
        for f in tensor_files:
            make_readable(f)  # safetensors writes its files 0600
        meta["files"] = {f.name: {"sha256": file_sha256(f), "bytes": f.stat().st_size} for f in tensor_files}
        write_json_atomic(tmp / "state.json", meta)  # last: its checksums vouch for the tensor files
    except (OSError, SafetensorError) as exc:  # a full disk: the previous checkpoint stays as it was
        shutil.rmtree(tmp, ignore_errors=True)
        errno = getattr(exc, "errno", None)
        raise OSError(errno, f"cannot write checkpoint {directory} ({getattr(exc, 'strerror', None) or exc}); "
                      "the previous one is intact and the run resumes from it") from exc
    old = previous_copy(directory)
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_state(directory: Path) -> dict[str, Any]:
    """A checkpoint's ``state.json``, or a RunError naming it when it is truncated or not JSON."""
    path = Path(directory) / "state.json"
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: not a valid checkpoint state (truncated or corrupted: {exc})") from None
    if not isinstance(meta, dict):
        raise RunError(f"{path}: not a valid checkpoint state (expected a JSON object)")
    return meta


def verify_checkpoint(directory: Path) -> dict[str, Any]:
    """Check every tensor file against the size and SHA-256 recorded in ``state.json``; return the state.
    Checkpoints written before checksums existed carry none and pass unchecked."""
    directory = Path(directory)
    meta = read_state(directory)
    for name, info in (meta.get("files") or {}).items():
        path = directory / name
        if not path.exists():
            raise RunError(f"{path}: missing (the checkpoint's state.json lists it)")
        if path.stat().st_size != info["bytes"] or file_sha256(path) != info["sha256"]:
            raise RunError(f"{path}: checksum mismatch: the file changed or was corrupted after it was written "
                           f"({path.stat().st_size} bytes, {info['bytes']} recorded)")
    return meta


def previous_copy(directory: Path) -> Path:
    """Where ``save_checkpoint`` keeps the checkpoint it replaces until the new one is in place (``NAME.old``)."""
    return directory.with_name(directory.name + ".old")


def remove_checkpoint(directory: Path) -> None:
    """Delete the checkpoint at ``directory`` and its previous copy, where either exists."""
    for path in (directory, previous_copy(directory)):
        shutil.rmtree(path, ignore_errors=True)


def find_checkpoint(directory: Path) -> Path | None:
    """The checkpoint at ``directory``, or its previous copy (``NAME.old``, left when a crash hit between the two
    renames of ``save_checkpoint``), preferring one whose checksums hold; None when neither exists. Checksums are
    read here only when there is a choice to make; a single checkpoint is returned as is, and loading it checks
    it (a corrupt one raises the error that names the file)."""
    directory = Path(directory)
    found = [c for c in (directory, previous_copy(directory)) if (c / "state.json").exists()]
    if len(found) < 2:
        return found[0] if found else None
    for cand in found:
        try:
            verify_checkpoint(cand)
        except RunError as exc:
            log.warning("%s", exc)
            continue
        if cand != found[0]:
            log.warning("using %s instead: its checksums hold", cand)
        return cand
    return found[0] if found else None


def load_checkpoint(directory: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    device: torch.device | str = "cpu") -> dict[str, Any]:
    """Load weights (and optimizer state) in place after checking their checksums; return the trainer state."""
    directory = Path(directory)
    meta = verify_checkpoint(directory)
    model.load_state_dict(_load_tensors(directory / "model.safetensors", device))
    if optimizer is not None and "optimizer" in meta:
        tensors = _load_tensors(directory / "optimizer.safetensors", device)
        optimizer.load_state_dict(_join_optimizer(tensors, meta["optimizer"]))
    meta.pop("optimizer", None)
    meta.pop("files", None)
    return meta


def _load_tensors(path: Path, device: torch.device | str) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise RunError(f"{path}: cannot be read as safetensors ({exc})") from None
