"""Ancestral DDPM sampling (Ho et al. 2020) for x0-predicting models, on any grid of trained timesteps."""

from __future__ import annotations

import math

import torch

from wdm_inpaint.diffusion.noise import randn_as
from wdm_inpaint.samplers.base import Sampler


class DDPMSampler(Sampler):
    """Ancestral sampling from the posterior ``q(x_prev | x_t, x0_hat)``.

    With fewer steps than ``T`` the process is respaced (Nichol & Dhariwal 2021): the betas of the grid are
    ``1 - abar_k / abar_{k-1}``, so each step is an exact posterior step of the respaced chain. The variance is
    ``fixed_large`` (the respaced betas, with the first entry replaced by the posterior variance; upstream WDM)
    or ``fixed_small`` (the posterior variance). The last step adds no noise and returns the (clipped) x0
    prediction, because its posterior coefficients are exactly 1 and 0.
    """

    name = "ddpm"

    def _on_set_timesteps(self) -> None:
        self.process = self.schedule.respaced(self.timesteps)

    def step_variance(self, index: int) -> float:
        """Noise variance added by the step from grid position ``index`` (0 at the last step)."""
        k = len(self.timesteps) - 1 - index  # ascending index of the respaced process
        if k == 0:
            return 0.0
        table = (
            self.process.fixed_large_variance
            if self.config.variance == "fixed_large"
            else self.process.posterior_variance
        )
        return float(table[k])

    def _step(self, x0: torch.Tensor, index: int, x_t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        k = len(self.timesteps) - 1 - index
        coef1 = float(self.process.posterior_mean_coef1[k])
        coef2 = float(self.process.posterior_mean_coef2[k])
        mean = coef1 * x0 + coef2 * x_t
        variance = self.step_variance(index)
        if variance == 0.0:
            return mean
        return mean + math.sqrt(variance) * randn_as(x_t, generator)


__all__ = ["DDPMSampler"]
