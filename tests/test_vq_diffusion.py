"""VQ-Diffusion's mask-and-replace scheduler: closed forms against explicit one-step transition
matrices, exact (and strided) Bayes posteriors, oracle sampling, the loss, truncation, seeding
and the config registry."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from rsgen.diffusion import SCHEDULERS, VQDiffusionScheduler, VQDiffusionSchedulerConfig, build_scheduler
from rsgen.diffusion.vq_diffusion import truncate_log_probs

K = 5
T = 12


def vq(**options: object) -> VQDiffusionScheduler:
    return VQDiffusionScheduler(
        VQDiffusionSchedulerConfig(**{"num_classes": K, "num_train_timesteps": T, **options})
    )


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def one_step_matrices(config: VQDiffusionSchedulerConfig) -> list[torch.Tensor]:
    """Q_t[j, i] = q(x_t = j | x_{t-1} = i), (K+1) x (K+1), built from the one-step alpha, beta, gamma.

    The cumulative a, g are recomputed here from the config (linear in t); the one-step values are
    alpha_t = a_t / a_{t-1} and 1 - gamma_t = (1 - g_t) / (1 - g_{t-1}), with a_{-1} = 1, g_{-1} = 0.
    """
    k, steps = config.num_classes, config.num_train_timesteps
    a = [
        config.alpha_cum_start + (config.alpha_cum_end - config.alpha_cum_start) * i / (steps - 1)
        for i in range(steps)
    ]
    g = [
        config.gamma_cum_start + (config.gamma_cum_end - config.gamma_cum_start) * i / (steps - 1)
        for i in range(steps)
    ]
    a, g = [1.0, *a], [0.0, *g]
    matrices = []
    for t in range(1, steps + 1):
        alpha = a[t] / a[t - 1]
        gamma = 1 - (1 - g[t]) / (1 - g[t - 1])
        beta = (1 - alpha - gamma) / k
        assert beta >= 0
        q = torch.zeros(k + 1, k + 1, dtype=torch.float64)
        q[:k, :k] = beta + alpha * torch.eye(k, dtype=torch.float64)
        q[k, :k] = gamma
        q[k, k] = 1.0
        matrices.append(q)
    return matrices


def jump(matrices: list[torch.Tensor], t: int, s: int) -> torch.Tensor:
    """q(x_t | x_s) as a matrix: Q_t ... Q_{s+1} (s = -1: from the clean data)."""
    out = torch.eye(matrices[0].shape[0], dtype=torch.float64)
    for step in range(s + 1, t + 1):
        out = matrices[step] @ out
    return out


def oracle_logits(x0: torch.Tensor, k: int = K) -> torch.Tensor:
    """Logits that put (all but ~e^-60 of) the mass on the true x0."""
    return 60.0 * F.one_hot(x0, k).movedim(-1, 1).double()


# --- schedule and forward process --------------------------------------------------------------


def test_schedule_endpoints_and_forward_rows_sum_to_one() -> None:
    s = vq()
    assert s.alphas_cumprod[0].item() == pytest.approx(0.99999) and s.alphas_cumprod[
        -1
    ].item() == pytest.approx(9e-6)
    assert s.gammas_cumprod[0].item() == pytest.approx(9e-6) and s.gammas_cumprod[-1].item() == pytest.approx(
        0.99999
    )
    assert (s.betas_cumprod > 0).all()
    x0 = torch.arange(K).unsqueeze(0)
    for t in range(T):
        probs = s.forward_log_probs(x0, t).exp()
        assert probs.shape == (1, K + 1, K)
        torch.testing.assert_close(probs.sum(1), torch.ones(1, K, dtype=torch.float64))


def test_forward_closed_form_equals_composed_one_step_matrices() -> None:
    s = vq()
    matrices = one_step_matrices(s.config)
    x0 = torch.arange(K).unsqueeze(0)  # every clean code, one per position
    for t in range(T):
        expected = jump(matrices, t, -1)[:, :K]  # column x0 = q(x_t | x0)
        torch.testing.assert_close(s.forward_log_probs(x0, t).exp()[0], expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("t", [0, 4, 8, T - 1])
def test_add_noise_marginals_match_q(t: int) -> None:
    s = vq(alpha_cum_end=0.2, gamma_cum_end=0.5)  # keep every class frequent enough to measure
    n = 40_000
    x0 = torch.full((8, n // 8), 2, dtype=torch.long)
    x_t = s.add_noise(x0, t, generator=seeded(t))
    assert x_t.shape == x0.shape and x_t.dtype == torch.long
    freq = torch.bincount(x_t.flatten(), minlength=K + 1).double() / n
    expected = s.forward_log_probs(x0[:1, :1], t).exp().flatten()
    sigma = (expected * (1 - expected) / n).sqrt()
    assert ((freq - expected).abs() <= 5 * sigma + 1e-12).all(), (freq, expected)


def test_add_noise_with_per_sample_timesteps() -> None:
    s = vq()
    x0 = torch.randint(0, K, (2, 3000), generator=seeded(0))
    x_t = s.add_noise(x0, torch.tensor([0, T - 1]), generator=seeded(1))
    assert (x_t[0] == x0[0]).float().mean() > 0.99
    assert (x_t[1] == K).float().mean() > 0.99


def test_last_timestep_is_almost_all_masked_and_initial_sample_is_all_mask() -> None:
    s = VQDiffusionScheduler(VQDiffusionSchedulerConfig(num_classes=8, num_train_timesteps=20))
    x0 = torch.randint(0, 8, (4, 16, 16), generator=seeded(0))
    x_t = s.add_noise(x0, 19, generator=seeded(1))
    assert (x_t == 8).float().mean() > 0.995
    start = s.initial_sample((2, 4, 4))
    assert start.dtype == torch.long and (start == 8).all()
    with pytest.raises(ValueError):
        s.initial_sample((2, 4), dtype=torch.float32)


# --- posterior ---------------------------------------------------------------------------------

PAIRS = [(1, 0), (5, 4), (T - 1, T - 2), (9, 3), (T - 1, 0), (6, -1), (0, -1)]


@pytest.mark.parametrize(("t", "prev"), PAIRS)
def test_posterior_equals_bayes_from_one_step_matrices(t: int, prev: int) -> None:
    s = vq()
    matrices = one_step_matrices(s.config)
    q_t_s, q_s_0, q_t_0 = jump(matrices, t, prev), jump(matrices, prev, -1), jump(matrices, t, -1)
    # every (x0, x_t) pair at once: positions enumerate x_t in 0..K, the batch enumerates x0
    x0 = torch.arange(K).repeat_interleave(K + 1).reshape(K, K + 1)
    x_t = torch.arange(K + 1).repeat(K, 1)
    log_onehot = torch.log(F.one_hot(x0, K).movedim(-1, 1).double())
    post = s.posterior_log_probs(log_onehot, x_t, t, prev).exp()  # (K, K+1 classes of x_prev, K+1 x_t)
    torch.testing.assert_close(post.sum(1), torch.ones(K, K + 1, dtype=torch.float64))
    for i in range(K):
        for j in range(K + 1):
            brute = q_t_s[j, :] * q_s_0[:, i] / q_t_0[j, i]  # q(x_prev | x_t = j, x0 = i)
            torch.testing.assert_close(post[i, :, j], brute, rtol=1e-7, atol=1e-12)
    if prev == -1:  # the step to the clean data never leaves a mask
        assert (post[:, K, :] == 0).all()


@pytest.mark.parametrize(("t", "prev"), [(7, 6), (10, 2), (4, -1)])
def test_posterior_of_a_distribution_over_x0_is_the_mixture(t: int, prev: int) -> None:
    s = vq()
    matrices = one_step_matrices(s.config)
    q_t_s, q_s_0, q_t_0 = jump(matrices, t, prev), jump(matrices, prev, -1), jump(matrices, t, -1)
    p0 = torch.softmax(torch.randn(2, K, K + 1, generator=seeded(3), dtype=torch.float64), dim=1)
    x_t = torch.arange(K + 1).repeat(2, 1)
    post = s.posterior_log_probs(p0.log(), x_t, t, prev).exp()
    for b in range(2):
        for j in range(K + 1):
            brute = sum(p0[b, i, j] * q_t_s[j, :] * q_s_0[:, i] / q_t_0[j, i] for i in range(K))
            torch.testing.assert_close(post[b, :, j], brute, rtol=1e-7, atol=1e-12)


def test_posterior_with_per_sample_timesteps_and_float32() -> None:
    s = vq()
    logits = torch.randn(3, K, 4, 2, generator=seeded(0), dtype=torch.float64)
    x_t = torch.randint(0, K + 1, (3, 4, 2), generator=seeded(1))
    t, prev = torch.tensor([9, 3, 0]), torch.tensor([5, 2, -1])
    log_p = torch.log_softmax(logits, 1)
    both = s.posterior_log_probs(log_p, x_t, t, prev)
    for b in range(3):
        alone = s.posterior_log_probs(log_p[b : b + 1], x_t[b : b + 1], int(t[b]), int(prev[b]))
        torch.testing.assert_close(both[b : b + 1], alone)
    low = s.posterior_log_probs(log_p.float(), x_t, t, prev)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low.exp().double(), both.exp(), atol=1e-5, rtol=1e-4)


# --- sampling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [T, 5, 2, 1])
def test_oracle_sampling_recovers_x0_from_all_mask(steps: int) -> None:
    s = vq()
    x0 = torch.randint(0, K, (3, 6, 7), generator=seeded(steps))
    g = seeded(0)
    x = s.initial_sample(tuple(x0.shape))
    seen_mask_fraction = []
    for t in s.set_timesteps(steps):
        out = s.step(oracle_logits(x0), t, x, generator=g)
        assert (out.pred_original_sample == x0).all()
        x = out.prev_sample
        seen_mask_fraction.append((x == K).float().mean().item())
    assert x.dtype == torch.long and (x == x0).all()
    assert seen_mask_fraction[-1] == 0.0
    if steps == T:  # masks are revealed gradually, not all at once
        assert 0 < seen_mask_fraction[T // 2] < 1


def test_oracle_sampling_on_token_sequences_through_sample() -> None:
    s = vq()
    x0 = torch.randint(0, K, (4, 30), generator=seeded(2))
    x = s.sample(lambda x, t: oracle_logits(x0), tuple(x0.shape), 4, generator=seeded(3))
    assert (x == x0).all()


def test_a_uniform_model_samples_every_code_and_no_mask() -> None:
    s = vq()
    x = s.sample(lambda x, t: torch.zeros(2, K, 20, 20), (2, 20, 20), 6, generator=seeded(0))
    counts = torch.bincount(x.flatten(), minlength=K + 1)
    assert counts[K] == 0 and (counts[:K] > 800 / K / 2).all()


def test_seeds_reproduce_and_differ() -> None:
    s = vq()
    x0 = torch.randint(0, K, (2, 16, 16), generator=seeded(0))
    assert torch.equal(s.add_noise(x0, 6, seeded(1)), s.add_noise(x0, 6, seeded(1)))
    assert not torch.equal(s.add_noise(x0, 6, seeded(1)), s.add_noise(x0, 6, seeded(2)))

    def run(seed: int) -> torch.Tensor:
        logits = torch.zeros(2, K, 16, 16)
        return s.sample(lambda x, t: logits, (2, 16, 16), 4, generator=seeded(seed))

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))


def test_truncation_keeps_the_top_classes() -> None:
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]]).double().unsqueeze(-1)  # (1, 4, 1)
    kept = truncate_log_probs(probs.log(), 0.86).exp().squeeze()
    torch.testing.assert_close(kept, torch.tensor([0.0, 0.5, 0.15, 0.3], dtype=torch.float64) / 0.95)
    top = truncate_log_probs(probs.log(), 0.5).exp().squeeze()
    torch.testing.assert_close(top, torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64))
    assert torch.equal(truncate_log_probs(probs.log(), 1.0), probs.log())

    # in a step: the last step samples x0 from the truncated p(x0 | x_t) only
    logits = torch.log(probs.squeeze(-1)).reshape(1, 4, 1).expand(1, 4, 2000).contiguous()
    for rate, allowed in ((0.86, {1, 2, 3}), (0.4, {1}), (1.0, {0, 1, 2, 3})):
        s = VQDiffusionScheduler(
            VQDiffusionSchedulerConfig(num_classes=4, num_train_timesteps=T, truncation_rate=rate)
        )
        s.set_timesteps(1)
        x = s.step(logits, T - 1, s.initial_sample((1, 2000)), generator=seeded(0)).prev_sample
        assert set(x.unique().tolist()) == allowed


# --- training ----------------------------------------------------------------------------------


def test_training_batch_and_loss_oracle_vs_uniform() -> None:
    s = vq()
    x0 = torch.randint(0, K, (8, 5, 5), generator=seeded(0))
    batch = s.training_batch(x0, generator=seeded(1))
    assert batch.t.shape == (8,) and batch.x_t.shape == x0.shape and torch.equal(batch.target, x0)
    oracle = s.loss(oracle_logits(x0), batch)
    uniform = s.loss(torch.zeros(8, K, 5, 5), batch)
    assert oracle.ndim == 0 and abs(oracle.item()) < 1e-8
    assert uniform.item() > 0.05
    fixed = s.training_batch(x0, generator=seeded(1), t=3)
    assert (fixed.t == 3).all()


def test_loss_terms_at_t0_and_gradients() -> None:
    x0 = torch.randint(0, K, (4, 10), generator=seeded(0))
    logits = torch.randn(4, K, 10, generator=seeded(1), requires_grad=True)
    plain = vq(aux_loss_weight=0.0)
    batch = plain.training_batch(x0, generator=seeded(2), t=0)
    # at t = 0 the bound term is -log p(x0 | x_t), the cross-entropy
    torch.testing.assert_close(plain.loss(logits, batch), F.cross_entropy(logits, x0))
    # the auxiliary term adds lambda * (2 - t/T) * cross-entropy
    aux = vq(aux_loss_weight=0.5)
    torch.testing.assert_close(aux.loss(logits, batch), 2.0 * F.cross_entropy(logits, x0))
    mixed = aux.training_batch(x0, generator=seeded(3), t=torch.tensor([0, 3, 7, T - 1]))
    loss = aux.loss(logits, mixed)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_loss_at_t_positive_is_the_kl_to_the_true_posterior() -> None:
    s = vq(aux_loss_weight=0.0)
    x0 = torch.randint(0, K, (1, 1), generator=seeded(0))
    batch = s.training_batch(x0, generator=seeded(1), t=6)
    logits = torch.randn(1, K, 1, generator=seeded(2), dtype=torch.float64)
    matrices = one_step_matrices(s.config)
    i, j = int(x0), int(batch.x_t)
    q_true = jump(matrices, 6, 5)[j, :] * jump(matrices, 5, -1)[:, i] / jump(matrices, 6, -1)[j, i]
    p0 = torch.softmax(logits[0, :, 0], 0)
    p_model = sum(
        p0[c] * jump(matrices, 6, 5)[j, :] * jump(matrices, 5, -1)[:, c] / jump(matrices, 6, -1)[j, c]
        for c in range(K)
    )
    nz = q_true > 0
    kl = (q_true[nz] * (q_true[nz] / p_model[nz]).log()).sum()
    torch.testing.assert_close(s.loss(logits, batch), kl)


# --- checks and config -------------------------------------------------------------------------


def test_bad_inputs_raise() -> None:
    s = vq()
    x = s.initial_sample((2, 3))
    with pytest.raises(ValueError, match="model output shape"):
        s.step(torch.zeros(2, K + 1, 3), T - 1, x)
    with pytest.raises(ValueError, match="ids must be in"):
        s.add_noise(torch.full((2, 3), K), 0)
    with pytest.raises(ValueError, match="integer token ids"):
        s.add_noise(torch.zeros(2, 3), 0)
    s.set_timesteps(3)
    with pytest.raises(ValueError, match="not in the current schedule"):
        s.step(torch.zeros(2, K, 3), 4, x)


def test_registry_round_trips_through_json() -> None:
    s = vq(truncation_rate=0.86, aux_loss_weight=0.001, adaptive_aux_loss=False)
    assert SCHEDULERS["vq_diffusion"] is VQDiffusionScheduler
    data = json.loads(json.dumps(s.config.to_dict()))
    assert data["name"] == "vq_diffusion"
    rebuilt = build_scheduler(data)
    assert isinstance(rebuilt, VQDiffusionScheduler) and rebuilt.config == s.config
    torch.testing.assert_close(rebuilt.gammas_cumprod, s.gammas_cumprod)


@pytest.mark.parametrize(
    "bad",
    [
        {"num_classes": 1},
        {"num_train_timesteps": 0},
        {"alpha_cum_start": 1.0},
        {"alpha_cum_end": 0.0},
        {"gamma_cum_end": 1.0},
        {"alpha_cum_start": 0.5, "gamma_cum_start": 0.5},
        {"truncation_rate": 0.0},
        {"truncation_rate": 1.5},
        {"aux_loss_weight": -1.0},
        {"adaptive_aux_loss": "yes"},
        {"num_classes": "8"},
    ],
)
def test_invalid_values_raise(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        build_scheduler({"name": "vq_diffusion", **bad})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cpu_generator_gives_the_same_samples_on_cuda() -> None:
    s = vq()
    x0 = torch.randint(0, K, (2, 64), generator=seeded(0))
    assert torch.equal(s.add_noise(x0, 5, seeded(1)), s.add_noise(x0.cuda(), 5, seeded(1)).cpu())
    logits = torch.randn(2, K, 64, generator=seeded(2))
    s.set_timesteps(4)
    x_cpu = s.step(logits, T - 1, s.initial_sample((2, 64)), seeded(3)).prev_sample
    x_gpu = s.step(logits.cuda(), T - 1, s.initial_sample((2, 64), device="cuda"), seeded(3)).prev_sample
    assert torch.equal(x_cpu, x_gpu.cpu())
