"""Multi-scale Gaussian diffusion on one image's pyramid (SinDDM, Kulikov et al., ICML 2023),
the generative half of text-guided single-image editing.

The image is a pyramid x^0 (coarsest) ... x^{N-1} (the image), and x̃^s = up(x^{s-1}) is the
blurry version of scale s. At scale s > 0 the forward process noises a mix of the sharp and
the blurry image (the paper's Eq. 4)::

    x_t^s = sqrt(ab_t) [γ_t^s x̃^s + (1 - γ_t^s) x^s] + sqrt(1 - ab_t) ε

so that at large t the clean part is the blurry image, which sampling gets from the scale
below. γ_t^s grows with the relative noise level σ_t = sqrt((1 - ab_t) / ab_t) and reaches 1
where σ_t covers the detail that blurring removed: γ_t^s = min(1, σ_t / (k · e_s)), with e_s
the RMSE between x^s and x̃^s (``blur_errors``) and k = ``start_factor``. Sampling a scale
s > 0 starts there, at T_s (the first t with γ = 1), from x̃^s noised to T_s, and takes
deterministic DDIM-like steps that remove the blur along with the noise (Algorithm 2);
scale 0 is plain DDPM from pure noise. Guidance edits the clean estimate between
:meth:`predict_clean` and :meth:`step_from_clean`; :meth:`step` is the two without guidance.

How this differs from SinDDM's code, and why, is in docs/editing.md (the blur error is a
plain RMSE in [-1, 1] units, not a norm divided by the pixel count).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from rsgen.diffusion.gaussian import GaussianScheduler, GaussianSchedulerConfig, _compute_dtype, _is_number
from rsgen.diffusion.scheduler import StepOutput, Timestep, TrainingBatch, per_sample, randn


@dataclass
class MultiScaleSchedulerConfig(GaussianSchedulerConfig):
    """Hyper-parameters of :class:`MultiScaleScheduler` (``{"name": "multiscale", ...}``)."""

    NAME: ClassVar[str] = "multiscale"

    num_train_timesteps: int = 100
    beta_schedule: str = "cosine"
    blur_errors: list[float] = field(default_factory=list)
    """e_s for s = 1..N-1: RMSE in [-1, 1] units between x^s and up(x^{s-1}); N - 1 entries."""
    start_factor: float = 1.0
    """k: a scale s > 0 starts where the relative noise σ_t first reaches k · e_s."""
    gamma_max: float = 0.55
    """Sampling divides by 1 - γ to recover x̂_0; SinDDM caps γ there at 0.55 (a larger γ
    amplifies the network's error on the sharp part)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.blur_errors, list) or not all(
            _is_number(e) and e > 0 for e in self.blur_errors
        ):
            raise ValueError(f"{self.NAME}: blur_errors must be a list of positive numbers")
        if not (_is_number(self.start_factor) and self.start_factor > 0):
            raise ValueError(f"{self.NAME}: start_factor must be > 0, got {self.start_factor!r}")
        if not (_is_number(self.gamma_max) and 0 <= self.gamma_max < 1):
            raise ValueError(f"{self.NAME}: gamma_max must be in [0, 1), got {self.gamma_max!r}")


class MultiScaleScheduler(GaussianScheduler):
    """SinDDM's multi-scale diffusion: DDPM at the coarsest scale, blur-mixing DDIM above it.

    ``scale`` is the pyramid level (0 = coarsest); ``blurry`` is x̃^s, the upsampled result of
    the scale below, required for every ``scale > 0`` and shaped like the sample.
    """

    config_class = MultiScaleSchedulerConfig
    config: MultiScaleSchedulerConfig

    def __init__(self, config: MultiScaleSchedulerConfig) -> None:
        super().__init__(config)
        self.relative_noise = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()
        self._gammas = [torch.zeros_like(self.alphas_cumprod)] + [
            (self.relative_noise / (config.start_factor * e)).clamp(max=1.0) for e in config.blur_errors
        ]

    @property
    def num_scales(self) -> int:
        """N: the pyramid levels this schedule was made for."""
        return len(self.config.blur_errors) + 1

    def gammas(self, scale: int) -> Tensor:
        """γ_t^s for every t (float64, zeros at scale 0)."""
        return self._gammas[self._check_scale(scale)]

    def start_timestep(self, scale: int) -> int:
        """T_s: where sampling of ``scale`` starts (T - 1 at scale 0; the first t with γ = 1 above)."""
        gammas = self.gammas(scale)
        if scale == 0 or not bool((gammas >= 1).any()):
            return self.num_train_timesteps - 1
        return int(torch.nonzero(gammas >= 1)[0])

    def set_scale_timesteps(self, scale: int, num_steps: int, start: int | None = None) -> Tensor:
        """Sampling timesteps of ``scale``: about ``num_steps`` of them from ``start`` (default
        :meth:`start_timestep`) down to 0, stored in ``.timesteps`` and returned."""
        start = self.start_timestep(scale) if start is None else int(start)
        if not 0 <= start < self.num_train_timesteps:
            raise ValueError(f"start must be in 0..{self.num_train_timesteps - 1}, got {start}")
        if num_steps < 1:
            raise ValueError(f"num_steps must be at least 1, got {num_steps}")
        count = min(int(num_steps), start + 1)
        timesteps = torch.linspace(start, 0, count, dtype=torch.float64).round().long().unique_consecutive()
        return self.set_custom_timesteps(timesteps)

    def mix(self, x0: Tensor, blurry: Tensor | None, t: Timestep, scale: int) -> Tensor:
        """γ_t x̃ + (1 - γ_t) x_0: the clean part of x_t at ``scale`` (``x0`` itself at scale 0)."""
        if scale == 0:
            return x0
        blurry = self._check_blurry(blurry, x0, scale)
        gamma = per_sample(self.gammas(scale), self._check_timesteps(t), x0, _compute_dtype(x0))
        return (gamma * blurry.to(gamma.dtype) + (1 - gamma) * x0.to(gamma.dtype)).to(x0.dtype)

    def start_sample(
        self,
        scale: int,
        shape: tuple[int, ...],
        blurry: Tensor | None = None,
        generator: torch.Generator | None = None,
        start: int | None = None,
    ) -> Tensor:
        """Where sampling of ``scale`` begins: pure noise at scale 0, else ``blurry`` noised to
        ``start`` (default :meth:`start_timestep`), the first entry of the scale's timesteps."""
        if scale == 0:
            device = blurry.device if blurry is not None else None
            return self.initial_sample(shape, generator, device)
        blurry = self._check_blurry(blurry, None, scale)
        start = self.start_timestep(scale) if start is None else start
        return self.add_noise(blurry, start, generator)

    def predict_clean(
        self, model_output: Tensor, t: Timestep, x_t: Tensor, scale: int, blurry: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """(x̂_0, ε̂) at ``t``: the sharp image the network's noise estimate implies. Above
        scale 0 the blurry share γ_t x̃ is taken out of the estimated clean mix (γ ≤ gamma_max)."""
        mixed, eps = self.predict_x0_and_noise(model_output, t, x_t)
        if scale == 0:
            return mixed, eps
        blurry = self._check_blurry(blurry, x_t, scale).to(mixed.dtype)
        gamma = per_sample(self.gammas(scale), self._check_timesteps(t), x_t, mixed.dtype)
        gamma = gamma.clamp(max=self.config.gamma_max)
        return (mixed - gamma * blurry) / (1 - gamma), eps

    def step_from_clean(
        self,
        x0: Tensor,
        eps: Tensor,
        t: Timestep,
        x_t: Tensor,
        scale: int,
        blurry: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """x at the previous timestep of the schedule, from a (possibly guided) x̂_0 and ε̂.

        Scale 0: a DDPM ancestral step. Above: deterministic, x_prev = sqrt(ab_prev) ·
        [γ_prev x̃ + (1 - γ_prev) x̂_0] + sqrt(1 - ab_prev) ε̂. After the last timestep: x̂_0.
        """
        t = self._check_timesteps(t)
        prev = self.previous_timestep(t)
        dtype = _compute_dtype(x_t)
        x0, eps = x0.to(dtype), eps.to(dtype)
        if bool((prev < 0).all()):
            return x0.to(x_t.dtype)
        ab_t = per_sample(self.alphas_cumprod, t, x_t, dtype)
        ab_prev = per_sample(self._alphas_cumprod_prev, prev + 1, x_t, dtype)
        if scale == 0:
            mean, std = self.ddpm_posterior(x0, x_t.to(dtype), ab_t, ab_prev)
            return (mean + std * randn(tuple(x_t.shape), generator, x_t.device, dtype)).to(x_t.dtype)
        mixed = self.mix(x0, blurry, prev.clamp(min=0), scale).to(dtype)
        return (ab_prev.sqrt() * mixed + (1 - ab_prev).sqrt() * eps).to(x_t.dtype)

    def step(
        self,
        model_output: Tensor,
        t: Timestep,
        x_t: Tensor,
        generator: torch.Generator | None = None,
        *,
        scale: int = 0,
        blurry: Tensor | None = None,
    ) -> StepOutput:
        """One unguided reverse step at ``scale`` (:meth:`predict_clean` + :meth:`step_from_clean`)."""
        x0, eps = self.predict_clean(model_output, t, x_t, scale, blurry)
        prev = self.step_from_clean(x0, eps, t, x_t, scale, blurry, generator)
        return StepOutput(prev_sample=prev, pred_original_sample=x0.to(x_t.dtype))

    def training_batch(
        self,
        x0: Tensor,
        generator: torch.Generator | None = None,
        t: Timestep | None = None,
        *,
        scale: int = 0,
        blurry: Tensor | None = None,
        max_timestep: int | None = None,
    ) -> TrainingBatch:
        """Algorithm 1: x_t of the blur mix at ``scale``, t uniform in [0, max_timestep) (all T
        by default); the target is the noise."""
        batch_size = x0.shape[0]
        if t is None:
            high = self.num_train_timesteps if max_timestep is None else max(1, int(max_timestep))
            rng_device = generator.device if generator is not None else None
            t = torch.randint(
                0, min(high, self.num_train_timesteps), (batch_size,), generator=generator, device=rng_device
            )
        t = self._check_timesteps(t).expand(batch_size).clone()
        noise = randn(tuple(x0.shape), generator, x0.device, x0.dtype)
        x_t = self.add_noise(self.mix(x0, blurry, t, scale), t, noise=noise)
        return TrainingBatch(x0=x0, x_t=x_t, t=t.to(x0.device), target=noise)

    def loss(self, model_output: Tensor, batch: TrainingBatch) -> Tensor:
        """L1 between the predicted and the true noise (the paper's Eq. 9), in float32."""
        return F.l1_loss(model_output.float(), batch.target.float())

    def _check_scale(self, scale: int) -> int:
        if isinstance(scale, bool) or not isinstance(scale, int) or not 0 <= scale < self.num_scales:
            raise ValueError(f"scale must be an integer in 0..{self.num_scales - 1}, got {scale!r}")
        return scale

    def _check_blurry(self, blurry: Tensor | None, like: Tensor | None, scale: int) -> Tensor:
        self._check_scale(scale)
        if blurry is None:
            raise ValueError(f"scale {scale} needs the blurry image x̃ (the upsampled scale below)")
        if like is not None and blurry.shape[-2:] != like.shape[-2:]:
            raise ValueError(
                f"blurry image {tuple(blurry.shape)} does not match the sample {tuple(like.shape)}"
            )
        return blurry
