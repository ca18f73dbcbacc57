"""The process group of data-parallel training (``torch.distributed``): which rank this process is, and the few
collectives the trainer and the evaluator need. Imports nothing of sigmarec, so every layer may use it; the
training side (sharding batches, the DDP wrapper) is ``train/distributed.py``.

Data-parallel training, what each process (rank) does differently:

``torchrun --nproc-per-node N -m sigmarec train ...`` starts N processes; each joins the process group (gloo on CPU,
NCCL on CUDA), builds the same model from the same seed and wraps it in ``DistributedDataParallel``. Every step
all ranks draw the same global batch (the batch plan is seeded by epoch) and each trains on its share of the rows,
its loss weighted by its share of the batch's targets, so DDP's averaged gradient is the gradient of the global
batch's mean loss: the same optimisation as one process with that batch, up to float summation order (dropout
masks differ, since each rank draws its own). Validation and test cases are split across ranks and their ranks
gathered; rank 0 alone writes the run directory.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    """This process's place in the group: ``rank`` of ``world`` (a single process is rank 0 of 1)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def current(cls) -> "Distributed":
        """The initialised process group, or a single process."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over ranks, in place (returns it)."""
        if self.active:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def min_(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.active:
            dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return tensor

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any rank (so every rank takes the same branch)."""
        if not self.active:
            return flag
        t = torch.tensor([int(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())


def init_from_env(env: Mapping[str, str], device: str = "auto") -> Distributed:
    """Join the process group that ``torchrun`` describes in ``env`` (``WORLD_SIZE``, ``RANK``, ``MASTER_ADDR`` ...):
    NCCL when the run trains on CUDA, else gloo. A single process (no ``WORLD_SIZE`` or 1) joins nothing."""
    world = int(env.get("WORLD_SIZE", "1") or 1)
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return Distributed.current()
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed; multi-process training is not possible")
    cuda = torch.cuda.is_available() and device in ("auto", "cuda") or device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(int(env.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=30))
    return Distributed.current()
