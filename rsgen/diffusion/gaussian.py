"""Gaussian diffusion (DDPM, Ho et al. 2020) with DDPM ancestral and DDIM (Song et al. 2021) sampling.

Forward process: x_t = sqrt(ab_t) * x_0 + sqrt(1 - ab_t) * eps with ab_t = prod_{s<=t} (1 - beta_s),
for t in 0..T-1. The network predicts either eps (``prediction_type="epsilon"``) or x_0
(``"sample"``); every step first turns its output into the pair (x_0, eps) and then moves to
the previous timestep of the schedule, which may skip many training timesteps.

The multi-scale single-image editing scheduler builds on this class (its forward process mixes
a blurred image into x_0 before noising), so the pieces are separate overridable methods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from rsgen.config import ComponentConfig
from rsgen.diffusion.scheduler import Scheduler, StepOutput, Timestep, TrainingBatch, per_sample, randn

BETA_SCHEDULES = ("linear", "cosine")
PREDICTION_TYPES = ("epsilon", "sample")
SAMPLERS = ("ddpm", "ddim")
MAX_BETA = 0.999  # the cosine schedule's last betas would reach 1 (x_T independent of x_0 and a 0/0 in DDIM)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass
class GaussianSchedulerConfig(ComponentConfig):
    """Hyper-parameters of :class:`GaussianScheduler` (stored as ``{"name": "gaussian", ...}``)."""

    NAME: ClassVar[str] = "gaussian"

    num_train_timesteps: int = 1000
    beta_schedule: str = "linear"
    """``linear`` (DDPM: beta from beta_start to beta_end) or ``cosine`` (Nichol & Dhariwal 2021)."""
    beta_start: float = 1e-4
    beta_end: float = 0.02
    cosine_offset: float = 0.008
    """The cosine schedule's small offset s, which keeps beta_0 from being vanishingly small."""
    prediction_type: str = "epsilon"
    """What the network predicts: ``epsilon`` (the noise) or ``sample`` (x_0)."""
    sampler: str = "ddpm"
    """``ddpm`` (ancestral, stochastic) or ``ddim`` (deterministic when eta = 0)."""
    eta: float = 0.0
    """DDIM only: 0 is deterministic, 1 matches the DDPM posterior variance."""
    clip_sample: float | None = None
    """Clamp the predicted x_0 to [-clip_sample, clip_sample] at each step; None leaves it alone."""

    def __post_init__(self) -> None:
        choices = {"beta_schedule": BETA_SCHEDULES, "prediction_type": PREDICTION_TYPES, "sampler": SAMPLERS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{self.NAME}: {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if not isinstance(self.num_train_timesteps, int) or isinstance(self.num_train_timesteps, bool):
            raise ValueError(
                f"{self.NAME}: num_train_timesteps must be an integer, got {self.num_train_timesteps!r}"
            )
        if self.num_train_timesteps < 1:
            raise ValueError(
                f"{self.NAME}: num_train_timesteps must be at least 1, got {self.num_train_timesteps}"
            )
        for name in ("beta_start", "beta_end", "cosine_offset", "eta"):
            if not _is_number(getattr(self, name)):
                raise ValueError(f"{self.NAME}: {name} must be a number, got {getattr(self, name)!r}")
        if not 0 < self.beta_start <= self.beta_end < 1:
            raise ValueError(
                f"{self.NAME}: need 0 < beta_start <= beta_end < 1, got {self.beta_start}, {self.beta_end}"
            )
        if self.cosine_offset < 0 or self.eta < 0:
            raise ValueError(f"{self.NAME}: cosine_offset and eta must be >= 0")
        if self.clip_sample is not None and not (_is_number(self.clip_sample) and self.clip_sample > 0):
            raise ValueError(
                f"{self.NAME}: clip_sample must be a positive number or null, got {self.clip_sample!r}"
            )


def linear_betas(num_train_timesteps: int, beta_start: float, beta_end: float) -> Tensor:
    """DDPM's linear schedule (float64). The defaults 1e-4..0.02 are meant for T = 1000."""
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)


def cosine_alpha_bar(u: Tensor, offset: float) -> Tensor:
    """The cosine schedule's unnormalised ab at time u in [0, 1]: cos^2((u + s) / (1 + s) * pi / 2)."""
    return torch.cos((u + offset) / (1 + offset) * math.pi / 2) ** 2


def cosine_betas(num_train_timesteps: int, offset: float = 0.008) -> Tensor:
    """Betas whose cumulative product is ab_t = f((t + 1) / T) / f(0) for the cosine f (float64).

    Betas are capped at ``MAX_BETA``, which only the last one reaches.
    """
    u = torch.arange(num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
    f = cosine_alpha_bar(u, offset)
    return (1 - f[1:] / f[:-1]).clamp(max=MAX_BETA)


def make_betas(config: GaussianSchedulerConfig) -> Tensor:
    """The per-step betas of a config, float64 on the CPU."""
    if config.beta_schedule == "cosine":
        return cosine_betas(config.num_train_timesteps, config.cosine_offset)
    return linear_betas(config.num_train_timesteps, config.beta_start, config.beta_end)


def _compute_dtype(x: Tensor) -> torch.dtype:
    """float64 stays float64; everything else (fp16, bf16, fp32, ints) is computed in float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class GaussianScheduler(Scheduler):
    """DDPM forward process; DDPM ancestral or DDIM reverse steps; epsilon- or x_0-prediction.

    Attributes ``betas`` and ``alphas_cumprod`` (ab_t) are float64 CPU tensors of length T.
    """

    config_class = GaussianSchedulerConfig
    config: GaussianSchedulerConfig

    def __init__(self, config: GaussianSchedulerConfig) -> None:
        super().__init__(config)
        self.betas = make_betas(config)
        self.alphas_cumprod = torch.cumprod(1 - self.betas, dim=0)
        # ab at index prev + 1, so that the step after the last timestep (prev = -1) sees ab = 1.
        self._alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod])

    def add_noise(
        self,
        x0: Tensor,
        t: Timestep,
        generator: torch.Generator | None = None,
        *,
        noise: Tensor | None = None,
    ) -> Tensor:
        """x_t = sqrt(ab_t) x_0 + sqrt(1 - ab_t) noise; the noise is drawn from ``generator`` unless given."""
        t = self._check_timesteps(t)
        if noise is None:
            noise = randn(tuple(x0.shape), generator, x0.device, x0.dtype)
        elif noise.shape != x0.shape:
            raise ValueError(f"noise shape {tuple(noise.shape)} differs from x0 shape {tuple(x0.shape)}")
        dtype = _compute_dtype(x0)
        ab = per_sample(self.alphas_cumprod, t, x0, dtype)
        x_t = ab.sqrt() * x0.to(dtype) + (1 - ab).sqrt() * noise.to(dtype)
        return x_t.to(x0.dtype)

    def predict_x0_and_noise(self, model_output: Tensor, t: Timestep, x_t: Tensor) -> tuple[Tensor, Tensor]:
        """The network output at ``t`` as the pair (x_0, eps) that reproduces x_t, after ``clip_sample``.

        Computed in float32 (float64 for float64 inputs); guidance can adjust either before a step.
        """
        t = self._check_timesteps(t)
        dtype = _compute_dtype(x_t)
        ab = per_sample(self.alphas_cumprod, t, x_t, dtype)
        x_t, model_output = x_t.to(dtype), model_output.to(dtype)
        if self.config.prediction_type == "epsilon":
            eps = model_output
            x0 = (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()
        else:
            x0 = model_output
            eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
        if self.config.clip_sample is not None:
            x0 = x0.clamp(-self.config.clip_sample, self.config.clip_sample)
            # keep (x0, eps) consistent with x_t, so the step moves along the clipped estimate
            eps = (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()
        return x0, eps

    def step(
        self, model_output: Tensor, t: Timestep, x_t: Tensor, generator: torch.Generator | None = None
    ) -> StepOutput:
        """A DDPM ancestral or DDIM step (per ``config.sampler``) from ``t`` to the previous timestep."""
        if model_output.shape != x_t.shape:
            raise ValueError(
                f"model output shape {tuple(model_output.shape)} differs from x_t {tuple(x_t.shape)}"
            )
        t = self._check_timesteps(t)
        prev = self.previous_timestep(t)
        dtype = _compute_dtype(x_t)
        ab_t = per_sample(self.alphas_cumprod, t, x_t, dtype)
        ab_prev = per_sample(self._alphas_cumprod_prev, prev + 1, x_t, dtype)
        x0, eps = self.predict_x0_and_noise(model_output, t, x_t)
        if self.config.sampler == "ddpm":
            mean, std = self.ddpm_posterior(x0, x_t.to(dtype), ab_t, ab_prev)
        else:
            mean, std = self.ddim_mean_std(x0, eps, ab_t, ab_prev, self.config.eta)
        prev_sample = mean
        if bool((prev >= 0).any()) and (self.config.sampler == "ddpm" or self.config.eta > 0):
            prev_sample = mean + std * randn(tuple(x_t.shape), generator, x_t.device, dtype)
        return StepOutput(prev_sample=prev_sample.to(x_t.dtype), pred_original_sample=x0.to(x_t.dtype))

    @staticmethod
    def ddpm_posterior(x0: Tensor, x_t: Tensor, ab_t: Tensor, ab_prev: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std of q(x_prev | x_t, x_0), with beta = 1 - ab_t / ab_prev spanning a strided step."""
        beta = 1 - ab_t / ab_prev
        mean = (ab_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - ab_prev) * x_t) / (1 - ab_t)
        std = ((1 - ab_prev) / (1 - ab_t) * beta).sqrt()
        return mean, std

    @staticmethod
    def ddim_mean_std(
        x0: Tensor, eps: Tensor, ab_t: Tensor, ab_prev: Tensor, eta: float
    ) -> tuple[Tensor, Tensor]:
        """DDIM: x_prev = sqrt(ab_prev) x_0 + sqrt(1 - ab_prev - sigma^2) eps + sigma z (sigma ~ eta)."""
        sigma = eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)).sqrt()
        direction = (1 - ab_prev - sigma**2).clamp(min=0).sqrt()
        return ab_prev.sqrt() * x0 + direction * eps, sigma

    def initial_sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """Standard normal noise (x_T), float32 unless ``dtype`` says otherwise."""
        return randn(tuple(shape), generator, device, dtype or torch.float32)

    def training_batch(
        self, x0: Tensor, generator: torch.Generator | None = None, t: Timestep | None = None
    ) -> TrainingBatch:
        """x_t at uniform random timesteps; the target is the noise or x_0, per ``prediction_type``."""
        batch_size = x0.shape[0]
        if t is None:
            t = self.sample_timesteps(batch_size, generator)
        t = self._check_timesteps(t).expand(batch_size).clone()
        noise = randn(tuple(x0.shape), generator, x0.device, x0.dtype)
        x_t = self.add_noise(x0, t, noise=noise)
        target = noise if self.config.prediction_type == "epsilon" else x0
        return TrainingBatch(x0=x0, x_t=x_t, t=t.to(x0.device), target=target)

    def loss(self, model_output: Tensor, batch: TrainingBatch) -> Tensor:
        """Mean squared error to the target (DDPM's simplified objective), computed in float32."""
        return F.mse_loss(model_output.float(), batch.target.float())
