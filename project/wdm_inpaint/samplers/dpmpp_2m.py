"""DPM-Solver++ (2M) for data-prediction (x0) models (Lu et al. 2022, arXiv 2211.01095)."""

from __future__ import annotations

import math

import torch

from wdm_inpaint.diffusion.schedule import FINAL_TIMESTEP
from wdm_inpaint.samplers.base import LOWER_ORDER_FINAL_MAX_STEPS, Sampler


class DPMSolverPP2MSampler(Sampler):
    """Second-order multistep DPM-Solver++ in log-SNR ``lambda = log(alpha / sigma)``.

    With ``alpha = sqrt(abar)``, ``sigma = sqrt(1 - abar)``, ``h = lambda_t - lambda_s`` for a step from ``s`` to
    ``t`` and ``D0`` the x0 prediction at ``s``::

        first order:  x_t = (sigma_t / sigma_s) x_s - alpha_t (exp(-h) - 1) D0            (= DDIM, eta 0)
        second order: r = h_prev / h,  D1 = (D0 - D_prev) / r
                      x_t = (sigma_t / sigma_s) x_s - alpha_t (exp(-h) - 1) (D0 + D1 / 2)

    where ``D_prev`` and ``h_prev`` come from the previous grid step. The first step (no history) is first
    order; so is the step before the final one on short grids when ``lower_order_final`` is set. The final step
    goes to sigma = 0 and returns ``D0``. The solver is deterministic; ``generator`` is accepted and unused.
    History lives in the object: :meth:`reset` (or :meth:`set_timesteps`) clears it, and a step that does not
    follow the previous grid position falls back to first order.
    """

    name = "dpmpp_2m"

    def reset(self) -> None:
        self._history: tuple[int, float, torch.Tensor] | None = None

    def _log_snr(self, t: int) -> float:
        abar = self.schedule.alpha_bar(t)
        return 0.5 * (math.log(abar) - math.log1p(-abar))

    def _step(self, x0: torch.Tensor, index: int, x_t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        n = len(self.timesteps)
        s = int(self.timesteps[index])
        t = int(self.timesteps[index + 1]) if index + 1 < n else FINAL_TIMESTEP
        lambda_s = self._log_snr(s)
        history = self._history
        self._history = (index, lambda_s, x0.detach())
        if t == FINAL_TIMESTEP:
            return x0
        abar_s, abar_t = self.schedule.alpha_bar(s), self.schedule.alpha_bar(t)
        alpha_t = math.sqrt(abar_t)
        sigma_ratio = math.sqrt((1.0 - abar_t) / (1.0 - abar_s))
        h = self._log_snr(t) - lambda_s
        phi = math.expm1(-h)  # exp(-h) - 1
        lower_order_here = self.config.lower_order_final and index == n - 2 and n < LOWER_ORDER_FINAL_MAX_STEPS
        if history is None or history[0] != index - 1 or lower_order_here:
            return sigma_ratio * x_t - alpha_t * phi * x0
        _, lambda_prev, x0_prev = history
        r = (lambda_s - lambda_prev) / h
        d1 = (x0 - x0_prev) / r
        return sigma_ratio * x_t - alpha_t * phi * (x0 + 0.5 * d1)


__all__ = ["DPMSolverPP2MSampler"]
