"""What the training loop asks of a task, and the helpers every task shares.

A task owns its models, losses, data and optimisers; :mod:`rsgen.train.loop` owns the rest
(seeding, logging, checkpoints, validation, ``best/`` and ``final/`` exports, EMA updates,
stopping). Tasks call :func:`optimizer_step` for every optimiser update (so ``train.grad_clip``
applies everywhere), wrap modules for DDP with :meth:`DistContext.wrap
<rsgen.train.distributed.DistContext.wrap>`, and turn on an exponential moving average of a
module's weights with one line, ``self.ema = EMA.from_config(module, config["train"])``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, Protocol

import torch

from rsgen.checkpoint import optimizer_from_tensors, optimizer_to_tensors
from rsgen.errors import RsgenError
from rsgen.models.pretrained import PretrainedModel
from rsgen.train.ema import EMA

SelectionMode = Literal["max", "min"]


class TrainTask(Protocol):
    """One kind of training run; built by :func:`rsgen.train.tasks.build_task` as
    ``TaskClass(config, ctx)`` after the loop seeded torch with the run seed."""

    #: Number of training steps of the whole run (``--max-steps`` may stop earlier).
    total_steps: int
    #: The key of :meth:`evaluate`'s output that picks the ``best/`` export ...
    selection_metric: str
    #: ... and whether higher (``"max"``: PSNR gain, recall) or lower (``"min"``: FD) is better.
    selection_mode: SelectionMode
    #: Moving average of a module's weights, or None. The loop updates it after every step,
    #: evaluates and exports with the averaged weights and keeps it in the checkpoint.
    ema: EMA | None

    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step on the batch of ``step`` (which depends only on seed and step,
        so ``--resume`` replays exactly); returns the numbers to log (losses, ``lr``...)."""
        ...

    def evaluate(self) -> dict[str, float]:
        """Validation numbers, keys prefixed ``val_``; ``{}`` when the run has no validation data.
        Runs on rank 0 only (no collectives)."""
        ...

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything to resume exactly (weights, optimiser state): named tensors + JSON meta.
        Tensor names must not start with ``ema.`` (the loop's)."""
        ...

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Inverse of :meth:`state_tensors` (``tensors`` may hold further keys: ignore them)."""
        ...

    def weight_checksum(self) -> float:
        """A float fingerprint of the trained weights, compared across ranks at the end."""
        ...

    def export(self, directory: str | Path, extra: dict[str, Any]) -> None:
        """Save the trained model as a pretrained folder with ``extra`` in its ``config.json``
        (the loop reads ``training.<selection_metric>`` back from ``best/config.json``)."""
        ...


def selection_mode_of(task: object) -> SelectionMode:
    """The task's ``selection_mode`` (``"max"`` when it declares none), checked."""
    mode = getattr(task, "selection_mode", "max")
    if mode not in ("max", "min"):
        raise RsgenError(f"selection_mode must be 'max' or 'min', not {mode!r}")
    return mode


def grad_clip_of(train: dict[str, Any]) -> float:
    """``train.grad_clip``: the maximum global gradient norm, 0 (or absent / null) for none."""
    value = float(train.get("grad_clip") or 0.0)
    if value < 0:
        raise RsgenError(f"train.grad_clip must be >= 0 (0 = off), not {value}")
    return value


def optimizer_step(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float = 0.0
) -> float | None:
    """``zero_grad``, ``backward``, clip the global gradient norm of the optimiser's parameters
    to ``grad_clip`` (when > 0), ``step``. Returns the norm before clipping, or None when not
    clipping. Under DDP the gradients are already averaged over ranks when they are clipped, so
    every rank clips alike."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = None
    if grad_clip > 0:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip))
    optimizer.step()
    return norm


def weight_checksum(tensors: Iterable[torch.Tensor]) -> float:
    """A float fingerprint of weights (position-weighted sum), to compare ranks at the end."""
    return float(sum((t.detach().double() * (i + 1)).sum() for i, t in enumerate(tensors)))


class SingleModelState:
    """Checkpoint state, fingerprint and export of a task that trains one network
    (``self.model``, a :class:`PretrainedModel`) with one optimiser (``self.optimizer``)."""

    model: PretrainedModel
    optimizer: torch.optim.Optimizer

    def state_tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {f"model.{k}": v for k, v in self.model.saved_state_dict().items()}
        opt, groups = optimizer_to_tensors(self.optimizer, "opt")
        tensors.update(opt)
        return tensors, {"groups": groups}

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        state = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
        self.model.load_saved_state(state, "checkpoint")
        optimizer_from_tensors(self.optimizer, tensors, "opt", meta["groups"])

    @torch.no_grad()
    def weight_checksum(self) -> float:
        return weight_checksum(self.model.saved_state_dict().values())

    def export(self, directory: str | Path, extra: dict[str, Any]) -> None:
        self.model.save_pretrained(directory, extra)
