"""Learning-rate schedules as pure functions of the step.

Nothing to checkpoint: the config decides the learning rate of every step, so a resumed run
may change its schedule with ``--set train.lr_milestones=[...]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def step_decay(base_lr: float, step: int, milestones: Sequence[int], gamma: float) -> float:
    """``base_lr`` times ``gamma`` for every milestone already reached (MultiStepLR semantics)."""
    return base_lr * gamma ** sum(step >= m for m in milestones)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
