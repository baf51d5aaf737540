"""Make a template brain look like another subject on another scanner (MONAI random transforms).

A template is one brain; training on it alone teaches one anatomy and one noise-free contrast. Each generated
case therefore passes its template through two seeded MONAI chains:

* **anatomy**: one random smooth deformation, affine (rotation, scaling) plus elastic, applied to the image
  (trilinear) and to the brain mask (nearest) together (``Rand3DElasticd``);
* **scanner**: a multiplicative bias field (``RandBiasFieldd``), a gamma change of contrast
  (``RandAdjustContrastd``), a slight blur (``RandGaussianSmoothd``) and Rician noise (``RandRicianNoised``) at
  a realistic SNR. The background stays zero (the cases are skull-stripped).

Intensities are handled in units of the brain's :data:`REFERENCE_PERCENTILE` (1.0 there), so noise levels and
bias coefficients mean the same on every template. The chains are seeded from the case's generator, and
:func:`vary_subject` returns what was drawn, for the case's metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from monai.transforms import (
    Compose,
    Rand3DElasticd,
    RandAdjustContrastd,
    RandBiasFieldd,
    RandGaussianSmoothd,
    RandRicianNoised,
)

from wdm_inpaint.config import ConfigError

REFERENCE_PERCENTILE = 99.0
"""Brain-intensity percentile that defines the unit of the intensity changes."""

MAX_SEED = 2**31 - 1
"""MONAI's ``set_random_state`` takes seeds below this bound."""

IMAGE_KEY = "image"
BRAIN_KEY = "brain"
BRAIN_THRESHOLD = 0.5
"""The resampled brain mask (nearest neighbour, 0/1) is brain above this value."""


@dataclass(frozen=True)
class SubjectConfig:
    """How much a generated case differs from its template.

    Attributes:
        kind: ``subject`` (anatomy and scanner changes), ``noise`` (Rician noise of ``noise_std`` only, no other
            change: a noisy scan of the same brain) or ``none``.
        elastic_sigma: smoothing range (voxels) of the elastic displacement field.
        elastic_magnitude: magnitude range of the elastic displacement field (MONAI's units).
        rotate_radians: rotation range about each axis, +-radians.
        scale_fraction: scaling range of each axis, +-fraction.
        bias_coeff: bias-field coefficient range (log-space Legendre polynomials, degree 3).
        bias_prob: probability of a bias field.
        gamma: contrast gamma range.
        gamma_prob: probability of a gamma change.
        blur_sigma: Gaussian blur sigma range (voxels).
        blur_prob: probability of a blur.
        noise_std: Rician noise level (in brain-percentile units; ``subject`` draws it uniformly below this).
        noise_prob: probability of noise (``subject``; ``noise`` always adds it).
    """

    kind: Literal["subject", "noise", "none"] = "subject"
    elastic_sigma: tuple[float, float] = (6.0, 9.0)
    elastic_magnitude: tuple[float, float] = (40.0, 120.0)
    rotate_radians: float = 0.1
    scale_fraction: float = 0.06
    bias_coeff: tuple[float, float] = (0.0, 0.25)
    bias_prob: float = 0.8
    gamma: tuple[float, float] = (0.75, 1.35)
    gamma_prob: float = 0.8
    blur_sigma: tuple[float, float] = (0.3, 0.8)
    blur_prob: float = 0.5
    noise_std: float = 0.04
    noise_prob: float = 0.8

    def __post_init__(self) -> None:
        probs = {"bias_prob": self.bias_prob, "gamma_prob": self.gamma_prob, "blur_prob": self.blur_prob,
                 "noise_prob": self.noise_prob}
        bad = {k: v for k, v in probs.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ConfigError(f"SubjectConfig probabilities must lie in [0, 1], got {bad}")
        if self.noise_std < 0 or self.rotate_radians < 0 or self.scale_fraction < 0:
            raise ConfigError("SubjectConfig.noise_std, rotate_radians and scale_fraction must be >= 0")


NOISY_SCAN_STD = 0.03
"""Rician noise level of the noisy held-out scans (``kind='noise'``): about the SNR of a clinical 3D T1."""


def _anatomy(config: SubjectConfig) -> Compose:
    return Compose([
        Rand3DElasticd(
            keys=[IMAGE_KEY, BRAIN_KEY],
            sigma_range=config.elastic_sigma,
            magnitude_range=config.elastic_magnitude,
            prob=1.0,
            rotate_range=(config.rotate_radians,) * 3,
            scale_range=(config.scale_fraction,) * 3,
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        )
    ])


def _scanner(config: SubjectConfig) -> Compose:
    if config.kind == "noise":
        return Compose([RandRicianNoised(keys=IMAGE_KEY, prob=1.0, std=config.noise_std, sample_std=False)])
    sigma = config.blur_sigma
    return Compose([
        RandBiasFieldd(keys=IMAGE_KEY, coeff_range=config.bias_coeff, prob=config.bias_prob),
        RandAdjustContrastd(keys=IMAGE_KEY, gamma=config.gamma, prob=config.gamma_prob),
        RandGaussianSmoothd(keys=IMAGE_KEY, sigma_x=sigma, sigma_y=sigma, sigma_z=sigma, prob=config.blur_prob),
        RandRicianNoised(keys=IMAGE_KEY, prob=config.noise_prob, std=config.noise_std, sample_std=True),
    ])


def _applied(chain: Compose) -> dict[str, bool]:
    return {type(t).__name__: bool(getattr(t, "_do_transform", True)) for t in chain.transforms}


def vary_subject(
    image: np.ndarray, brain: np.ndarray, rng: np.random.Generator, config: SubjectConfig
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A new subject from a template brain.

    Args:
        image: ``(X, Y, Z)`` T1, zero outside the brain.
        brain: ``(X, Y, Z)`` bool brain mask.
        rng: the case's generator (the MONAI chains are seeded from it).
        config: what to change.

    Returns:
        ``(image, brain, info)``: the float32 image in the input's intensity scale (zero outside the new brain),
        the new brain mask, and what was drawn (seeds and which transforms fired).
    """
    if config.kind == "none":
        return image.astype(np.float32), brain.astype(bool), {"kind": "none"}
    unit = float(np.percentile(image[brain], REFERENCE_PERCENTILE))
    data = {
        IMAGE_KEY: torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32) / unit)[None],
        BRAIN_KEY: torch.from_numpy(np.ascontiguousarray(brain, dtype=np.float32))[None],
    }
    info: dict[str, Any] = {"kind": config.kind}
    if config.kind == "subject":
        anatomy = _anatomy(config)
        info["anatomy_seed"] = int(rng.integers(MAX_SEED))
        anatomy.set_random_state(seed=info["anatomy_seed"])
        data = anatomy(data)
    scanner = _scanner(config)
    info["scanner_seed"] = int(rng.integers(MAX_SEED))
    scanner.set_random_state(seed=info["scanner_seed"])
    new_brain = torch.as_tensor(data[BRAIN_KEY])[0].numpy() > BRAIN_THRESHOLD
    data[IMAGE_KEY] = torch.as_tensor(data[IMAGE_KEY]).clamp_min(0.0)
    data = scanner(data)
    info["applied"] = _applied(scanner)
    out = torch.as_tensor(data[IMAGE_KEY])[0].numpy().astype(np.float32) * unit
    out = np.where(new_brain, np.maximum(out, 0.0), 0.0).astype(np.float32)
    return out, new_brain, info


__all__ = ["NOISY_SCAN_STD", "REFERENCE_PERCENTILE", "SubjectConfig", "vary_subject"]
