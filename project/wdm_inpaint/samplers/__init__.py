"""Samplers: timestep math behind one ``set_timesteps`` / ``step`` contract; they know nothing about masks."""

from wdm_inpaint.diffusion.schedule import FINAL_TIMESTEP
from wdm_inpaint.samplers.base import Sampler, SamplerConfig, SamplerOutput
from wdm_inpaint.samplers.ddim import DDIMSampler
from wdm_inpaint.samplers.ddpm import DDPMSampler
from wdm_inpaint.samplers.dpmpp_2m import DPMSolverPP2MSampler
from wdm_inpaint.samplers.registry import SAMPLERS, build_sampler

__all__ = [
    "DDIMSampler",
    "DDPMSampler",
    "DPMSolverPP2MSampler",
    "FINAL_TIMESTEP",
    "SAMPLERS",
    "Sampler",
    "SamplerConfig",
    "SamplerOutput",
    "build_sampler",
]
