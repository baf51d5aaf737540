"""Noise schedules: linear arrays equal the upstream ones; cosine follows its closed form."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import load_fixture

from wdm_inpaint.config import ConfigError, ScheduleConfig
from wdm_inpaint.diffusion.schedule import NoiseSchedule

_ARRAYS = {
    "betas": "betas",
    "alphas_cumprod": "alphas_cumprod",
    "posterior_mean_coef1": "posterior_mean_coef1",
    "posterior_mean_coef2": "posterior_mean_coef2",
    "posterior_variance": "posterior_variance",
    "posterior_log_variance_clipped": "posterior_log_variance_clipped",
    "fixed_large_log_variance": "fixed_large_log_variance",
}


@pytest.mark.parametrize("num_timesteps", [1000, 5000])
def test_linear_schedule_equals_upstream_arrays(upstream_dir, num_timesteps):
    fx = load_fixture(upstream_dir, f"schedule_linear_T{num_timesteps}.pt")
    schedule = NoiseSchedule(ScheduleConfig(kind="linear", num_timesteps=num_timesteps))
    for ours, theirs in _ARRAYS.items():
        got = getattr(schedule, ours)
        assert got.shape == (num_timesteps,), ours
        torch.testing.assert_close(got, fx[theirs], rtol=0, atol=1e-6, msg=ours)


def test_linear_schedule_scales_with_t():
    schedule = NoiseSchedule(ScheduleConfig(kind="linear", num_timesteps=5000))
    assert schedule.betas[0].item() == pytest.approx(1e-4 * 1000 / 5000)
    assert schedule.betas[-1].item() == pytest.approx(0.02 * 1000 / 5000)


def test_cosine_schedule_is_sane_and_follows_closed_form():
    cfg = ScheduleConfig(kind="cosine", num_timesteps=1000)
    schedule = NoiseSchedule(cfg)
    betas, abar = schedule.betas, schedule.alphas_cumprod
    assert torch.all(betas > 0) and torch.all(betas <= 1)
    assert torch.all(abar[1:] < abar[:-1])  # strictly decreasing
    assert abar[0].item() > 0.999 and abar[-1].item() < 1e-3

    def f(t: float) -> float:
        return math.cos((t / cfg.num_timesteps + cfg.cosine_offset) / (1 + cfg.cosine_offset) * math.pi / 2) ** 2

    unclipped = (betas < cfg.max_beta).nonzero().flatten()
    for t in unclipped[:: max(1, len(unclipped) // 20)].tolist():
        assert abar[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_q_sample_and_posterior(kind):
    schedule = NoiseSchedule(ScheduleConfig(kind=kind, num_timesteps=50))
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 8, 2, 2, 2, generator=gen, dtype=torch.float64)
    noise = torch.randn(3, 8, 2, 2, 2, generator=gen, dtype=torch.float64)
    t = torch.tensor([0, 17, 49])
    x_t = schedule.q_sample(x0, t, noise)
    for i, ti in enumerate(t.tolist()):
        ab = schedule.alphas_cumprod[ti].item()
        torch.testing.assert_close(x_t[i], math.sqrt(ab) * x0[i] + math.sqrt(1 - ab) * noise[i])
    # at t = 0 the posterior mean is x0 itself (coef1 = 1, coef2 = 0)
    mean0 = schedule.posterior_mean(x0, x_t, torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(mean0, x0)
    assert schedule.posterior_mean_coef2[0].item() == 0.0


def test_invalid_schedules_raise():
    with pytest.raises(ConfigError, match="num_timesteps"):
        ScheduleConfig(num_timesteps=0)
    with pytest.raises(ValueError, match="unknown noise schedule"):
        NoiseSchedule(ScheduleConfig(kind="quadratic"))  # type: ignore[arg-type]
