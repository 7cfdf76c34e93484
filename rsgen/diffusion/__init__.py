"""Noise schedulers: the diffusion process, apart from the networks that learn to reverse it.

One file per scheduler; :func:`build_scheduler` rebuilds one from the ``{"name": ..., ...}``
dict that a saved pipeline stores. The interface is :class:`Scheduler` (docs/diffusion.md).
"""

from __future__ import annotations

from typing import Any

from rsgen.diffusion.gaussian import GaussianScheduler, GaussianSchedulerConfig
from rsgen.diffusion.multiscale import MultiScaleScheduler, MultiScaleSchedulerConfig
from rsgen.diffusion.scheduler import Scheduler, StepOutput, TrainingBatch
from rsgen.diffusion.vq_diffusion import VQDiffusionScheduler, VQDiffusionSchedulerConfig

SCHEDULERS: dict[str, type[Scheduler]] = {
    cls.config_class.NAME: cls for cls in (GaussianScheduler, MultiScaleScheduler, VQDiffusionScheduler)
}


def build_scheduler(config: dict[str, Any]) -> Scheduler:
    """Build a registered scheduler from a config dict whose ``name`` picks the class.

    Raises ValueError for an unknown name, an unknown option or an invalid value.
    """
    if not isinstance(config, dict):
        raise ValueError(f"scheduler config must be a mapping, got {type(config).__name__}")
    name = config.get("name")
    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler name {name!r}; known: {', '.join(SCHEDULERS)}")
    cls = SCHEDULERS[name]
    return cls(cls.config_class.from_dict(config))


__all__ = [
    "SCHEDULERS",
    "GaussianScheduler",
    "GaussianSchedulerConfig",
    "MultiScaleScheduler",
    "MultiScaleSchedulerConfig",
    "Scheduler",
    "StepOutput",
    "TrainingBatch",
    "VQDiffusionScheduler",
    "VQDiffusionSchedulerConfig",
    "build_scheduler",
]
