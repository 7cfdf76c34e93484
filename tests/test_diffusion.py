"""Noise schedulers: closed-form schedules, forward-process statistics, exact DDIM inversion of the
true noise, DDPM/DDIM marginals, seeding, timestep spacing and the config registry."""

from __future__ import annotations

import json
import math

import pytest
import torch

from rsgen.diffusion import SCHEDULERS, GaussianScheduler, GaussianSchedulerConfig, build_scheduler
from rsgen.diffusion.gaussian import cosine_alpha_bar

SCHEDULES = ["linear", "cosine"]
PREDICTIONS = ["epsilon", "sample"]


def gaussian(**options: object) -> GaussianScheduler:
    return GaussianScheduler(GaussianSchedulerConfig(**options))


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def oracle_output(
    scheduler: GaussianScheduler, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """What a perfect network outputs at t: x_0 itself, or the noise that turns x_0 into x_t."""
    if scheduler.config.prediction_type == "sample":
        return x0.clone()
    ab = scheduler.alphas_cumprod[t].to(x_t.dtype)
    return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()


# --- schedules ---------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_alpha_bar_decreases_strictly_inside_unit_interval(schedule: str) -> None:
    s = gaussian(beta_schedule=schedule)
    assert ((s.betas > 0) & (s.betas < 1)).all()
    ab = s.alphas_cumprod
    assert ((ab > 0) & (ab <= 1)).all()
    assert (ab[1:] < ab[:-1]).all()
    assert ab[0] > 0.999 and ab[-1] < 1e-4  # starts near the data, ends near pure noise


def test_linear_schedule_endpoints() -> None:
    s = gaussian(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02)
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)
    product = math.prod(1 - (1e-4 + i * (0.02 - 1e-4) / 999) for i in range(1000))
    assert s.alphas_cumprod[-1].item() == pytest.approx(product, rel=1e-9)
    assert s.alphas_cumprod[-1].item() == pytest.approx(4.04e-5, rel=0.01)  # DDPM's x_T is ~pure noise


def test_cosine_schedule_matches_closed_form() -> None:
    s = gaussian(beta_schedule="cosine", num_train_timesteps=1000)
    u = torch.arange(1, 1001, dtype=torch.float64) / 1000
    closed = cosine_alpha_bar(u, 0.008) / cosine_alpha_bar(torch.zeros(1, dtype=torch.float64), 0.008)
    # every beta but the capped last one follows the closed form exactly
    torch.testing.assert_close(s.alphas_cumprod[:-1], closed[:-1], rtol=1e-9, atol=1e-12)
    assert s.alphas_cumprod[0].item() == pytest.approx(1 - 4.1e-5, abs=2e-6)
    assert s.alphas_cumprod[499].item() == pytest.approx(closed[499].item()) and 0.45 < closed[499] < 0.55
    assert s.betas.max().item() == pytest.approx(0.999)


# --- forward process ---------------------------------------------------------------------------


def test_add_noise_is_the_closed_form_with_explicit_noise() -> None:
    s = gaussian(beta_schedule="cosine")
    x0, noise, t = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4), torch.tensor([0, 400, 999])
    ab = s.alphas_cumprod[t].float().view(3, 1, 1, 1)
    torch.testing.assert_close(s.add_noise(x0, t, noise=noise), ab.sqrt() * x0 + (1 - ab).sqrt() * noise)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_add_noise_statistics_match_q(schedule: str) -> None:
    s = gaussian(beta_schedule=schedule, num_train_timesteps=100)
    values = torch.tensor([-1.0, 0.0, 0.5, 1.0])
    n = 20_000
    x0 = values.view(1, 4).expand(n, 4)
    t = torch.tensor([10, 60]).repeat(n // 2)  # one timestep per sample, two groups
    x_t = s.add_noise(x0, t, generator=seeded(0))
    for level in (10, 60):
        ab = s.alphas_cumprod[level].item()
        group = x_t[t == level]
        torch.testing.assert_close(group.mean(0), math.sqrt(ab) * values, atol=0.03, rtol=0)
        torch.testing.assert_close(group.var(0), torch.full((4,), 1 - ab), atol=0.03, rtol=0.05)


# --- reverse steps -----------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_ddim_with_the_true_noise_recovers_x0_from_any_t(schedule: str, prediction: str) -> None:
    s = gaussian(beta_schedule=schedule, prediction_type=prediction, sampler="ddim", num_train_timesteps=1000)
    x0, noise = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    for t in (0, 1, 250, 500, 998, 999):
        x_t = s.add_noise(x0, t, noise=noise)
        out = noise if prediction == "epsilon" else x0
        s.set_custom_timesteps([t])  # a one-step schedule that starts at t: DDIM lands on x0
        step = s.step(out, t, x_t)
        torch.testing.assert_close(step.pred_original_sample, x0, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(step.prev_sample, x0, atol=1e-6, rtol=1e-6)
    # within a strided schedule, each deterministic step stays on the same noise trajectory
    for t, prev in zip(s.set_timesteps(8)[:-1].tolist(), s.timesteps[1:].tolist(), strict=True):
        step = s.step(noise if prediction == "epsilon" else x0, t, s.add_noise(x0, t, noise=noise))
        torch.testing.assert_close(step.prev_sample, s.add_noise(x0, prev, noise=noise), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("prediction", PREDICTIONS)
@pytest.mark.parametrize("steps", [100, 9])
def test_ddpm_with_an_oracle_converges_to_x0(prediction: str, steps: int) -> None:
    s = gaussian(beta_schedule="cosine", prediction_type=prediction, num_train_timesteps=100)
    x0 = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2 - 1
    x = s.initial_sample(tuple(x0.shape), generator=seeded(1), dtype=torch.float64)
    distances = []
    for t in s.set_timesteps(steps):
        x = s.step(oracle_output(s, x0, x, t), t, x, generator=seeded(int(t))).prev_sample
        distances.append((x - x0).pow(2).mean().item())
    assert distances[len(distances) // 2] < 0.5 * distances[0]
    torch.testing.assert_close(x, x0, atol=1e-8, rtol=0)


@pytest.mark.parametrize(("sampler", "eta"), [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 1.0)])
def test_reverse_step_with_an_oracle_keeps_the_forward_marginals(sampler: str, eta: float) -> None:
    """If x_t ~ q(x_t | x_0) and the network is perfect, x_prev ~ q(x_prev | x_0) (also for strided steps)."""
    s = gaussian(num_train_timesteps=100, beta_start=1e-3, beta_end=0.1, sampler=sampler, eta=eta)
    values = torch.tensor([-1.0, 0.0, 1.0])
    x0 = values.view(1, 3).expand(30_000, 3)
    timesteps = s.set_timesteps(10)
    for t, prev in ((timesteps[2], timesteps[3]), (timesteps[8], timesteps[9])):
        x_t = s.add_noise(x0, t, generator=seeded(2))
        x_prev = s.step(oracle_output(s, x0, x_t, t), t, x_t, generator=seeded(3)).prev_sample
        ab = s.alphas_cumprod[prev].item()
        torch.testing.assert_close(x_prev.mean(0), math.sqrt(ab) * values, atol=0.03, rtol=0)
        torch.testing.assert_close(x_prev.var(0), torch.full((3,), 1 - ab), atol=0.02, rtol=0.05)


def test_clip_sample_bounds_the_predicted_x0() -> None:
    s = gaussian(prediction_type="sample", clip_sample=1.0)
    step = s.step(torch.full((1, 4), 5.0), 999, torch.zeros(1, 4), generator=seeded(0))
    assert step.pred_original_sample.max().item() == 1.0


def test_per_sample_timesteps_and_low_precision_dtypes() -> None:
    s = gaussian(sampler="ddim")
    s.set_timesteps(10)
    t = s.timesteps[[0, 4, 9]]
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        x_t = torch.randn(3, 16, dtype=dtype)  # (B, L) as well as images
        step = s.step(torch.randn(3, 16, dtype=dtype), t, x_t)
        assert step.prev_sample.dtype == dtype and step.prev_sample.shape == (3, 16)
        assert s.add_noise(x_t, t, generator=seeded(0)).dtype == dtype
    # each sample took its own step: the one at the last timestep landed on its x0 estimate
    torch.testing.assert_close(step.prev_sample[2], step.pred_original_sample[2])


def test_step_rejects_timesteps_outside_the_schedule() -> None:
    s = gaussian(num_train_timesteps=100)
    s.set_timesteps(10)
    x = torch.zeros(1, 4)
    with pytest.raises(ValueError, match="not in the current schedule"):
        s.step(x, 50, x)
    with pytest.raises(ValueError, match=r"0\.\.99"):
        s.step(x, 100, x)
    with pytest.raises(ValueError, match="integers"):
        s.add_noise(x, torch.tensor(5.0))


# --- randomness --------------------------------------------------------------------------------


def test_seeded_generators_reproduce_and_different_seeds_differ() -> None:
    s = gaussian(num_train_timesteps=50)
    x0 = torch.randn(2, 3, 4, 4)

    def run(seed: int) -> list[torch.Tensor]:
        g = seeded(seed)
        batch = s.training_batch(x0, generator=g)
        x = s.sample(lambda x, t: torch.zeros_like(x), tuple(x0.shape), 5, generator=g)
        return [batch.t, batch.x_t, s.add_noise(x0, 10, generator=g), x]

    for a, b in zip(run(7), run(7), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(run(7)[1:], run(8)[1:], strict=True):
        assert not torch.equal(a, b)


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_training_batch_target_and_loss(prediction: str) -> None:
    s = gaussian(prediction_type=prediction, num_train_timesteps=100)
    x0 = torch.randn(4, 3, 4, 4)
    batch = s.training_batch(x0, generator=seeded(0))
    assert batch.t.dtype == torch.long and batch.t.shape == (4,)
    assert ((batch.t >= 0) & (batch.t < 100)).all()
    if prediction == "epsilon":
        torch.testing.assert_close(batch.x_t, s.add_noise(x0, batch.t, noise=batch.target))
    else:
        assert torch.equal(batch.target, x0)
    assert s.loss(batch.target, batch).item() == 0.0
    assert s.loss(batch.target + 1, batch).item() == pytest.approx(1.0)
    fixed = s.training_batch(x0, generator=seeded(0), t=7)
    assert fixed.t.tolist() == [7, 7, 7, 7]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cpu_generator_gives_the_same_samples_on_cuda() -> None:
    s = gaussian(num_train_timesteps=50, sampler="ddpm")
    x0 = torch.randn(2, 3, 8, 8)

    def run(device: str) -> torch.Tensor:
        g = seeded(5)
        x = s.add_noise(x0.to(device), torch.tensor([3, 40], device=device), generator=g)
        return s.step(torch.zeros_like(x), 49, x, generator=g).prev_sample.cpu()

    torch.testing.assert_close(run("cuda"), run("cpu"), atol=1e-5, rtol=1e-5)


# --- timesteps ---------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 7, 50, 333, 1000])
def test_set_timesteps_spacing(steps: int) -> None:
    s = gaussian(num_train_timesteps=1000)
    timesteps = s.set_timesteps(steps)
    assert timesteps is s.timesteps and timesteps.dtype == torch.long and len(timesteps) == steps
    assert timesteps[0] == 999
    if steps > 1:
        gaps = timesteps[:-1] - timesteps[1:]
        assert timesteps[-1] == 0 and (gaps > 0).all()
        assert gaps.max() - gaps.min() <= 1  # as even as integers allow


@pytest.mark.parametrize("timesteps", [[], [5, 5], [3, 7], [100], [-1]])
def test_custom_timesteps_must_descend_inside_the_range(timesteps: list[int]) -> None:
    with pytest.raises(ValueError, match="timesteps"):
        gaussian(num_train_timesteps=100).set_custom_timesteps(timesteps)


def test_custom_timesteps_start_part_way() -> None:
    s = gaussian(num_train_timesteps=100)
    assert s.set_custom_timesteps([60, 30, 0]) is s.timesteps
    assert [s.previous_timestep(t).item() for t in (60, 30, 0)] == [30, 0, -1]


def test_default_schedule_is_every_training_timestep() -> None:
    assert gaussian(num_train_timesteps=20).timesteps.tolist() == list(range(19, -1, -1))


@pytest.mark.parametrize("steps", [0, 1001, 2.5, True])
def test_set_timesteps_rejects_bad_counts(steps: object) -> None:
    with pytest.raises(ValueError, match="num_inference_steps"):
        gaussian().set_timesteps(steps)  # type: ignore[arg-type]


# --- configs and registry ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "beta_schedule": "cosine",
            "prediction_type": "sample",
            "sampler": "ddim",
            "eta": 0.5,
            "clip_sample": 1.0,
        },
    ],
)
def test_registry_round_trips_through_json(options: dict[str, object]) -> None:
    s = gaussian(**options)
    saved = json.dumps({"scheduler": s.config.to_dict()})
    rebuilt = build_scheduler(json.loads(saved)["scheduler"])
    assert type(rebuilt) is GaussianScheduler and rebuilt.config == s.config
    assert SCHEDULERS[s.config.to_dict()["name"]] is GaussianScheduler


def test_unknown_scheduler_name_raises() -> None:
    with pytest.raises(ValueError, match="unknown scheduler name 'ddpm_v9'; known: gaussian"):
        build_scheduler({"name": "ddpm_v9"})
    with pytest.raises(ValueError, match="unknown scheduler name None"):
        build_scheduler({"num_train_timesteps": 10})


def test_unknown_option_raises() -> None:
    with pytest.raises(ValueError, match="unknown gaussian option"):
        build_scheduler({"name": "gaussian", "beta_shedule": "cosine"})


@pytest.mark.parametrize(
    "bad",
    [
        {"beta_schedule": "quadratic"},
        {"prediction_type": "v_prediction"},
        {"sampler": "euler"},
        {"num_train_timesteps": 0},
        {"beta_start": 0.0},
        {"beta_start": 0.1, "beta_end": 0.01},
        {"beta_end": "0.02"},
        {"clip_sample": -1.0},
        {"eta": -0.1},
    ],
)
def test_invalid_values_raise(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="gaussian"):
        build_scheduler({"name": "gaussian", **bad})


def test_scheduler_needs_its_own_config_class() -> None:
    with pytest.raises(TypeError, match="GaussianSchedulerConfig"):
        GaussianScheduler({"name": "gaussian"})  # type: ignore[arg-type]
