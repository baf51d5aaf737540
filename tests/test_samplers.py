"""Samplers: the shared contract, exact reductions between samplers, and oracle tests on Gaussian toy data.

The oracle tests use data whose posterior mean ``E[x0 | x_t]`` is known in closed form, so the exact
marginals of the diffusion (and the exact probability-flow ODE solution) are known too:

* data ``x0 ~ N(mu, s^2)`` per element: ``x_t ~ N(a mu, a^2 s^2 + sigma^2)`` with ``a = sqrt(abar_t)``,
  ``sigma = sqrt(1 - abar_t)``, and ``E[x0 | x_t] = mu + a s^2 / (a^2 s^2 + sigma^2) (x_t - a mu)``;
* the ODE keeps the standardised value ``(x_t - a mu) / sqrt(a^2 s^2 + sigma^2)`` constant.
"""

from __future__ import annotations

import math

import pytest
import torch

from conftest import load_fixture
from wdm_inpaint.config import ConfigError, ScheduleConfig
from wdm_inpaint.diffusion.schedule import NoiseSchedule
from wdm_inpaint.samplers import FINAL_TIMESTEP, DDIMSampler, SamplerConfig, build_sampler
from wdm_inpaint.samplers.base import karras_timesteps, uniform_timesteps

SAMPLER_CASES = {
    "ddpm_large": SamplerConfig(name="ddpm"),
    "ddpm_small": SamplerConfig(name="ddpm", variance="fixed_small"),
    "ddim_eta0": SamplerConfig(name="ddim", eta=0.0),
    "ddim_eta1": SamplerConfig(name="ddim", eta=1.0),
    "ddim_leading": SamplerConfig(name="ddim", eta=0.5, spacing="leading"),
    "dpmpp_2m": SamplerConfig(name="dpmpp_2m"),
    "dpmpp_2m_karras": SamplerConfig(name="dpmpp_2m", time_grid="karras"),
}
STOCHASTIC = {"ddpm_large", "ddpm_small", "ddim_eta1", "ddim_leading"}


def make_schedule(num_timesteps: int) -> NoiseSchedule:
    """Linear schedule where it is valid (T >= 20 keeps betas <= 1), cosine below."""
    kind = "linear" if num_timesteps >= 20 else "cosine"
    return NoiseSchedule(ScheduleConfig(kind=kind, num_timesteps=num_timesteps))


def with_steps(config: SamplerConfig, num_steps: int | None) -> SamplerConfig:
    return SamplerConfig(**{**config.__dict__, "num_steps": num_steps})


# --------------------------------------------------------------------------- shared contract


@pytest.mark.parametrize("case", sorted(SAMPLER_CASES))
@pytest.mark.parametrize(("num_train", "num_steps"), [(1, 1), (2, 1), (2, 2), (7, 3), (7, 7), (1000, 1), (1000, 10)])
def test_contract_grid_and_full_loop(case: str, num_train: int, num_steps: int) -> None:
    schedule = make_schedule(num_train)
    sampler = build_sampler(with_steps(SAMPLER_CASES[case], num_steps), schedule)
    ts = sampler.timesteps
    assert ts.dtype == torch.int64 and ts.shape == (num_steps,)
    assert sampler.num_model_calls == num_steps
    assert int(ts.min()) >= 0 and int(ts.max()) <= num_train - 1
    assert bool((ts[:-1] > ts[1:]).all()), f"grid must be strictly decreasing: {ts.tolist()}"
    if num_steps == num_train:
        assert ts.tolist() == list(range(num_train - 1, -1, -1))

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 2, 3, 2, generator=g)
    x0_const = torch.full_like(x, 0.25)
    out = None
    for t in ts.tolist():
        out = sampler.step(x0_const, t, x, generator=g)
        assert out.prev_sample.shape == x.shape and out.prev_sample.dtype == x.dtype
        x = out.prev_sample
    assert out is not None
    # the last step goes to the clean sample and returns the x0 prediction
    assert torch.allclose(x, out.pred_original_sample, atol=1e-6)
    assert sampler.prev_timestep(int(ts[-1])) == FINAL_TIMESTEP


@pytest.mark.parametrize("case", sorted(SAMPLER_CASES))
def test_contract_determinism_with_generator(case: str) -> None:
    schedule = make_schedule(100)
    results = []
    for seed in (5, 5, 6):
        sampler = build_sampler(with_steps(SAMPLER_CASES[case], 6), schedule)
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(1, 8, 4, 4, 4, generator=g)
        for t in sampler.timesteps.tolist():
            x = sampler.step(0.5 * x, t, x, generator=g).prev_sample
        results.append(x)
    assert torch.equal(results[0], results[1])
    if case in STOCHASTIC:
        assert not torch.allclose(results[0], results[2])


@pytest.mark.parametrize("case", sorted(SAMPLER_CASES))
def test_contract_set_timesteps_validation(case: str) -> None:
    sampler = build_sampler(with_steps(SAMPLER_CASES[case], 3), make_schedule(50))
    for bad in (0, -1, 51):
        with pytest.raises(ValueError, match=r"between 1 and the schedule's T=50, got"):
            sampler.set_timesteps(bad)
    for bad_type in (2.5, True, "10"):
        with pytest.raises(TypeError, match="num_steps must be an int"):
            sampler.set_timesteps(bad_type)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="between 1 and the schedule's T=50"):
        build_sampler(with_steps(SAMPLER_CASES[case], 51), make_schedule(50))
    sampler.set_timesteps(50)
    assert len(sampler.timesteps) == 50
    for bad_grid in ([60, 3], [10, 10, 2], [4, 9], []):
        with pytest.raises(ValueError, match=r"strictly decreasing list of timesteps in \[0, 49\]"):
            sampler.set_custom_timesteps(bad_grid)
    sampler.set_custom_timesteps([30, 7, 0])
    assert sampler.timesteps.tolist() == [30, 7, 0] and sampler.num_model_calls == 3
    explicit = SamplerConfig(name=SAMPLER_CASES[case].name, timesteps=(12, 5))
    assert build_sampler(explicit, make_schedule(50)).timesteps.tolist() == [12, 5]


@pytest.mark.parametrize("case", sorted(SAMPLER_CASES))
def test_contract_step_validation_and_clipping(case: str) -> None:
    schedule = make_schedule(40)
    clip = lambda x0: x0.clamp(-0.1, 0.1)  # noqa: E731
    sampler = build_sampler(with_steps(SAMPLER_CASES[case], 4), schedule, clip_x0=clip)
    x = torch.randn(1, 8, 2, 2, 2)
    off_grid = next(t for t in range(40) if t not in sampler.timesteps.tolist())
    with pytest.raises(ValueError, match=f"timestep {off_grid} is not on the grid"):
        sampler.step(x, off_grid, x)
    with pytest.raises(ValueError, match="model_output shape"):
        sampler.step(x[:, :4], int(sampler.timesteps[0]), x)
    with pytest.raises(ValueError, match="one timestep for the whole batch"):
        sampler.step(torch.cat([x, x]), torch.tensor([39, 20]), torch.cat([x, x]))
    g = torch.Generator().manual_seed(1)
    for t in sampler.timesteps:  # tensor timesteps are accepted too
        out = sampler.step(3.0 * torch.randn(x.shape, generator=g), t, x, generator=g)
        assert float(out.pred_original_sample.abs().max()) <= 0.1 + 1e-7
        x = out.prev_sample
    assert float(x.abs().max()) <= 0.1 + 1e-7


def test_unknown_sampler_and_bad_config() -> None:
    with pytest.raises(ConfigError, match="unknown sampler"):
        build_sampler(SamplerConfig(name="euler"), make_schedule(10))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="eta must be >= 0"):
        SamplerConfig(name="ddim", eta=-0.5)
    with pytest.raises(ConfigError, match="needs eta=1"):
        SamplerConfig(name="ddim", eta=0.3, ddim_noise="ddpm")
    with pytest.raises(ConfigError, match="num_steps must be >= 1"):
        SamplerConfig(num_steps=0)
    with pytest.raises(ConfigError, match="strictly decreasing"):
        SamplerConfig(timesteps=(5, 5))
    with pytest.raises(ConfigError, match="needs SamplerConfig"):
        DDIMSampler(make_schedule(10), SamplerConfig(name="ddpm"))


# --------------------------------------------------------------------------- timestep grids


def test_uniform_grids_map_steps_to_trained_timesteps() -> None:
    assert uniform_timesteps(1000, 4, "trailing").tolist() == [999, 749, 499, 249]
    assert uniform_timesteps(1000, 4, "leading").tolist() == [750, 500, 250, 0]
    assert uniform_timesteps(10, 3, "trailing").tolist() == [9, 5, 2]
    assert uniform_timesteps(10, 10, "trailing").tolist() == list(range(9, -1, -1))
    with pytest.raises(ConfigError, match="unknown timestep spacing"):
        uniform_timesteps(10, 3, "middle")


def test_karras_grid_follows_the_sigma_ramp() -> None:
    schedule = make_schedule(1000)
    abar = schedule.alphas_cumprod
    grid = karras_timesteps(abar, 12)
    assert grid[0] == 999 and grid[-1] == 0 and len(set(grid.tolist())) == 12
    sigma = ((1 - abar) / abar).sqrt()
    smax, smin = float(sigma[-1]), float(sigma[0])
    ramp = [(smax ** (1 / 7) + i / 11 * (smin ** (1 / 7) - smax ** (1 / 7))) ** 7 for i in range(12)]
    for t, target in zip(grid.tolist(), ramp):
        # the nearest trained timestep in log sigma: no neighbour is closer
        err = abs(math.log(sigma[t]) - math.log(target))
        for nb in (t - 1, t + 1):
            if 0 <= nb < 1000:
                assert err <= abs(math.log(sigma[nb]) - math.log(target)) + 1e-12
    dense = karras_timesteps(abar, 1000)  # every timestep once, although the ramp crowds near t = 0
    assert dense.tolist() == list(range(999, -1, -1))


# --------------------------------------------------------------------------- exact reductions


def test_ddpm_all_steps_uses_the_upstream_posterior(upstream_dir) -> None:
    ref = load_fixture(upstream_dir, "schedule_linear_T1000.pt")
    sampler = build_sampler(SamplerConfig(name="ddpm"), NoiseSchedule(ScheduleConfig()))
    proc = sampler.process
    torch.testing.assert_close(proc.posterior_mean_coef1, ref["posterior_mean_coef1"], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(proc.posterior_mean_coef2, ref["posterior_mean_coef2"], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(proc.fixed_large_variance.log(), ref["fixed_large_log_variance"], rtol=1e-9, atol=1e-9)
    # one step at t = 500 is the upstream posterior mean plus exp(0.5 logvar) z
    x_t, x0 = torch.randn(2, 8, 3, 3, 3, dtype=torch.float64), torch.randn(2, 8, 3, 3, 3, dtype=torch.float64)
    out = sampler.step(x0, 500, x_t, generator=torch.Generator().manual_seed(9)).prev_sample
    z = torch.randn(x_t.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    expected = (
        ref["posterior_mean_coef1"][500] * x0
        + ref["posterior_mean_coef2"][500] * x_t
        + (0.5 * ref["fixed_large_log_variance"][500]).exp() * z
    )
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize(("num_train", "num_steps"), [(1000, 1000), (60, 60), (1000, 13)])
def test_ddim_eta1_reduces_to_ddpm(variance: str, num_train: int, num_steps: int) -> None:
    """DDIM(eta=1) has the DDPM posterior mean; with the DDPM noise option it is the same sampler."""
    schedule = make_schedule(num_train)
    ddpm = build_sampler(SamplerConfig(name="ddpm", num_steps=num_steps, variance=variance), schedule)
    noise = "ddpm" if variance == "fixed_large" else "eta"
    ddim = build_sampler(
        SamplerConfig(name="ddim", num_steps=num_steps, eta=1.0, ddim_noise=noise, variance=variance), schedule
    )
    shape = (1, 8, 2, 2, 2)
    gx = torch.Generator().manual_seed(2)
    for t in ddpm.timesteps.tolist()[:: max(1, num_steps // 40)]:
        x_t = torch.randn(shape, generator=gx, dtype=torch.float64)
        x0 = torch.randn(shape, generator=gx, dtype=torch.float64)
        a = ddpm.step(x0, t, x_t, generator=torch.Generator().manual_seed(t)).prev_sample
        b = ddim.step(x0, t, x_t, generator=torch.Generator().manual_seed(t)).prev_sample
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
        if num_steps == num_train:
            # posterior mean of the trained chain (schedule arrays verified against upstream)
            z = torch.randn(shape, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
            var = 0.0 if t == 0 else float(
                (schedule.fixed_large_variance if variance == "fixed_large" else schedule.posterior_variance)[t]
            )
            torch.testing.assert_close(
                b - math.sqrt(var) * z, schedule.posterior_mean(x0, x_t, torch.tensor([t])), rtol=1e-9, atol=1e-9
            )


def test_dpmpp_first_step_equals_ddim_eta0() -> None:
    schedule = make_schedule(1000)
    dpm = build_sampler(SamplerConfig(name="dpmpp_2m", num_steps=8), schedule)
    ddim = build_sampler(SamplerConfig(name="ddim", num_steps=8), schedule)
    x = torch.randn(1, 8, 2, 2, 2, dtype=torch.float64)
    x0 = torch.randn_like(x)
    t = int(dpm.timesteps[0])
    torch.testing.assert_close(dpm.step(x0, t, x).prev_sample, ddim.step(x0, t, x).prev_sample)


# --------------------------------------------------------------------------- oracle tests


class GaussianOracle:
    """Exact ``E[x0 | x_t]`` for data ``x0 ~ N(mu, s^2)`` (independent per element)."""

    def __init__(self, schedule: NoiseSchedule, mu: torch.Tensor, s: torch.Tensor) -> None:
        self.schedule, self.mu, self.s = schedule, mu, s

    def level(self, t: int) -> tuple[float, float]:
        abar = 1.0 if t == FINAL_TIMESTEP else float(self.schedule.alphas_cumprod[t])
        return math.sqrt(abar), math.sqrt(1.0 - abar)

    def marginal_std(self, t: int) -> torch.Tensor:
        a, sigma = self.level(t)
        return (a**2 * self.s**2 + sigma**2).sqrt()

    def standardise(self, x: torch.Tensor, t: int) -> torch.Tensor:
        a, _ = self.level(t)
        return (x - a * self.mu) / self.marginal_std(t)

    def start(self, t: int, z: torch.Tensor) -> torch.Tensor:
        a, _ = self.level(t)
        return a * self.mu + self.marginal_std(t) * z

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        a, sigma = self.level(t)
        return self.mu + a * self.s**2 / (a**2 * self.s**2 + sigma**2) * (x - a * self.mu)


def toy_data(n: int, seed: int, s: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mu = torch.rand(n, generator=g, dtype=torch.float64) - 0.5
    std = torch.full_like(mu, s) if s is not None else 0.2 + 0.8 * torch.rand(n, generator=g, dtype=torch.float64)
    return mu, std


POINT_MASS_EXACT = sorted(set(SAMPLER_CASES) - {"ddpm_large"})


@pytest.mark.parametrize("case", POINT_MASS_EXACT)
@pytest.mark.parametrize(("num_train", "num_steps"), [(1000, 4), (1000, 25), (37, 5)])
def test_oracle_point_mass_data_keeps_exact_marginals(case: str, num_train: int, num_steps: int) -> None:
    """Data = one point ``mu`` per element: every sampler's intermediate samples follow ``N(a mu, sigma^2)``.

    For a point mass the x0 posterior is exact, so DDPM's posterior step (``fixed_small``), DDIM with any eta and
    DPM-Solver are all exact: deterministic samplers keep the standardised value of each element unchanged (to float
    precision),
    stochastic ones keep the standardised values standard normal. A wrong coefficient on ``x_t``, on ``x0`` or
    in the noise variance breaks this at the first step.
    """
    n = 40_000
    schedule = make_schedule(num_train)
    sampler = build_sampler(with_steps(SAMPLER_CASES[case], num_steps), schedule)
    mu, s = toy_data(n, 3, 0.0)
    oracle = GaussianOracle(schedule, mu, s)
    g = torch.Generator().manual_seed(4)
    z = torch.randn(n, generator=g, dtype=torch.float64)
    x = oracle.start(int(sampler.timesteps[0]), z)
    for t in sampler.timesteps.tolist():
        x = sampler.step(oracle(x, t), t, x, generator=g).prev_sample
        t_next = sampler.prev_timestep(t)
        if t_next == FINAL_TIMESTEP:
            break
        u = oracle.standardise(x, t_next)
        if case in STOCHASTIC:
            assert abs(float(u.mean())) < 0.02, f"mean of standardised sample at t={t_next}"
            assert abs(float(u.std()) - 1.0) < 0.02, f"std of standardised sample at t={t_next}"
        else:
            torch.testing.assert_close(u, z, rtol=0, atol=1e-8)
    torch.testing.assert_close(x, mu, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "config",
    [
        SamplerConfig(name="ddpm", variance="fixed_large"),
        SamplerConfig(name="ddim", eta=1.0, ddim_noise="ddpm", variance="fixed_large"),
    ],
    ids=["ddpm", "ddim_ddpm_noise"],
)
@pytest.mark.parametrize(("num_train", "num_steps"), [(1000, 3), (1000, 12), (50, 50)])
def test_oracle_unit_variance_data_ddpm_fixed_large_is_exact(
    config: SamplerConfig, num_train: int, num_steps: int
) -> None:
    """For ``x0 ~ N(mu, 1)`` the exact reverse kernel has variance beta (Ho et al. 2020), which is ``fixed_large``
    of the (respaced) chain, so ancestral DDPM is exact in any number of steps; the output ``E[x0 | x_{t_last}]`` is
    ``N(mu, abar_{t_last})``."""
    n = 40_000
    schedule = make_schedule(num_train)
    sampler = build_sampler(with_steps(config, num_steps), schedule)
    mu, s = toy_data(n, 5, 1.0)
    oracle = GaussianOracle(schedule, mu, s)
    g = torch.Generator().manual_seed(6)
    x = oracle.start(int(sampler.timesteps[0]), torch.randn(n, generator=g, dtype=torch.float64))
    for t in sampler.timesteps.tolist():
        x = sampler.step(oracle(x, t), t, x, generator=g).prev_sample
        t_next = sampler.prev_timestep(t)
        if t_next != FINAL_TIMESTEP:
            u = oracle.standardise(x, t_next)
            assert abs(float(u.mean())) < 0.02 and abs(float(u.std()) - 1.0) < 0.02, f"t={t_next}"
    a_last, _ = oracle.level(int(sampler.timesteps[-1]))
    out = (x - mu) / a_last
    assert abs(float(out.mean())) < 0.02 and abs(float(out.std()) - 1.0) < 0.02


@pytest.mark.parametrize(
    ("variance", "data_std", "too_wide"), [("fixed_small", 1.0, False), ("fixed_large", 0.0, True)]
)
def test_oracle_negative_controls_separate_the_two_ddpm_variances(
    variance: str, data_std: float, too_wide: bool
) -> None:
    """Negative controls of the two exactness tests above: each DDPM variance is wrong for the other data, and the
    same test statistic sees it (posterior variance too small for N(mu, 1) data, betas too large for a point
    mass) at the last noisy step of a 3-step grid."""
    n = 40_000
    schedule = make_schedule(1000)
    sampler = build_sampler(SamplerConfig(name="ddpm", variance=variance, num_steps=3), schedule)
    mu, s = toy_data(n, 5, data_std)
    oracle = GaussianOracle(schedule, mu, s)
    g = torch.Generator().manual_seed(6)
    x = oracle.start(int(sampler.timesteps[0]), torch.randn(n, generator=g, dtype=torch.float64))
    for t in sampler.timesteps.tolist()[:-1]:
        x = sampler.step(oracle(x, t), t, x, generator=g).prev_sample
    std = float(oracle.standardise(x, int(sampler.timesteps[-1])).std())
    assert (std > 1.1) if too_wide else (std < 0.9), std


def ode_error(config: SamplerConfig, schedule: NoiseSchedule) -> float:
    """Largest error (in units of the data std) of a deterministic sampler against the exact ODE solution."""
    n = 4096
    sampler = build_sampler(config, schedule)
    mu, s = toy_data(n, 7, None)
    oracle = GaussianOracle(schedule, mu, s)
    z = torch.randn(n, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    x = oracle.start(int(sampler.timesteps[0]), z)
    for t in sampler.timesteps.tolist():
        x = sampler.step(oracle(x, t), t, x).prev_sample
    # exact ODE solution down to the last grid timestep, then the final x0 prediction there
    t_last = int(sampler.timesteps[-1])
    exact = oracle(oracle.start(t_last, z), t_last)
    return float(((x - exact) / s).abs().max())


def alternating_grid(schedule: NoiseSchedule, n: int) -> tuple[int, ...]:
    """Every 1st, then 3rd, point of a fine Karras grid: consecutive log-SNR steps alternate in size (ratio ~3),
    which exposes a wrong step-ratio ``r`` in a multistep solver."""
    fine = karras_timesteps(schedule.alphas_cumprod, 4 * n + 1).tolist()
    grid, i, strides = [], 0, (1, 3)
    while i < len(fine):
        grid.append(fine[i])
        i += strides[len(grid) % 2]
    return tuple(grid if grid[-1] == fine[-1] else grid + [fine[-1]])


@pytest.mark.parametrize("grid_kind", ["karras", "alternating"])
def test_oracle_ode_samplers_converge_with_their_order(grid_kind: str) -> None:
    """On Gaussian data (mixed means and stds) DDIM(eta=0) and DPM-Solver++(2M) converge to the exact ODE solution,
    at first and second order respectively, as the grid is refined (both grids run from T-1 to 0)."""
    schedule = make_schedule(1000)
    sizes = (20, 40, 80) if grid_kind == "karras" else (10, 20, 40)

    def config(name: str, n: int) -> SamplerConfig:
        if grid_kind == "karras":
            return SamplerConfig(name=name, time_grid="karras", num_steps=n)  # type: ignore[arg-type]
        return SamplerConfig(name=name, timesteps=alternating_grid(schedule, n))  # type: ignore[arg-type]

    e_ddim = [ode_error(config("ddim", n), schedule) for n in sizes]
    e_dpm = [ode_error(config("dpmpp_2m", n), schedule) for n in sizes]
    for coarse, fine in zip(e_ddim, e_ddim[1:]):
        assert 1.7 < coarse / fine < 2.3, f"DDIM is first order: errors {e_ddim}"
    for coarse, fine in zip(e_dpm, e_dpm[1:]):
        assert coarse / fine > 3.3, f"DPM-Solver++(2M) is second order: errors {e_dpm}"
    assert e_dpm[-1] < 0.05 and e_dpm[-1] < e_ddim[-1] / 5


def test_oracle_dpmpp_few_steps_matches_target_distribution() -> None:
    """20 uniform DPM-Solver++ steps map noise to samples whose standardised mean and std match the exact result."""
    n = 50_000
    schedule = make_schedule(1000)
    sampler = build_sampler(SamplerConfig(name="dpmpp_2m", num_steps=20), schedule)
    mu, s = toy_data(n, 11, None)
    oracle = GaussianOracle(schedule, mu, s)
    x = oracle.start(999, torch.randn(n, generator=torch.Generator().manual_seed(12), dtype=torch.float64))
    for t in sampler.timesteps.tolist():
        x = sampler.step(oracle(x, t), t, x).prev_sample
    t_last = int(sampler.timesteps[-1])
    a, sigma = oracle.level(t_last)
    target_std = s * a * s / (a**2 * s**2 + sigma**2).sqrt()  # std of E[x0 | x_{t_last}]
    u = (x - mu) / target_std
    assert abs(float(u.mean())) < 0.02 and abs(float(u.std()) - 1.0) < 0.03


def test_dpmpp_history_reset_and_off_order_fallback() -> None:
    """A step that does not follow the previous grid position is first order, as after reset()."""
    schedule = make_schedule(1000)
    dpm = build_sampler(SamplerConfig(name="dpmpp_2m", num_steps=20), schedule)
    ddim = build_sampler(SamplerConfig(name="ddim", num_steps=20), schedule)
    x = torch.randn(1, 8, 2, 2, 2, dtype=torch.float64)
    t0, t1, t2 = dpm.timesteps[:3].tolist()
    dpm.step(torch.zeros_like(x), t0, x)
    second = dpm.step(torch.ones_like(x), t1, x).prev_sample
    assert not torch.allclose(second, ddim.step(torch.ones_like(x), t1, x).prev_sample)
    dpm.reset()
    first_order = ddim.step(torch.ones_like(x), t1, x).prev_sample
    torch.testing.assert_close(dpm.step(torch.ones_like(x), t1, x).prev_sample, first_order)
    dpm.reset()
    dpm.step(torch.zeros_like(x), t0, x)
    first_order = ddim.step(torch.ones_like(x), t2, x).prev_sample
    torch.testing.assert_close(dpm.step(torch.ones_like(x), t2, x).prev_sample, first_order)
