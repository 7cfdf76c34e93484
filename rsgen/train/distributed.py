"""Process-group setup for single-process and ``torchrun`` training (gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from rsgen.device import pick_device


@dataclass
class DistContext:
    """Where this process runs: its rank, the world size and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    progress: bool = True
    """Whether progress bars were asked for (``--quiet`` turns them off)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def show_progress(self) -> bool:
        """Progress bars on: asked for, and this is the main process."""
        return self.progress and self.is_main

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def wrap(self, module: torch.nn.Module, **ddp_options: object) -> torch.nn.Module:
        """``module`` itself in one process; under torchrun a ``DistributedDataParallel`` around it
        (on this rank's GPU, if any), which averages gradients over the ranks in ``backward``.

        Train through the returned module; keep the bare one for checkpoints, evaluation, EMA
        and export (same parameters, no ``module.`` prefix in their names).
        """
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids, **ddp_options)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_gather_floats(self, values: list[float]) -> list[list[float]]:
        """Every rank's ``values`` (float64), in rank order."""
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        if not self.distributed:
            return [tensor.tolist()]
        gathered = [torch.zeros_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(gathered, tensor)
        return [t.tolist() for t in gathered]


def init_distributed(device: str | None = None) -> DistContext:
    """Join the process group when launched by ``torchrun`` (WORLD_SIZE > 1), else run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = pick_device(device)
    if chosen.type == "cuda":
        chosen = torch.device("cuda", local_rank if chosen.index is None else chosen.index)
        torch.cuda.set_device(chosen)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank, chosen)


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_torchrun_worker(code: int = 0) -> None:
    """End a ``torchrun`` worker at once (streams flushed), skipping interpreter teardown.

    ``DistributedDataParallel`` leaves a C++ reference to the gloo process group behind, so its
    worker threads outlive ``destroy_process_group``, and tearing them down at interpreter exit
    sometimes aborts the process ("terminate called without an active exception": 2 runs in 80
    of a bare DDP script with torch 2.13, and a rank of a finished run in CI). Every file of the
    run is written and closed by now. Does nothing outside ``torchrun``.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
