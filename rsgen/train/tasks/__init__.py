"""Training tasks: what one training step means for a kind of model.

The loop in :mod:`rsgen.train.loop` is shared; a task supplies batches, losses, state to
checkpoint, validation and export. ``task:`` in a config picks the task.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from rsgen.train.distributed import DistContext


class TrainTask(Protocol):
    total_steps: int

    def train_step(self, step: int) -> dict[str, float]: ...

    def evaluate(self) -> dict[str, float]: ...

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]: ...

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None: ...

    def weight_checksum(self) -> float: ...

    def export(self, directory, extra: dict[str, Any]) -> None: ...


def build_task(config: dict[str, Any], ctx: DistContext) -> TrainTask:
    """Instantiate the task named by ``config['task']``."""
    name = config.get("task")
    if name == "super_resolution":
        from rsgen.train.tasks.super_resolution import SuperResolutionTask

        return SuperResolutionTask(config, ctx)
    raise ValueError(f"unknown training task {name!r}")
