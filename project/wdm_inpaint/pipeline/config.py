"""Typed configuration of the inpainting pipeline, and named presets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from wdm_inpaint.config import ConfigError, ScheduleConfig, from_dict
from wdm_inpaint.samplers.base import SamplerConfig

FAKING_IT_SAMPLING_TIMESTEPS = 5000
"""T of the schedule the reference BraTS 2024 submission rebuilt for sampling (its ``sampling_steps``)."""

FAKING_IT_SEED = 42
"""Seed of the reference submission's first case."""


@dataclass(frozen=True)
class PipelineConfig:
    """How to inpaint with a trained model.

    Attributes:
        sampler: sampler and timestep grid (see :class:`~wdm_inpaint.samplers.base.SamplerConfig`).
        num_samples: K independent samples, averaged inside the mask (an estimate of the posterior mean).
        seed: seed of the random streams; sample k draws from its own stream spawned from this seed.
        clip_x0: clamp every x0 prediction to [-1, 1] in image space (decode, clamp, encode), as upstream.
        known_region: conditional modes: what the known tissue looks like in the sample after each step:
            ``upstream`` pastes the clean input (the reference code) and ``matched`` pastes it scaled by
            ``sqrt(alpha_bar_t)`` of the step's target timestep, as training showed it.
        init: conditional modes: the starting sample. ``noised`` is the training distribution at the first
            timestep (known region as ``known_region`` says, noise ``sqrt(1 - abar) * dwt3d(eps * mask)`` in the
            region, no signal there); ``upstream`` is the reference code's ``encode(image * mask + eps * mask)``
            (zeros outside the region at the first step, noise packed like an image).
        strength: conditional modes: the fraction of the sampler's timestep grid that is run (diffusers'
            img2img ``strength``). 1 starts at the first grid timestep; below 1 the first grid timesteps are
            skipped and the region starts as the mode's anchor (the harmonic prior of the ``prior`` mode, zeros
            for modes without one) noised to the first remaining timestep. At least one step always runs.
        sampling_schedule: noise schedule to sample with; ``None`` uses the model's trained schedule.
        timestep_input: what the model is told when ``sampling_schedule`` differs from the trained one:
            ``trained`` feeds the trained timestep with the nearest noise level, ``raw`` feeds the sampling
            schedule's index unchanged (the reference submission: t up to 4999 for a model trained on 0..999).
        jump_length: unconditional (``default``) mode: RePaint resampling jumps go back this many grid steps.
        jump_n_sample: unconditional mode: each jump point is visited this many times (1 = no resampling).
        autocast: run the network under bfloat16 autocast on the model's device (weights, sampler arithmetic,
            wavelet transforms and the known-region paste stay float32).
        channels_last: hand the network its input in channels-last 3-D memory format (give the model the same
            format: ``model.to(memory_format=torch.channels_last_3d)``).
        progress: show a progress bar over the model calls.
    """

    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    num_samples: int = 1
    seed: int = 0
    clip_x0: bool = True
    known_region: Literal["upstream", "matched"] = "upstream"
    init: Literal["noised", "upstream"] = "noised"
    strength: float = 1.0
    sampling_schedule: ScheduleConfig | None = None
    timestep_input: Literal["trained", "raw"] = "trained"
    jump_length: int = 10
    jump_n_sample: int = 1
    autocast: bool = False
    channels_last: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.num_samples < 1:
            raise ConfigError(f"PipelineConfig.num_samples must be >= 1, got {self.num_samples}")
        if self.jump_length < 1:
            raise ConfigError(f"PipelineConfig.jump_length must be >= 1, got {self.jump_length}")
        if self.jump_n_sample < 1:
            raise ConfigError(
                f"PipelineConfig.jump_n_sample must be >= 1 (1 = no resampling), got {self.jump_n_sample}"
            )
        if not 0.0 < self.strength <= 1.0:
            raise ConfigError(f"PipelineConfig.strength must lie in (0, 1], got {self.strength}")
        if self.seed < 0:
            raise ConfigError(f"PipelineConfig.seed must be >= 0, got {self.seed}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineConfig:
        """Build from a plain mapping (as read from YAML/JSON), checking keys and types."""
        return from_dict(cls, data)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> PipelineConfig:
        """A named configuration (see :data:`PRESETS`), optionally with some fields replaced.

        Raises:
            ConfigError: for an unknown preset name.
        """
        if name not in PRESETS:
            raise ConfigError(f"unknown pipeline preset {name!r}; choose one of {sorted(PRESETS)}")
        data = {**PRESETS[name], **overrides}
        return cls(**data)


PRESETS: dict[str, dict[str, Any]] = {
    "faking_it_submission": {
        "sampler": SamplerConfig(name="ddpm", variance="fixed_large"),
        "sampling_schedule": ScheduleConfig(kind="linear", num_timesteps=FAKING_IT_SAMPLING_TIMESTEPS),
        "timestep_input": "raw",
        "known_region": "upstream",
        "init": "upstream",
        "clip_x0": True,
        "num_samples": 1,
        "seed": FAKING_IT_SEED,
    },
    "ddpm": {"sampler": SamplerConfig(name="ddpm")},
    "dpmpp_2m_50": {"sampler": SamplerConfig(name="dpmpp_2m", num_steps=50)},
}
"""Named pipeline configurations.

* ``faking_it_submission``: the reference BraTS 2024 submission, bit for bit in behaviour: AKH model, the
  sampling schedule rebuilt as linear with T=5000, the raw index t fed to the model, 5000 ancestral DDPM steps
  (fixed-large variance), the clean known region pasted after each step, the reference init (the first step sees
  zeros outside the region), image-space x0 clipping, one sample, seed 42.
* ``ddpm``: ancestral DDPM over every trained timestep (upstream WDM sampling).
* ``dpmpp_2m_50``: DPM-Solver++(2M), 50 model calls.
"""


__all__ = ["FAKING_IT_SAMPLING_TIMESTEPS", "FAKING_IT_SEED", "PRESETS", "PipelineConfig"]
