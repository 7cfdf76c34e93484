"""Exponential moving average (EMA) of a module's weights, for evaluation and export.

``train.ema_decay`` (0 or absent: off) turns it on for tasks that create one with
:meth:`EMA.from_config`; ``train.ema_start`` (default 0) is the first step whose update averages:
before it the average just follows the weights. After the update of step ``s >= ema_start``::

    average = decay * average + (1 - decay) * weights

The loop updates it after every training step, swaps the averaged weights in for validation and
the ``best/`` / ``final/`` exports, and stores it in the training checkpoint as ``ema.<name>``
tensors, so ``--resume`` replays it exactly. A checkpoint without them (written before EMA
existed, or by a run with EMA off) starts the average from the restored weights.

Only parameters that require gradients are averaged (frozen towers are not copied); buffers
(e.g. batch-norm statistics) stay those of the trained module.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from rsgen.errors import RsgenError

PREFIX = "ema."


class EMA:
    """An exponential moving average of ``module``'s trainable parameters (kept in float32)."""

    def __init__(self, module: nn.Module, decay: float, start_step: int = 0) -> None:
        if not 0.0 < decay < 1.0:
            raise RsgenError(f"train.ema_decay must be in (0, 1) (0 = off), not {decay}")
        self.module, self.decay, self.start_step = module, float(decay), int(start_step)
        self.params = {name: p for name, p in module.named_parameters() if p.requires_grad}
        self.average = {name: p.detach().float().clone() for name, p in self.params.items()}

    @classmethod
    def from_config(cls, module: nn.Module, train: dict[str, Any]) -> EMA | None:
        """An EMA per ``train.ema_decay`` / ``train.ema_start``, or None when the decay is 0 or absent."""
        decay = float(train.get("ema_decay") or 0.0)
        if decay == 0.0:
            return None
        return cls(module, decay, int(train.get("ema_start") or 0))

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the weights after step ``step`` (0-based); a copy before ``start_step``."""
        if step < self.start_step:
            self.reset()
            return
        for name, param in self.params.items():
            self.average[name].lerp_(param.detach().float(), 1.0 - self.decay)

    @torch.no_grad()
    def reset(self) -> None:
        """Restart the average from the module's current weights."""
        for name, param in self.params.items():
            self.average[name].copy_(param.detach())

    @contextmanager
    def averaged_weights(self) -> Iterator[nn.Module]:
        """Inside the block the module holds the averaged weights; its own are restored after
        (bit for bit: training continues as if nothing happened)."""
        with torch.no_grad():
            saved = {name: p.detach().clone() for name, p in self.params.items()}
            for name, param in self.params.items():
                param.copy_(self.average[name])
        try:
            yield self.module
        finally:
            with torch.no_grad():
                for name, param in self.params.items():
                    param.copy_(saved[name])

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {PREFIX + name: value for name, value in self.average.items()}

    @torch.no_grad()
    def load_state(self, tensors: dict[str, torch.Tensor]) -> bool:
        """Restore the average from checkpoint ``tensors``; returns False (and starts from the
        current weights) when they hold no average for this module."""
        if not all(PREFIX + name in tensors for name in self.average):
            self.reset()
            return False
        for name, value in self.average.items():
            saved = tensors[PREFIX + name]
            if saved.shape != value.shape:
                raise RsgenError(f"checkpoint EMA tensor {name!r} has shape {tuple(saved.shape)}")
            value.copy_(saved)
        return True
