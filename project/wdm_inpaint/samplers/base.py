"""The sampler contract: timestep math for x0-predicting diffusion models behind one ``step`` signature.

A sampler knows the noise schedule and a grid of trained timesteps, nothing else: no model, no wavelets,
no masks. The pipeline owns the loop::

    sampler.set_timesteps(n)
    for t in sampler.timesteps:
        x0 = model(x, t)
        x = sampler.step(x0, t, x, generator).prev_sample

The last step always goes from the smallest timestep of the grid to the clean sample (``alpha_bar = 1``),
so every sampler returns an x0 estimate after exactly ``len(timesteps)`` model calls.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from wdm_inpaint.config import ConfigError
from wdm_inpaint.diffusion.schedule import FINAL_TIMESTEP, NoiseSchedule

X0Clip = Callable[[torch.Tensor], torch.Tensor]
"""Maps an x0 prediction to a valid one of the same shape (e.g. decode, clamp to [-1, 1], encode)."""

KARRAS_RHO_DEFAULT = 7.0
"""Exponent of the Karras et al. (2022) sigma ramp; 7 is the value of the paper."""

LOWER_ORDER_FINAL_MAX_STEPS = 15
"""``lower_order_final`` only acts on grids shorter than this (as in DPM-Solver's reference code)."""


@dataclass(frozen=True)
class SamplerConfig:
    """Which sampler to build and on which timestep grid.

    Attributes:
        name: ``ddpm`` (ancestral), ``ddim`` or ``dpmpp_2m`` (DPM-Solver++ 2M, data prediction).
        num_steps: number of model calls; ``None`` uses every trained timestep (``T``).
        time_grid: ``uniform`` (equally spaced trained timesteps, see ``spacing``) or ``karras`` (the sigma
            ramp of Karras et al. 2022 mapped to the nearest trained timesteps).
        spacing: for the uniform grid: ``trailing`` starts at ``T-1`` and ends at ``T/n - 1`` (the first step
            always starts from (nearly) pure noise); ``leading`` is ``k * (T // n)`` for ``k = n-1 .. 0`` (ends at
            ``t = 0`` but starts below ``T-1`` when ``n < T``).
        karras_rho: exponent of the Karras ramp.
        eta: DDIM stochasticity; 0 is deterministic, 1 has the variance of the DDPM posterior.
        variance: noise variance of ``ddpm``: ``fixed_large`` (betas; upstream) or ``fixed_small`` (posterior
            variance). With fewer steps than ``T`` both are those of the respaced process.
        ddim_noise: ``eta`` draws DDIM's noise with ``sigma_eta``; ``ddpm`` (only with ``eta = 1``) draws it with
            the DDPM ``variance`` option instead, so that DDIM reproduces ``ddpm`` exactly.
        lower_order_final: ``dpmpp_2m`` takes a first-order step before the final one on grids shorter than
            ``LOWER_ORDER_FINAL_MAX_STEPS`` (more stable with few steps). The final step itself, to sigma = 0, is
            always first order and returns the x0 prediction.
        timesteps: an explicit grid of trained timesteps (strictly decreasing); overrides ``num_steps``,
            ``time_grid`` and ``spacing`` (e.g. to start below T-1 where the known context is still visible).
    """

    name: Literal["ddpm", "ddim", "dpmpp_2m"] = "ddpm"
    num_steps: int | None = None
    time_grid: Literal["uniform", "karras"] = "uniform"
    spacing: Literal["trailing", "leading"] = "trailing"
    karras_rho: float = KARRAS_RHO_DEFAULT
    eta: float = 0.0
    variance: Literal["fixed_large", "fixed_small"] = "fixed_large"
    ddim_noise: Literal["eta", "ddpm"] = "eta"
    lower_order_final: bool = True
    timesteps: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.timesteps is not None:
            grid = list(self.timesteps)
            if not grid or any(a <= b for a, b in zip(grid, grid[1:])) or grid[-1] < 0:
                raise ConfigError(
                    f"SamplerConfig.timesteps must be a non-empty, strictly decreasing list of timesteps >= 0, "
                    f"got {grid}"
                )
        if self.num_steps is not None and self.num_steps < 1:
            raise ConfigError(f"SamplerConfig.num_steps must be >= 1 (or null for all steps), got {self.num_steps}")
        if not self.eta >= 0:
            raise ConfigError(f"SamplerConfig.eta must be >= 0, got {self.eta}")
        if not self.karras_rho > 0:
            raise ConfigError(f"SamplerConfig.karras_rho must be > 0, got {self.karras_rho}")
        if self.ddim_noise == "ddpm" and self.eta != 1.0:
            raise ConfigError(
                f"SamplerConfig.ddim_noise='ddpm' needs eta=1 (the DDPM posterior mean), got eta={self.eta}"
            )


@dataclass
class SamplerOutput:
    """Result of one sampler step.

    Attributes:
        prev_sample: the sample at the next (smaller) timestep of the grid, shape of ``x_t``.
        pred_original_sample: the (clipped) x0 prediction the step used, shape of ``x_t``.
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


def uniform_timesteps(num_train: int, num_steps: int, spacing: str) -> torch.Tensor:
    """Equally spaced trained timesteps, descending.

    Args:
        num_train: trained timesteps T.
        num_steps: grid length n, 1 <= n <= T.
        spacing: ``trailing`` (``floor((n-i) T / n) - 1``, i = 0..n-1: starts at T-1) or ``leading``
            (``(n-1-i) * (T // n)``: ends at 0).

    Returns:
        ``(n,)`` int64, strictly decreasing.
    """
    i = torch.arange(num_steps, dtype=torch.int64)
    if spacing == "trailing":
        return (num_steps - i) * num_train // num_steps - 1
    if spacing == "leading":
        return (num_steps - 1 - i) * (num_train // num_steps)
    raise ConfigError(f"unknown timestep spacing {spacing!r}; choose 'trailing' or 'leading'")


def karras_timesteps(alphas_cumprod: torch.Tensor, num_steps: int, rho: float = KARRAS_RHO_DEFAULT) -> torch.Tensor:
    """Karras et al. (2022) sigma ramp mapped to the nearest trained timesteps (in log sigma), descending.

    ``sigma_t = sqrt((1 - abar_t) / abar_t)``; the ramp runs from ``sigma_{T-1}`` to ``sigma_0`` with
    ``sigma_i = (smax^(1/rho) + i/(n-1) (smin^(1/rho) - smax^(1/rho)))^rho``. Where rounding maps two ramp
    points to the same timestep the grid is spread to the nearest distinct ones, so it always has ``n`` entries.

    Args:
        alphas_cumprod: ``(T,)`` float64 of the trained schedule.
        num_steps: grid length n, 1 <= n <= T.
        rho: ramp exponent.

    Returns:
        ``(n,)`` int64, strictly decreasing, first entry T-1.
    """
    num_train = len(alphas_cumprod)
    if num_train == 1:
        return torch.zeros(1, dtype=torch.int64)
    log_sigmas = 0.5 * ((1.0 - alphas_cumprod) / alphas_cumprod).log()
    smin, smax = float(log_sigmas[0].exp()), float(log_sigmas[-1].exp())
    ramp = torch.linspace(0.0, 1.0, num_steps, dtype=torch.float64)
    sigmas = (smax ** (1 / rho) + ramp * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    target = sigmas.log()
    # nearest trained timestep in log sigma (log sigma increases with t)
    hi = torch.searchsorted(log_sigmas, target).clamp(1, num_train - 1)
    lo = hi - 1
    pick_hi = (log_sigmas[hi] - target).abs() <= (target - log_sigmas[lo]).abs()
    steps = torch.where(pick_hi, hi, lo).tolist()
    # make the grid strictly decreasing inside [0, T-1] while staying as close as possible to the ramp
    for i in range(num_steps - 2, -1, -1):
        steps[i] = max(steps[i], steps[i + 1] + 1)
    steps[0] = min(steps[0], num_train - 1)
    for i in range(1, num_steps):
        steps[i] = min(steps[i], steps[i - 1] - 1)
    return torch.tensor(steps, dtype=torch.int64)


def _as_int_timestep(t: int | torch.Tensor) -> int:
    if isinstance(t, torch.Tensor):
        if t.numel() == 0:
            raise ValueError("step() got an empty timestep tensor")
        flat = t.reshape(-1)
        if not bool((flat == flat[0]).all()):
            raise ValueError(f"step() needs one timestep for the whole batch, got {flat.tolist()}")
        return int(flat[0].item())
    if isinstance(t, bool) or not isinstance(t, int):
        raise TypeError(f"timestep must be an int or a tensor, got {type(t).__name__}")
    return t


class Sampler(ABC):
    """Base class: timestep grid, validation, x0 clipping and helpers shared by every sampler.

    Args:
        schedule: the noise schedule of the diffusion process the model was trained (or is sampled) with.
        config: sampler options; ``config.num_steps`` sets the initial grid.
        clip_x0: optional map applied to every x0 prediction before it is used (image-space clamp).
    """

    name: ClassVar[str] = ""

    def __init__(self, schedule: NoiseSchedule, config: SamplerConfig | None = None, clip_x0: X0Clip | None = None):
        self.schedule = schedule
        self.config = config or SamplerConfig(name=self.name)  # type: ignore[arg-type]
        if self.config.name != self.name:
            raise ConfigError(
                f"{type(self).__name__} needs SamplerConfig(name={self.name!r}), got {self.config.name!r}"
            )
        self.clip_x0 = clip_x0
        self._timesteps = torch.zeros(0, dtype=torch.int64)
        self._position: dict[int, int] = {}
        if self.config.timesteps is not None:
            self.set_custom_timesteps(self.config.timesteps)
        else:
            self.set_timesteps(self.config.num_steps if self.config.num_steps is not None else schedule.num_timesteps)

    # ------------------------------------------------------------------ grid

    @property
    def num_train_timesteps(self) -> int:
        """Number of timesteps T of the schedule."""
        return self.schedule.num_timesteps

    @property
    def timesteps(self) -> torch.Tensor:
        """``(n,)`` int64 trained timesteps of the grid, descending; the loop calls the model at each one."""
        return self._timesteps

    @property
    def num_model_calls(self) -> int:
        """Model evaluations of one pass over the grid (one per timestep)."""
        return len(self._timesteps)

    def set_timesteps(self, num_steps: int) -> None:
        """Choose a grid of ``num_steps`` trained timesteps (and reset multistep history).

        Raises:
            TypeError: if ``num_steps`` is not an integer.
            ValueError: if ``num_steps`` is not in ``[1, T]``.
        """
        if isinstance(num_steps, bool) or not isinstance(num_steps, int):
            raise TypeError(f"{type(self).__name__}.set_timesteps: num_steps must be an int, got {num_steps!r}")
        num_train = self.num_train_timesteps
        if not 1 <= num_steps <= num_train:
            raise ValueError(
                f"{type(self).__name__}.set_timesteps: num_steps must be between 1 and the schedule's "
                f"T={num_train}, got {num_steps}"
            )
        if self.config.time_grid == "karras":
            grid = karras_timesteps(self.schedule.alphas_cumprod, num_steps, self.config.karras_rho)
        else:
            grid = uniform_timesteps(num_train, num_steps, self.config.spacing)
        self._install_grid(grid)

    def set_custom_timesteps(self, timesteps: Sequence[int] | torch.Tensor) -> None:
        """Use an explicit grid of trained timesteps (and reset multistep history).

        Raises:
            ValueError: if the grid is empty, not strictly decreasing or outside ``[0, T-1]``.
        """
        grid = torch.as_tensor(list(map(int, timesteps)) if not isinstance(timesteps, torch.Tensor) else timesteps)
        grid = grid.to(torch.int64).reshape(-1)
        num_train = self.num_train_timesteps
        if len(grid) == 0 or bool((grid[:-1] <= grid[1:]).any()) or int(grid.min()) < 0 or int(grid.max()) >= num_train:
            raise ValueError(
                f"{type(self).__name__}.set_custom_timesteps: need a strictly decreasing list of timesteps in "
                f"[0, {num_train - 1}], got {grid.tolist()}"
            )
        self._install_grid(grid)

    def _install_grid(self, grid: torch.Tensor) -> None:
        self._timesteps = grid
        self._position = {int(t): i for i, t in enumerate(grid.tolist())}
        self._on_set_timesteps()
        self.reset()

    def _on_set_timesteps(self) -> None:
        """Hook: precompute per-grid quantities after the grid changed."""

    def reset(self) -> None:
        """Forget multistep history (call after the pipeline moved the sample off the grid order)."""

    def index_of(self, t: int | torch.Tensor) -> int:
        """Position of timestep ``t`` in :attr:`timesteps`.

        Raises:
            ValueError: if ``t`` is not on the grid.
        """
        value = _as_int_timestep(t)
        if value not in self._position:
            raise ValueError(
                f"{type(self).__name__}: timestep {value} is not on the grid set by set_timesteps "
                f"({len(self._timesteps)} steps from {int(self._timesteps[0])} to {int(self._timesteps[-1])})"
            )
        return self._position[value]

    def prev_timestep(self, t: int | torch.Tensor) -> int:
        """The timestep the step from ``t`` goes to: the next grid entry, or ``FINAL_TIMESTEP`` after the last."""
        i = self.index_of(t)
        return int(self._timesteps[i + 1]) if i + 1 < len(self._timesteps) else FINAL_TIMESTEP

    # ------------------------------------------------------------------ stepping

    def step(
        self,
        model_output: torch.Tensor,
        t: int | torch.Tensor,
        x_t: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> SamplerOutput:
        """One step from grid timestep ``t`` to the next one (or to the clean sample after the last).

        Args:
            model_output: the model's x0 prediction at ``(x_t, t)``, same shape as ``x_t``.
            t: current timestep (int or a tensor holding one value for the whole batch); must be on the grid.
            x_t: current sample, any shape (e.g. ``(B, 8, D, H, W)`` packed wavelets).
            generator: random source of stochastic samplers.

        Returns:
            :class:`SamplerOutput` with ``prev_sample`` and the (clipped) ``pred_original_sample``.
        """
        if model_output.shape != x_t.shape:
            raise ValueError(
                f"{type(self).__name__}.step: model_output shape {tuple(model_output.shape)} differs from "
                f"x_t shape {tuple(x_t.shape)}"
            )
        index = self.index_of(t)
        x0 = self.clip_x0(model_output) if self.clip_x0 is not None else model_output
        prev = self._step(x0, index, x_t, generator)
        return SamplerOutput(prev_sample=prev, pred_original_sample=x0)

    @abstractmethod
    def _step(self, x0: torch.Tensor, index: int, x_t: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Sample at the next grid position, given the clipped x0 prediction at grid position ``index``."""


__all__ = [
    "Sampler",
    "SamplerConfig",
    "SamplerOutput",
    "X0Clip",
    "karras_timesteps",
    "uniform_timesteps",
]
