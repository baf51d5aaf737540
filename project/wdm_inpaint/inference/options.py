"""Inference options: the :class:`InferenceOptions` dataclass, its defaults, the sampler names, the device."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wdm_inpaint.fill import CLASSICAL_FILLS
from wdm_inpaint.inference.acceleration import AccelerationConfig

DEFAULT_SAMPLER = "dpmpp_2m"
"""Default sampler of inference (chosen by measurement; see ``docs/performance.md``)."""

DEFAULT_STEPS = 10
"""Default number of network calls of the default sampler (chosen by measurement)."""

DIFFUSION_SAMPLERS = ("ddpm", "ddim", "dpmpp_2m")
"""Samplers that run the diffusion model."""

SAMPLER_CHOICES = DIFFUSION_SAMPLERS + tuple(CLASSICAL_FILLS)
"""Every value ``--sampler`` accepts: the diffusion samplers and the classical fills (no model)."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto``/``None`` -> CUDA when available, else CPU; anything else as given.

    Raises:
        RuntimeError: if CUDA is asked for but not available.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but no CUDA device is visible; use --device cpu or auto")
    return device


@dataclass(frozen=True)
class InferenceOptions:
    """How :class:`~wdm_inpaint.inference.inpainter.Inpainter` samples.

    Attributes:
        sampler: a diffusion sampler (``ddpm``, ``ddim``, ``dpmpp_2m``) or a classical fill (``harmonic``,
            ``mean``: no model is loaded).
        steps: network calls of the diffusion sampler (``None``: every trained timestep for ``ddpm``/``ddim``).
        samples: K independent samples averaged inside the mask.
        seed: run seed; each case samples with :func:`~wdm_inpaint.seeding.case_seed` of it.
        known_region: ``upstream`` (clean known tissue) or ``matched`` (scaled as in training).
        strength: fraction of the sampler's grid that is run; below 1 sampling starts from the mode's anchor
            noised to an intermediate timestep (``PipelineConfig.strength``).
        crop: sample only boxes around the mask (``None``: the checkpoint's ``preprocess.crop``; one box per
            group of far-apart components when the checkpoint's ``preprocess.crop_split`` is on).
        precision: network precision, ``auto`` (bfloat16 autocast on CUDA, float32 on CPU), ``float32`` or
            ``bfloat16`` (see :class:`~wdm_inpaint.inference.acceleration.AccelerationConfig`).
        channels_last: channels-last 3-D memory format (``None``: on CUDA).
        compile: ``torch.compile`` the network (a compilation per new crop size).
        compile_mode: ``torch.compile`` mode (``None``: its default).
        progress: per-step progress bars.
    """

    sampler: str = DEFAULT_SAMPLER
    steps: int | None = DEFAULT_STEPS
    samples: int = 1
    seed: int = 0
    known_region: str = "upstream"
    strength: float = 1.0
    crop: bool | None = None
    precision: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    compile_mode: str | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLER_CHOICES:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {list(SAMPLER_CHOICES)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        self.acceleration()  # validates precision

    def acceleration(self) -> AccelerationConfig:
        """The fast-path switches of these options."""
        return AccelerationConfig(
            precision=self.precision,  # type: ignore[arg-type]
            channels_last=self.channels_last,
            compile=self.compile,
            compile_mode=self.compile_mode,
        )

    @property
    def classical(self) -> bool:
        """Whether the sampler is a classical fill (no model)."""
        return self.sampler in CLASSICAL_FILLS


__all__ = [
    "DEFAULT_SAMPLER",
    "DEFAULT_STEPS",
    "DIFFUSION_SAMPLERS",
    "SAMPLER_CHOICES",
    "InferenceOptions",
    "resolve_device",
]
