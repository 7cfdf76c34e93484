"""Discrete "mask-and-replace" diffusion over VQ token ids (VQ-Diffusion, Gu et al., CVPR 2022).

Tokens take K real values ``0..K-1`` (the VQ codebook) and one extra value, ``[MASK] = K``. One
forward step keeps a token with probability alpha_t, replaces it by a uniformly drawn code with
probability K * beta_t (the draw may give the same code back), or masks it with probability
gamma_t; a masked token stays masked. In one jump from the clean tokens:

    q(x_t | x_0) = a_t * onehot(x_0) + b_t * [1, ..., 1, 0] + g_t * onehot([MASK])

with cumulative a_t, g_t linear in t (``alpha_cum_*``, ``gamma_cum_*``) and b_t = (1 - a_t - g_t) / K.
Timestep ``-1`` is the clean data (a = 1, b = g = 0), so the step from ``t = 0`` returns x_0.

**Jumps.** The product of one-step matrices Q_{s+1} ... Q_t (s < t) has the same form, with

    alpha_{s->t} = a_t / a_s,   1 - gamma_{s->t} = (1 - g_t) / (1 - g_s),
    beta_{s->t} = (1 - alpha_{s->t} - gamma_{s->t}) / K,

so the posterior between any two timesteps of a strided schedule is exact Bayes:

    q(x_s | x_t, x_0) = q(x_t | x_s) q(x_s | x_0) / q(x_t | x_0).

**The network** outputs *logits* of shape (B, K, *spatial) over the K real codes (no mask class)
for p(x_0 | x_t); the scheduler takes their log-softmax. The reverse step is

    p(x_s | x_t) = sum_{x_0} q(x_s | x_t, x_0) p(x_0 | x_t)
                 = q(x_t | x_s) * sum_{x_0} q(x_s | x_0) p(x_0 | x_t) / q(x_t | x_0),

computed in log space per token in O(K) (no K x K matrix), then sampled with Gumbel-max.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from rsgen.config import ComponentConfig
from rsgen.diffusion.scheduler import Scheduler, StepOutput, Timestep, TrainingBatch, per_sample


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def cumulative_schedule(config: VQDiffusionSchedulerConfig) -> tuple[Tensor, Tensor, Tensor]:
    """(a_t, b_t, g_t) for t = 0..T-1, float64 on the CPU: a and g linear in t, b = (1 - a - g) / K."""
    steps = config.num_train_timesteps
    a = torch.linspace(config.alpha_cum_start, config.alpha_cum_end, steps, dtype=torch.float64)
    g = torch.linspace(config.gamma_cum_start, config.gamma_cum_end, steps, dtype=torch.float64)
    return a, (1 - a - g) / config.num_classes, g


@dataclass
class VQDiffusionSchedulerConfig(ComponentConfig):
    """Hyper-parameters of :class:`VQDiffusionScheduler` (stored as ``{"name": "vq_diffusion", ...}``)."""

    NAME: ClassVar[str] = "vq_diffusion"

    num_classes: int = 1024
    """K, the codebook size. Token ids are 0..K-1; the [MASK] token is K (K + 1 classes in x_t)."""
    num_train_timesteps: int = 100
    alpha_cum_start: float = 0.99999
    """a_0: the probability that a token is still itself after the first step."""
    alpha_cum_end: float = 0.000009
    """a_{T-1}."""
    gamma_cum_start: float = 0.000009
    """g_0: the probability that a token is masked after the first step."""
    gamma_cum_end: float = 0.99999
    """g_{T-1}: at the last timestep nearly every token is masked."""
    aux_loss_weight: float = 0.0005
    """lambda: weight of the auxiliary cross-entropy on x_0 (VQ-Diffusion's configs use 5e-4)."""
    adaptive_aux_loss: bool = True
    """Scale the auxiliary term by 2 - t / T (VQ-Diffusion's ``adaptive_auxiliary_loss``)."""
    truncation_rate: float = 1.0
    """Sampling only: keep the most probable x_0 codes until their probability reaches r; 1.0 = off."""

    def __post_init__(self) -> None:
        for name in ("num_classes", "num_train_timesteps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{self.NAME}: {name} must be a positive integer, got {value!r}")
        if self.num_classes < 2:
            raise ValueError(f"{self.NAME}: num_classes must be at least 2, got {self.num_classes}")
        names = ("alpha_cum_start", "alpha_cum_end", "gamma_cum_start", "gamma_cum_end")
        for name in (*names, "aux_loss_weight", "truncation_rate"):
            if not _is_number(getattr(self, name)):
                raise ValueError(f"{self.NAME}: {name} must be a number, got {getattr(self, name)!r}")
        if not isinstance(self.adaptive_aux_loss, bool):
            raise ValueError(f"{self.NAME}: adaptive_aux_loss must be true or false")
        if not 0 < self.alpha_cum_end <= self.alpha_cum_start < 1:
            raise ValueError(f"{self.NAME}: need 0 < alpha_cum_end <= alpha_cum_start < 1")
        if not 0 < self.gamma_cum_start <= self.gamma_cum_end < 1:
            raise ValueError(f"{self.NAME}: need 0 < gamma_cum_start <= gamma_cum_end < 1")
        if self.alpha_cum_start + self.gamma_cum_start >= 1 or self.alpha_cum_end + self.gamma_cum_end >= 1:
            raise ValueError(f"{self.NAME}: alpha_cum + gamma_cum must stay below 1 (b_t > 0)")
        a, _, g = cumulative_schedule(self)
        # one-step beta_t >= 0  <=>  a_t / a_{t-1} <= (1 - g_t) / (1 - g_{t-1})
        if (a[1:] * (1 - g[:-1]) > a[:-1] * (1 - g[1:]) * (1 + 1e-12)).any():
            raise ValueError(f"{self.NAME}: this schedule gives negative one-step replacement probabilities")
        if self.aux_loss_weight < 0:
            raise ValueError(f"{self.NAME}: aux_loss_weight must be >= 0, got {self.aux_loss_weight}")
        if not 0 < self.truncation_rate <= 1:
            raise ValueError(f"{self.NAME}: truncation_rate must be in (0, 1], got {self.truncation_rate}")


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _log(x: Tensor) -> Tensor:
    """log with log(0) = -inf and no warning about it."""
    return torch.where(x > 0, x.clamp(min=torch.finfo(x.dtype).tiny).log(), -math.inf)


def truncate_log_probs(log_probs: Tensor, rate: float, dim: int = 1) -> Tensor:
    """Keep the most probable classes until their cumulative probability reaches ``rate``; renormalise.

    The top class is always kept; the others get -inf. ``rate >= 1`` returns ``log_probs`` unchanged.
    """
    if rate >= 1:
        return log_probs
    sorted_lp, order = log_probs.sort(dim=dim, descending=True)
    before = sorted_lp.exp().cumsum(dim) - sorted_lp.exp()  # probability of the strictly better classes
    keep_sorted = before < rate
    keep = torch.zeros_like(keep_sorted).scatter(dim, order, keep_sorted)
    kept = log_probs.masked_fill(~keep, -math.inf)
    return kept - kept.logsumexp(dim, keepdim=True)


class VQDiffusionScheduler(Scheduler):
    """VQ-Diffusion's mask-and-replace process over token ids; exact strided reverse steps.

    ``alphas_cumprod``, ``betas_cumprod`` and ``gammas_cumprod`` (a_t, b_t, g_t) are float64 CPU
    tensors of length T. Token tensors are LongTensors (B, *spatial); the network's output is
    logits (B, K, *spatial) of p(x_0 | x_t).
    """

    config_class = VQDiffusionSchedulerConfig
    config: VQDiffusionSchedulerConfig

    def __init__(self, config: VQDiffusionSchedulerConfig) -> None:
        super().__init__(config)
        self.alphas_cumprod, self.betas_cumprod, self.gammas_cumprod = cumulative_schedule(config)
        one, zero = torch.ones(1, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
        # indexed by t + 1: entry 0 is the clean data (t = -1)
        self._a = torch.cat([one, self.alphas_cumprod])
        self._g = torch.cat([zero, self.gammas_cumprod])

    @property
    def num_classes(self) -> int:
        """K, the number of real codes."""
        return self.config.num_classes

    @property
    def mask_id(self) -> int:
        """The id of the [MASK] token (K)."""
        return self.config.num_classes

    # --- the process ----------------------------------------------------------------------------

    def jump_coefficients(self, t: Tensor, s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(alpha, beta, gamma) of q(x_t | x_s) for s < t (s = -1: the clean data), float64 on the CPU."""
        a_t, a_s = self._a[t + 1], self._a[s + 1]
        keep_t, keep_s = 1 - self._g[t + 1], 1 - self._g[s + 1]
        alpha = a_t / a_s
        not_masked = keep_t / keep_s
        beta = ((not_masked - alpha) / self.num_classes).clamp(min=0)
        return alpha, beta, 1 - not_masked

    def _per_sample(self, values: Tensor, like: Tensor, dtype: torch.dtype) -> Tensor:
        """A float64 (B,) or 0-d table lookup, shaped (B, 1, ..., 1) against ``like`` (B, C, *spatial)."""
        values = values.to(device=like.device, dtype=dtype)
        if values.ndim == 0:
            return values
        if values.shape[0] != like.shape[0]:
            raise ValueError(f"{values.shape[0]} timesteps for a batch of {like.shape[0]}")
        return values.reshape(-1, *([1] * (like.ndim - 1)))

    def _check_tokens(self, x: Tensor, name: str, allow_mask: bool) -> None:
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"{name} must be integer token ids, got dtype {x.dtype}")
        if x.ndim < 1:
            raise ValueError(f"{name} must have a batch dimension, got shape {tuple(x.shape)}")
        top = self.mask_id if allow_mask else self.mask_id - 1
        if x.numel() and (int(x.min()) < 0 or int(x.max()) > top):
            raise ValueError(f"{name} ids must be in 0..{top}, got {int(x.min())}..{int(x.max())}")

    def forward_log_probs(self, x0: Tensor, t: Timestep, dtype: torch.dtype = torch.float64) -> Tensor:
        """log q(x_t | x_0) over the K + 1 classes, shaped (B, K + 1, *spatial)."""
        self._check_tokens(x0, "x0", allow_mask=False)
        t = self._check_timesteps(t)
        log_x0 = _log(F.one_hot(x0, self.num_classes).movedim(-1, 1).to(dtype))
        return self._log_jump(log_x0, t, torch.full_like(t, -1), dtype)

    def _log_jump(self, log_p: Tensor, t: Tensor, s: Tensor, dtype: torch.dtype) -> Tensor:
        """log of sum_i q(x_t | x_s = i) p(x_s = i), for p over the K real codes (B, K, *spatial)."""
        alpha, beta, gamma = (self._per_sample(_log(c), log_p, dtype) for c in self.jump_coefficients(t, s))
        real = torch.logaddexp(log_p + alpha, beta + log_p.logsumexp(1, keepdim=True))
        return torch.cat([real, gamma + log_p.logsumexp(1, keepdim=True)], dim=1)

    def add_noise(self, x0: Tensor, t: Timestep, generator: torch.Generator | None = None) -> Tensor:
        """Draw x_t ~ q(x_t | x_0): keep (a_t), mask (g_t) or replace by a uniform code (K b_t)."""
        self._check_tokens(x0, "x0", allow_mask=False)
        t = self._check_timesteps(t)
        rng_device = generator.device if generator is not None else x0.device
        u = torch.rand(tuple(x0.shape), generator=generator, device=rng_device, dtype=torch.float64)
        codes = torch.randint(0, self.num_classes, tuple(x0.shape), generator=generator, device=rng_device)
        u, codes = u.to(x0.device), codes.to(x0.device, x0.dtype)
        a = per_sample(self.alphas_cumprod, t, u, torch.float64)
        g = per_sample(self.gammas_cumprod, t, u, torch.float64)
        masked = torch.full_like(x0, self.mask_id)
        return torch.where(u < a, x0, torch.where(u < a + g, masked, codes))

    def posterior_log_probs(self, log_p_x0: Tensor, x_t: Tensor, t: Timestep, s: Timestep) -> Tensor:
        """log p(x_s | x_t) = log sum_{x_0} q(x_s | x_t, x_0) p(x_0 | x_t), for s < t (s = -1: clean).

        ``log_p_x0`` is (B, K, *spatial) log-probabilities (a one-hot's log gives the true
        posterior q(x_s | x_t, x_0)); returns (B, K + 1, *spatial) in ``log_p_x0``'s dtype.
        """
        t = self._check_timesteps(t)
        s = torch.as_tensor(s, dtype=torch.long).cpu()
        if (s >= t).any() or (s < -1).any():
            raise ValueError(f"need -1 <= s < t, got s={s.tolist()}, t={t.tolist()}")
        dtype = log_p_x0.dtype
        k = self.num_classes
        masked = (x_t == self.mask_id).unsqueeze(1)
        same = F.one_hot(x_t.clamp(max=k - 1), k).movedim(-1, 1).bool() & ~masked

        def table(c: Tensor) -> Tensor:
            return self._per_sample(_log(c), log_p_x0, dtype)

        # log q(x_t | x_0 = i) for the K real codes i
        a_t, b_t, g_t = (table(c) for c in self.jump_coefficients(t, torch.full_like(t, -1)))
        log_q_t = torch.where(masked, g_t, torch.where(same, torch.logaddexp(a_t, b_t), b_t))
        # w(x_0) = p(x_0 | x_t) / q(x_t | x_0), then m(x_s) = sum_{x_0} q(x_s | x_0) w(x_0)
        log_w = log_p_x0 - log_q_t
        log_m = self._log_jump(log_w, s, torch.full_like(s, -1), dtype)
        # times q(x_t | x_s) for every x_s (the last row: x_s = [MASK])
        alpha, beta, gamma = (table(c) for c in self.jump_coefficients(t, s))
        log_real = torch.where(masked, gamma, torch.where(same, torch.logaddexp(alpha, beta), beta))
        log_mask = torch.where(masked, 0.0, -math.inf).to(dtype)
        log_post = log_m + torch.cat([log_real, log_mask], dim=1)
        return log_post - log_post.logsumexp(1, keepdim=True)

    def predict_x0_log_probs(self, model_output: Tensor, truncate: bool = True) -> Tensor:
        """log p(x_0 | x_t) from the network's logits, in float32 (float64 for float64 logits).

        With ``truncate`` and ``truncation_rate < 1`` the unlikely codes are cut off (sampling).
        """
        if model_output.ndim < 2 or model_output.shape[1] != self.num_classes:
            raise ValueError(
                f"model output must be logits of shape (B, {self.num_classes}, ...), "
                f"got {tuple(model_output.shape)}"
            )
        log_p = F.log_softmax(model_output.to(_compute_dtype(model_output)), dim=1)
        return truncate_log_probs(log_p, self.config.truncation_rate) if truncate else log_p

    def _check_output(self, model_output: Tensor, x_t: Tensor) -> None:
        expected = (x_t.shape[0], self.num_classes, *x_t.shape[1:])
        if tuple(model_output.shape) != expected:
            raise ValueError(f"model output shape {tuple(model_output.shape)}, expected {expected}")

    # --- sampling -------------------------------------------------------------------------------

    def step(
        self, model_output: Tensor, t: Timestep, x_t: Tensor, generator: torch.Generator | None = None
    ) -> StepOutput:
        """Sample x_prev ~ p(x_prev | x_t) (the previous timestep of ``.timesteps``; x_0 after the last)."""
        self._check_tokens(x_t, "x_t", allow_mask=True)
        self._check_output(model_output, x_t)
        t = self._check_timesteps(t)
        prev = self.previous_timestep(t)
        log_p_x0 = self.predict_x0_log_probs(model_output)
        log_prev = self.posterior_log_probs(log_p_x0, x_t, t, prev)
        prev_sample = gumbel_argmax(log_prev, generator).to(x_t.dtype)
        return StepOutput(prev_sample=prev_sample, pred_original_sample=log_p_x0.argmax(1).to(x_t.dtype))

    def initial_sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """x_T: every token [MASK] (a LongTensor unless an integer ``dtype`` is given)."""
        dtype = dtype or torch.long
        if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
            raise ValueError(f"token ids need an integer dtype, got {dtype}")
        return torch.full(tuple(shape), self.mask_id, dtype=dtype, device=device)

    # --- training -------------------------------------------------------------------------------

    def training_batch(
        self, x0: Tensor, generator: torch.Generator | None = None, t: Timestep | None = None
    ) -> TrainingBatch:
        """x_t ~ q(x_t | x_0) at uniform random timesteps (no importance sampling); the target is x_0."""
        batch_size = x0.shape[0]
        if t is None:
            t = self.sample_timesteps(batch_size, generator)
        t = self._check_timesteps(t).expand(batch_size).clone()
        x_t = self.add_noise(x0, t, generator)
        return TrainingBatch(x0=x0, x_t=x_t, t=t.to(x0.device), target=x0)

    def loss(self, model_output: Tensor, batch: TrainingBatch) -> Tensor:
        """Per-token mean of the variational bound term plus lambda times the auxiliary cross-entropy.

        At t > 0 the bound term is KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)); at t = 0 it is
        -log p(x_0 | x_1). The auxiliary term is -log p(x_0 | x_t), weighted by 2 - t / T when
        ``adaptive_aux_loss``.
        """
        x0, x_t = batch.target, batch.x_t
        self._check_output(model_output, x_t)
        t = self._check_timesteps(batch.t.cpu()).expand(x0.shape[0])
        s = t - 1
        log_p_x0 = self.predict_x0_log_probs(model_output, truncate=False)
        dtype = log_p_x0.dtype
        log_model = self.posterior_log_probs(log_p_x0, x_t, t, s)
        log_true = self.posterior_log_probs(
            _log(F.one_hot(x0, self.num_classes).movedim(-1, 1).to(dtype)), x_t, t, s
        )
        q_true = log_true.exp()
        kl = torch.where(q_true > 0, q_true * (log_true - log_model), 0.0).sum(1)
        nll = -log_model.gather(1, x0.unsqueeze(1)).squeeze(1)
        t_col = t.to(x0.device).reshape(-1, *([1] * (x0.ndim - 1)))
        vb = torch.where(t_col == 0, nll, kl)
        ce = -log_p_x0.gather(1, x0.unsqueeze(1)).squeeze(1)
        weight = self.config.aux_loss_weight * torch.ones_like(t_col, dtype=dtype)
        if self.config.adaptive_aux_loss:
            weight = weight * (2 - t_col.to(dtype) / self.num_train_timesteps)
        return (vb + weight * ce).mean()


def gumbel_argmax(log_probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One sample per position from categorical ``log_probs`` (classes on dim 1), by Gumbel-max.

    The uniforms are drawn in float32 on the generator's device and then moved.
    """
    rng_device = generator.device if generator is not None else log_probs.device
    u = torch.rand(tuple(log_probs.shape), generator=generator, device=rng_device, dtype=torch.float32)
    u = u.to(log_probs.device, log_probs.dtype).clamp(min=1e-20, max=1 - 1e-7)
    return (log_probs - (-u.log()).log()).argmax(1)
