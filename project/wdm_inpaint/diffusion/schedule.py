"""Noise schedules of the trained diffusion process (all arrays in float64, as upstream computes them)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from wdm_inpaint.config import ScheduleConfig

FINAL_TIMESTEP = -1
"""The clean sample after the last grid step (``alpha_bar = 1``)."""

_LINEAR_REFERENCE_T = 1000
"""The linear schedule's beta range is defined at T = 1000 and scaled by 1000 / T for other T."""


def linear_betas(config: ScheduleConfig) -> torch.Tensor:
    """Linear betas, ``linspace(start * s, end * s, T)`` with ``s = 1000 / T`` (upstream convention)."""
    scale = _LINEAR_REFERENCE_T / config.num_timesteps
    return torch.linspace(
        config.linear_beta_start * scale, config.linear_beta_end * scale, config.num_timesteps, dtype=torch.float64
    )


def cosine_betas(config: ScheduleConfig) -> torch.Tensor:
    """Cosine betas (Nichol & Dhariwal 2021), clipped to ``max_beta``."""
    t = torch.arange(config.num_timesteps + 1, dtype=torch.float64) / config.num_timesteps
    f = torch.cos((t + config.cosine_offset) / (1 + config.cosine_offset) * math.pi / 2) ** 2
    betas = 1 - f[1:] / f[:-1]
    return betas.clamp(max=config.max_beta)


_BETA_FUNCTIONS = {"linear": linear_betas, "cosine": cosine_betas}


class NoiseSchedule:
    """Precomputed quantities of a discrete diffusion process ``q(x_t | x_0)``, t = 0 .. T-1.

    All tensors are float64 of shape ``(T,)`` on the CPU; :meth:`at` gathers values for a batch of
    timesteps and casts them to the sample's device and dtype.
    """

    def __init__(self, config: ScheduleConfig | None = None) -> None:
        self.config = config or ScheduleConfig()
        if self.config.kind not in _BETA_FUNCTIONS:
            raise ValueError(f"unknown noise schedule {self.config.kind!r}; choose one of {sorted(_BETA_FUNCTIONS)}")
        betas = _BETA_FUNCTIONS[self.config.kind](self.config)
        if not (betas > 0).all() or not (betas <= 1).all():
            raise ValueError(f"schedule {self.config} gives betas outside (0, 1]")
        self.betas = betas
        alphas = 1.0 - betas
        self.alphas_cumprod = torch.cumprod(alphas, dim=0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alphas_cumprod[:-1]])
        self.sqrt_alphas_cumprod = self.alphas_cumprod.sqrt()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - self.alphas_cumprod).sqrt()
        # q(x_{t-1} | x_t, x_0) (Ho et al. 2020, eq. 6-7)
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        clipped = torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]]) if len(betas) > 1 else (
            self.posterior_variance.clamp(min=1e-20)
        )
        self.posterior_log_variance_clipped = clipped.log()
        self.posterior_mean_coef1 = betas * self.alphas_cumprod_prev.sqrt() / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * alphas.sqrt() / (1.0 - self.alphas_cumprod)
        # "fixed large" variance: [posterior_variance[1], betas[1:]]
        large = torch.cat([self.posterior_variance[1:2], betas[1:]]) if len(betas) > 1 else betas.clone()
        self.fixed_large_variance = large
        self.fixed_large_log_variance = large.log()

    @property
    def num_timesteps(self) -> int:
        return self.config.num_timesteps

    @staticmethod
    def at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Gather ``values[t]`` and shape it ``(B, 1, 1, 1, 1)`` to broadcast against ``like``."""
        out = values.to(t.device)[t.long()].to(dtype=like.dtype, device=like.device)
        return out.view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sample ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` for a batch of timesteps ``t`` ``(B,)``."""
        return self.at(self.sqrt_alphas_cumprod, t, x0) * x0 + self.at(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise

    # ------------------------------------------------------------------ one timestep (sampling)

    def alpha_bar(self, t: int) -> float:
        """``alpha_bar`` at trained timestep ``t`` (1.0 at :data:`FINAL_TIMESTEP`).

        Raises:
            ValueError: ``t`` outside ``0 .. T-1`` (and not the final timestep).
        """
        if t == FINAL_TIMESTEP:
            return 1.0
        if not 0 <= t < self.num_timesteps:
            raise ValueError(f"timestep {t} is outside the schedule's range 0..{self.num_timesteps - 1}")
        return float(self.alphas_cumprod[t])

    def scale_known(self, t: int) -> float:
        """Signal scale ``sqrt(alpha_bar_t)`` of a clean image noised to timestep ``t`` (1.0 when clean)."""
        return math.sqrt(self.alpha_bar(t))

    def noise_std(self, t: int) -> float:
        """Noise scale ``sqrt(1 - alpha_bar_t)`` at timestep ``t`` (0.0 when clean)."""
        return math.sqrt(1.0 - self.alpha_bar(t))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: int) -> torch.Tensor:
        """``q(x_t | x_0)``: ``sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` (returns ``x0`` at ``FINAL_TIMESTEP``)."""
        abar = self.alpha_bar(t)
        if t == FINAL_TIMESTEP:
            return x0
        return math.sqrt(abar) * x0 + math.sqrt(1.0 - abar) * noise

    def renoise(self, x: torch.Tensor, t_from: int, t_to: int, noise: torch.Tensor) -> torch.Tensor:
        """``q(x_{t_to} | x_{t_from})`` for ``t_to > t_from``: move a sample back up the chain (RePaint jumps).

        Raises:
            ValueError: ``t_to`` is not noisier than ``t_from``.
        """
        ratio = self.alpha_bar(t_to) / self.alpha_bar(t_from)
        if not t_to > t_from or not ratio < 1.0:
            raise ValueError(f"renoise goes to a noisier timestep: got t_from={t_from}, t_to={t_to}")
        return math.sqrt(ratio) * x + math.sqrt(1.0 - ratio) * noise

    def respaced(self, timesteps: torch.Tensor) -> RespacedProcess:
        """The process restricted to a grid of trained timesteps (see :class:`RespacedProcess`)."""
        return RespacedProcess.from_grid(self, timesteps)

    def posterior_mean(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Mean of ``q(x_{t-1} | x_t, x0)``."""
        return self.at(self.posterior_mean_coef1, t, x_t) * x0 + self.at(self.posterior_mean_coef2, t, x_t) * x_t


@dataclass(frozen=True)
class RespacedProcess:
    """The discrete diffusion restricted to a grid of trained timesteps (improved-diffusion respacing).

    Index ``k`` runs over the grid in ascending order; ``abar_prev[0] = 1``. New betas are
    ``1 - abar_k / abar_{k-1}``, so each kept timestep keeps its trained noise level. All ``(n,)`` float64.
    """

    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    betas: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor
    fixed_large_variance: torch.Tensor

    @classmethod
    def from_grid(cls, schedule: NoiseSchedule, timesteps: torch.Tensor) -> RespacedProcess:
        """Build it from a schedule and a (descending or ascending) grid of trained timesteps."""
        ascending = timesteps.sort().values
        abar = schedule.alphas_cumprod[ascending]
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        betas = 1.0 - abar / abar_prev
        posterior_variance = betas * (1.0 - abar_prev) / (1.0 - abar)
        coef1 = betas * abar_prev.sqrt() / (1.0 - abar)
        coef2 = (1.0 - abar_prev) * (1.0 - betas).sqrt() / (1.0 - abar)
        # "fixed large": [posterior_variance[1], betas[1:]] (the entry at k = 0 is never used: no noise there)
        large = torch.cat([posterior_variance[1:2], betas[1:]]) if len(betas) > 1 else betas.clone()
        return cls(abar, abar_prev, betas, posterior_variance, coef1, coef2, large)


__all__ = ["FINAL_TIMESTEP", "NoiseSchedule", "RespacedProcess", "cosine_betas", "linear_betas"]
