"""Noise schedules of the trained diffusion process (all arrays in float64, as upstream computes them)."""

from __future__ import annotations

import math

import torch

from wdm_inpaint.config import ScheduleConfig

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

    def posterior_mean(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Mean of ``q(x_{t-1} | x_t, x0)``."""
        return self.at(self.posterior_mean_coef1, t, x_t) * x0 + self.at(self.posterior_mean_coef2, t, x_t) * x_t


__all__ = ["NoiseSchedule", "cosine_betas", "linear_betas"]
