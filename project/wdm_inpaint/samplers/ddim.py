"""DDIM sampling (Song et al. 2021) for x0-predicting models, on any grid of trained timesteps."""

from __future__ import annotations

import math

import torch

from wdm_inpaint.diffusion.schedule import FINAL_TIMESTEP
from wdm_inpaint.diffusion.noise import randn_as
from wdm_inpaint.samplers.base import Sampler


class DDIMSampler(Sampler):
    """DDIM update (Song et al. 2021, eq. 12) from timestep ``t`` to the next grid timestep ``s``::

        eps     = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)
        sigma   = eta * sqrt((1 - abar_s) / (1 - abar_t)) * sqrt(1 - abar_t / abar_s)
        x_s     = sqrt(abar_s) x0 + sqrt(1 - abar_s - sigma^2) eps + sigma z

    ``eta = 0`` is deterministic (a first-order solver of the probability-flow ODE); with ``eta = 1`` the mean
    is the DDPM posterior mean of the respaced chain and ``sigma^2`` its posterior variance, so DDIM equals
    ``ddpm`` with ``variance='fixed_small'``. ``ddim_noise='ddpm'`` draws the noise with the DDPM ``variance``
    option instead (``fixed_large`` reproduces upstream WDM's ``ddpm``). The grid maps sampled steps to trained
    timesteps as set by ``time_grid`` / ``spacing``; the last step goes to ``abar = 1`` and returns x0.
    """

    name = "ddim"

    def _on_set_timesteps(self) -> None:
        self.process = self.schedule.respaced(self.timesteps)

    def _step(self, x0: torch.Tensor, index: int, x_t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        t = int(self.timesteps[index])
        s = int(self.timesteps[index + 1]) if index + 1 < len(self.timesteps) else FINAL_TIMESTEP
        abar_t, abar_s = self.schedule.alpha_bar(t), self.schedule.alpha_bar(s)
        eta = self.config.eta
        sigma2 = eta**2 * (1.0 - abar_s) / (1.0 - abar_t) * (1.0 - abar_t / abar_s)
        eps = (x_t - math.sqrt(abar_t) * x0) / math.sqrt(1.0 - abar_t)
        mean = math.sqrt(abar_s) * x0 + math.sqrt(max(1.0 - abar_s - sigma2, 0.0)) * eps
        if s == FINAL_TIMESTEP:
            return mean
        if self.config.ddim_noise == "ddpm":
            k = len(self.timesteps) - 1 - index
            table = (
                self.process.fixed_large_variance
                if self.config.variance == "fixed_large"
                else self.process.posterior_variance
            )
            noise_var = float(table[k])
        else:
            noise_var = sigma2
        if noise_var == 0.0:
            return mean
        return mean + math.sqrt(noise_var) * randn_as(x_t, generator)


__all__ = ["DDIMSampler"]
