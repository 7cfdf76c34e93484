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
    #: The key of :meth:`evaluate`'s output that picks the ``best/`` export (higher is better).
    selection_metric: str

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
    if name == "rs_clip":
        from rsgen.train.tasks.rs_clip import RSCLIPTask

        return RSCLIPTask(config, ctx)
    if name == "scene_classifier":
        from rsgen.train.tasks.scene_classifier import SceneClassifierTask

        return SceneClassifierTask(config, ctx)
    raise ValueError(f"unknown training task {name!r}")
