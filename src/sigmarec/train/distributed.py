"""The training side of data-parallel training (see ``sigmarec/parallel.py``): each rank's share of a global
batch, and the ``DistributedDataParallel`` wrapper."""

from __future__ import annotations

import numpy as np
import torch

from sigmarec.data.batching import Batch
from sigmarec.parallel import Distributed


def shard(batch: Batch, d: Distributed) -> tuple[Batch, float]:
    """This rank's rows of a global batch (rows ``rank, rank + world, ...``) and the weight of its loss:
    ``world x`` its share of the batch's targets, so that DDP's mean over ranks of the weighted gradients is the
    gradient of the global batch's mean loss. A rank left without rows trains on the first row at weight 0 (every
    rank must take part in the gradient all-reduce)."""
    if not d.active:
        return batch, 1.0
    rows = np.arange(d.rank, batch.inputs.shape[0], d.world)
    total = int((batch.targets > 0).sum())
    weight = 1.0
    if len(rows) == 0:
        rows, weight = np.array([0]), 0.0
    idx = torch.from_numpy(rows)
    pick = lambda t: None if t is None else t[idx]  # noqa: E731
    part = Batch(batch.inputs[idx], batch.targets[idx], batch.users[idx], pick(batch.session_starts),
                 pick(batch.target_session_starts))
    if weight:
        weight = d.world * int((part.targets > 0).sum()) / max(total, 1)
    return part, weight


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel`` around ``model`` (parameters broadcast from rank 0). Unused parameters are
    allowed: some models switch parts on by epoch (SIGMA's hard interests) or by option."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)
