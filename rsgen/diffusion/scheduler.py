"""The interface every noise scheduler offers, Gaussian or discrete.

A scheduler owns the diffusion *process* — the noise schedule, the forward process
q(x_t | x_0) and one reverse step — and nothing learned: networks live in :mod:`rsgen.models`
and only produce ``model_output``. Sampling with any scheduler is the same loop::

    x = scheduler.initial_sample(shape, generator=g)
    for t in scheduler.set_timesteps(50):
        x = scheduler.step(model(x, t), t, x, generator=g).prev_sample

and training is::

    batch = scheduler.training_batch(x0, generator=g)
    loss = scheduler.loss(model(batch.x_t, batch.t), batch)

Timesteps are integers in ``[0, num_train_timesteps)``; ``t = 0`` is the least noisy and the
step from the last timestep of a schedule returns the clean sample. Randomness comes only from
the ``torch.Generator`` passed in (drawn on the generator's device, then moved), so a seed gives
the same result on every device; ``generator=None`` falls back to torch's global RNG.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from rsgen.checkpoint import ComponentFiles
from rsgen.config import ComponentConfig

Timestep = int | Tensor


@dataclass
class StepOutput:
    """The result of one reverse step from ``t`` to the previous timestep of the schedule."""

    prev_sample: Tensor
    """x at the previous timestep (the clean sample after the last step)."""
    pred_original_sample: Tensor
    """The scheduler's estimate of x_0 at this step (for previews and guidance)."""


@dataclass
class TrainingBatch:
    """A noised training batch: feed ``x_t`` and ``t`` to the network, regress onto ``target``."""

    x0: Tensor
    x_t: Tensor
    t: Tensor
    """LongTensor of shape (B,): one timestep per sample."""
    target: Tensor
    """What the network should output (noise, x_0 or token ids, depending on the scheduler)."""


class Scheduler(ABC):
    """Base class of noise schedulers: built as ``SchedulerClass(config)``; only ``timesteps`` changes.

    Subclasses set ``config_class`` (a :class:`~rsgen.config.ComponentConfig` dataclass with a
    ``num_train_timesteps`` field) and implement the forward process (:meth:`add_noise`), the
    reverse step (:meth:`step`), the start of sampling (:meth:`initial_sample`) and the training
    pair (:meth:`training_batch`, :meth:`loss`). Tensors may have any shape whose first dimension
    is the batch — (B, C, H, W) images or (B, L) token sequences — on any device.
    """

    config_class: ClassVar[type[ComponentConfig]]

    def __init__(self, config: ComponentConfig) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.timesteps: Tensor = torch.empty(0, dtype=torch.long)
        self._prev_of: Tensor = torch.empty(0, dtype=torch.long)
        self.set_timesteps(self.num_train_timesteps)

    def component_files(self) -> ComponentFiles:
        """What a pipeline folder stores of this scheduler: its config, no tensors."""
        return self.config.NAME, {"scheduler": self.config.to_dict()}, None

    @property
    def num_train_timesteps(self) -> int:
        """T: the number of noise levels the network is trained on."""
        return int(self.config.num_train_timesteps)  # type: ignore[attr-defined]

    def set_timesteps(self, num_inference_steps: int) -> Tensor:
        """Choose the timesteps of sampling: ``num_inference_steps`` of them, descending.

        They run from ``T - 1`` down to ``0`` as evenly as integers allow, so the first step
        starts from pure noise and the last one ends on the clean sample. Stored in
        ``self.timesteps`` (a LongTensor on the CPU) and returned.
        """
        total = self.num_train_timesteps
        if isinstance(num_inference_steps, bool) or not isinstance(num_inference_steps, int):
            raise ValueError(f"num_inference_steps must be an integer, got {num_inference_steps!r}")
        if not 1 <= num_inference_steps <= total:
            raise ValueError(f"num_inference_steps must be in 1..{total}, got {num_inference_steps}")
        timesteps = torch.linspace(total - 1, 0, num_inference_steps, dtype=torch.float64).round().long()
        return self.set_custom_timesteps(timesteps)

    def set_custom_timesteps(self, timesteps: Tensor | list[int]) -> Tensor:
        """Sample over the given strictly descending timesteps instead (e.g. editing that starts part-way).

        Stored in ``self.timesteps`` and returned; the last step still returns the clean sample.
        """
        timesteps = torch.as_tensor(timesteps)
        if timesteps.numel() == 0:
            raise ValueError("timesteps must not be empty")
        timesteps = self._check_timesteps(timesteps).reshape(-1)
        if (timesteps[1:] >= timesteps[:-1]).any():
            raise ValueError(f"timesteps must be strictly descending, got {timesteps.tolist()}")
        self.timesteps = timesteps
        # _prev_of[t] is the timestep that follows t in this schedule, -1 after the last one,
        # -2 for timesteps that are not in it (so step() can tell a wrong t from the last one).
        self._prev_of = torch.full((self.num_train_timesteps,), -2, dtype=torch.long)
        self._prev_of[timesteps] = torch.cat([timesteps[1:], torch.tensor([-1])])
        return timesteps

    def previous_timestep(self, t: Timestep) -> Tensor:
        """The timestep after ``t`` in the current schedule (``-1`` when ``t`` is the last one)."""
        t = self._check_timesteps(t)
        prev = self._prev_of[t]
        if (prev == -2).any():
            raise ValueError(
                f"timestep(s) {t[prev == -2].tolist() if t.ndim else int(t)} are not in the current "
                "schedule; step() takes the timesteps that set_timesteps() returned"
            )
        return prev

    def sample_timesteps(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Uniform training timesteps, a LongTensor of shape (batch_size,)."""
        rng_device = generator.device if generator is not None else device
        t = torch.randint(0, self.num_train_timesteps, (batch_size,), generator=generator, device=rng_device)
        return t.to(device) if device is not None else t

    def sample(
        self,
        denoise: Callable[[Tensor, Tensor], Tensor],
        shape: tuple[int, ...],
        num_inference_steps: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Run the whole reverse process; ``denoise(x_t, t)`` returns the network's output at ``t`` (0-d)."""
        x = self.initial_sample(shape, generator=generator, device=device, dtype=dtype)
        for t in self.set_timesteps(num_inference_steps):
            x = self.step(denoise(x, t), t, x, generator=generator).prev_sample
        return x

    @abstractmethod
    def add_noise(self, x0: Tensor, t: Timestep, generator: torch.Generator | None = None) -> Tensor:
        """Draw x_t ~ q(x_t | x_0): the forward process, in one jump from the clean sample.

        ``t`` is an int, a 0-d tensor (the same level for the whole batch) or a LongTensor of
        shape (B,) (one per sample). Returns a tensor shaped and typed like ``x0``.
        """

    @abstractmethod
    def step(
        self, model_output: Tensor, t: Timestep, x_t: Tensor, generator: torch.Generator | None = None
    ) -> StepOutput:
        """One reverse step: from x_t and the network's output at ``t`` to x at the previous timestep.

        ``t`` must be one of ``self.timesteps`` (set by :meth:`set_timesteps`); the previous
        timestep is the next entry there, so strided schedules need no extra argument.
        """

    @abstractmethod
    def initial_sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """x_T, where sampling starts (Gaussian noise, or all-masked tokens for a discrete scheduler)."""

    @abstractmethod
    def training_batch(
        self, x0: Tensor, generator: torch.Generator | None = None, t: Timestep | None = None
    ) -> TrainingBatch:
        """Noise a clean batch at uniform random timesteps (or the given ``t``) and name the target."""

    @abstractmethod
    def loss(self, model_output: Tensor, batch: TrainingBatch) -> Tensor:
        """The scalar training loss of the network's output on ``batch``."""

    def _check_timesteps(self, t: Timestep) -> Tensor:
        """``t`` as a CPU LongTensor (0-d or 1-d) after checking that it is an integer in range."""
        if isinstance(t, bool):
            raise ValueError(f"timestep must be an integer, got {t!r}")
        t = torch.as_tensor(t)
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
            raise ValueError(f"timesteps must be integers, got dtype {t.dtype}")
        if t.ndim > 1:
            raise ValueError(f"timesteps must be a scalar or of shape (B,), got shape {tuple(t.shape)}")
        t = t.to("cpu", torch.long)
        if t.numel() and (t.min() < 0 or t.max() >= self.num_train_timesteps):
            raise ValueError(f"timesteps must be in 0..{self.num_train_timesteps - 1}, got {t.tolist()}")
        return t

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"


def randn(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device | str | None,
    dtype: torch.dtype | None,
) -> Tensor:
    """N(0, 1) noise drawn on the generator's device in float32, then moved (same on every device)."""
    rng_device = generator.device if generator is not None else device
    noise = torch.randn(shape, generator=generator, device=rng_device, dtype=torch.float32)
    return noise.to(device=device, dtype=dtype)


def per_sample(values: Tensor, t: Tensor, like: Tensor, dtype: torch.dtype) -> Tensor:
    """``values[t]`` shaped to broadcast against ``like``: 0-d for a shared t, else (B, 1, ..., 1)."""
    picked = values[t].to(device=like.device, dtype=dtype)
    if t.ndim == 0:
        return picked
    if t.shape[0] != like.shape[0]:
        raise ValueError(f"{t.shape[0]} timesteps for a batch of {like.shape[0]}")
    return picked.reshape(-1, *([1] * (like.ndim - 1)))
