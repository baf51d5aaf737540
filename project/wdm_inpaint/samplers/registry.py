"""Build a sampler by name from a :class:`~wdm_inpaint.samplers.base.SamplerConfig`."""

from __future__ import annotations

from wdm_inpaint.config import ConfigError
from wdm_inpaint.diffusion.schedule import NoiseSchedule
from wdm_inpaint.samplers.base import Sampler, SamplerConfig, X0Clip
from wdm_inpaint.samplers.ddim import DDIMSampler
from wdm_inpaint.samplers.ddpm import DDPMSampler
from wdm_inpaint.samplers.dpmpp_2m import DPMSolverPP2MSampler

SAMPLERS: dict[str, type[Sampler]] = {
    DDPMSampler.name: DDPMSampler,
    DDIMSampler.name: DDIMSampler,
    DPMSolverPP2MSampler.name: DPMSolverPP2MSampler,
}
"""Sampler classes by config name."""


def build_sampler(config: SamplerConfig, schedule: NoiseSchedule, clip_x0: X0Clip | None = None) -> Sampler:
    """Build the sampler ``config.name`` on ``schedule``, with its grid set to ``config.num_steps``.

    Args:
        config: sampler options.
        schedule: the noise schedule to sample.
        clip_x0: optional map applied to every x0 prediction (e.g. image-space clamp to [-1, 1]).

    Raises:
        ConfigError: on an unknown sampler name.
        ValueError: if ``config.num_steps`` exceeds the schedule's T.
    """
    if config.name not in SAMPLERS:
        raise ConfigError(f"unknown sampler {config.name!r}; choose one of {sorted(SAMPLERS)}")
    return SAMPLERS[config.name](schedule, config, clip_x0)


__all__ = ["SAMPLERS", "build_sampler"]
