"""Learning-rate schedules as pure functions of the step.

Nothing to checkpoint: the config decides the learning rate of every step, so a resumed run
may change its schedule with ``--set train.lr_milestones=[...]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def step_decay(base_lr: float, step: int, milestones: Sequence[int], gamma: float) -> float:
    """``base_lr`` times ``gamma`` for every milestone already reached (MultiStepLR semantics)."""
    return base_lr * gamma ** sum(step >= m for m in milestones)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def warmup_cosine(
    base_lr: float, step: int, warmup_steps: int, total_steps: int, final_ratio: float = 0.0
) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``final_ratio * base_lr``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return base_lr * (final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))
