"""One process or many: the same trainer under `torchrun` (DDP), NCCL on GPUs, gloo on CPUs.

`torchrun` sets RANK, WORLD_SIZE and LOCAL_RANK; without them the trainer runs as a
world of one. Each rank builds its own micro-batches of every step (see dataset.py),
so no data is sent between processes, only gradients and BatchNorm statistics.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from spkverif.models.files import resolve_device


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor /= self.world_size
        return tensor

    def all_true(self, flag: bool) -> bool:
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item() > 0.5)

    def close(self) -> None:
        shutdown_distributed()


def shutdown_distributed() -> None:
    """Destroy the process group, if any, once nothing else holds it.

    Objects holding the group (a DDP wrapper's reducer, pending gloo work) are
    collected first: a gloo group torn down by the interpreter at exit, while its
    worker threads still hold tensors, aborts the process (SIGABRT).
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()


def setup_distributed(device_name: str) -> DistributedContext:
    """Join the process group torchrun describes, if any, and pick this rank's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, local_rank, device)
