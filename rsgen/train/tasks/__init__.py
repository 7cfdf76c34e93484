"""Training tasks: what one training step means for a kind of model.

The loop in :mod:`rsgen.train.loop` is shared; a task (the protocol :class:`TrainTask` in
:mod:`rsgen.train.tasks.base`) supplies batches, losses, state to checkpoint, validation and
export. ``task:`` in a config names the task.

The registry :data:`TASKS` maps each name to ``"module:Class"``, imported only when a run asks
for that task (so ``rsgen --help`` imports no model code). A new task is one line in the table;
code outside the package (a plugin, a test) adds its own with :func:`register_task`.
"""

from __future__ import annotations

import importlib
from typing import Any

from rsgen.errors import RsgenError
from rsgen.train.distributed import DistContext
from rsgen.train.tasks.base import TrainTask

__all__ = ["TASKS", "TrainTask", "build_task", "register_task", "task_class"]

#: Task name (``task:`` in a config) -> ``"module:Class"`` or the class itself.
TASKS: dict[str, str | type] = {
    "super_resolution": "rsgen.train.tasks.super_resolution:SuperResolutionTask",
    "rs_clip": "rsgen.train.tasks.rs_clip:RSCLIPTask",
    "scene_classifier": "rsgen.train.tasks.scene_classifier:SceneClassifierTask",
    "vq_tokenizer": "rsgen.train.tasks.vq_tokenizer:VQTokenizerTask",
    "rsvq": "rsgen.train.tasks.rsvq:RSVQTask",
    "single_image": "rsgen.train.tasks.single_image:SingleImageTask",
}


def register_task(name: str, target: str | type) -> None:
    """Make ``task: name`` build ``target`` (a class, or ``"module:Class"`` imported on use).
    Registering a name again with a different target is an error."""
    if name in TASKS and TASKS[name] != target:
        raise ValueError(f"training task {name!r} is already registered ({TASKS[name]!r})")
    TASKS[name] = target


def task_class(name: Any) -> type:
    """The class registered under ``name``; a one-line :class:`RsgenError` naming the known
    tasks when there is none (a typo in a config file)."""
    target = TASKS.get(name) if isinstance(name, str) else None
    if target is None:
        raise RsgenError(f"unknown training task {name!r} (known: {', '.join(sorted(TASKS))})")
    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        target = getattr(importlib.import_module(module), attribute)
    return target


def build_task(config: dict[str, Any], ctx: DistContext) -> TrainTask:
    """Instantiate the task named by ``config['task']``."""
    return task_class(config.get("task"))(config, ctx)
