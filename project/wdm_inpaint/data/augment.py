"""Training augmentation: flips, small affine, elastic deformation, bias field and gamma.

The chain runs on native-intensity, channel-first volumes (after reorientation, before padding and the
quantile normalisation). Spatial transforms move the image and its masks together (bilinear for the image,
nearest for masks); intensity transforms touch the image only. Seed it with ``Compose.set_random_state``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from monai.transforms import (
    Compose,
    Rand3DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandFlipd,
)

from wdm_inpaint.config import ConfigError
from wdm_inpaint.data.region_masks import RandRegionMaskd


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the training augmentation (a probability of 0 disables a transform).

    Attributes:
        flip_prob: probability of flipping along each axis of ``flip_axes``.
        flip_axes: spatial axes that may be flipped (in the model orientation; axis 0 is left-right for RAS,
            the only anatomically plausible mirror).
        affine_prob: probability of a small random affine transform.
        rotate_range_deg: maximum rotation about each axis, degrees.
        scale_range: maximum relative scaling per axis (0.1 = +-10 %).
        translate_range: maximum translation per axis, voxels.
        elastic_prob: probability of an elastic deformation (slow on full volumes).
        elastic_sigma_range: smoothing sigma range of the elastic displacement field, voxels.
        elastic_magnitude_range: magnitude range of the elastic displacement field.
        bias_field_prob: probability of a multiplicative smooth bias field.
        bias_field_coeff_range: range of the bias-field polynomial coefficients.
        bias_field_degree: degree of the bias-field polynomial.
        gamma_prob: probability of a gamma (contrast) change.
        gamma_range: range of the gamma exponent.
        region_prob: probability that the first mask (the healthy region) is replaced by a random blob inside
            the brain, away from the other masks (:class:`~wdm_inpaint.data.region_masks.RandRegionMaskd`).
        region_radius_range: mean radius range of those blobs, voxels.
    """

    flip_prob: float = 0.5
    flip_axes: tuple[int, ...] = (0,)
    affine_prob: float = 0.3
    rotate_range_deg: float = 10.0
    scale_range: float = 0.1
    translate_range: float = 5.0
    elastic_prob: float = 0.0
    elastic_sigma_range: tuple[float, float] = (5.0, 7.0)
    elastic_magnitude_range: tuple[float, float] = (50.0, 150.0)
    bias_field_prob: float = 0.3
    bias_field_coeff_range: tuple[float, float] = (0.0, 0.1)
    bias_field_degree: int = 3
    gamma_prob: float = 0.3
    gamma_range: tuple[float, float] = (0.7, 1.5)
    region_prob: float = 0.0
    region_radius_range: tuple[float, float] = (5.0, 14.0)

    def __post_init__(self) -> None:
        for name in ("flip_prob", "affine_prob", "elastic_prob", "bias_field_prob", "gamma_prob", "region_prob"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"AugmentConfig.{name} must be in [0, 1], got {value}")
        for axis in self.flip_axes:
            if axis not in (0, 1, 2):
                raise ConfigError(f"AugmentConfig.flip_axes must name spatial axes 0, 1 or 2, got {axis}")
        for name in ("elastic_sigma_range", "elastic_magnitude_range", "bias_field_coeff_range", "gamma_range"):
            low, high = getattr(self, name)
            if low > high:
                raise ConfigError(f"AugmentConfig.{name} must be (low, high) with low <= high, got {(low, high)}")
        if self.gamma_range[0] <= 0:
            raise ConfigError(f"AugmentConfig.gamma_range must be positive, got {self.gamma_range}")


def build_augmentation(image_keys: Sequence[str], mask_keys: Sequence[str], config: AugmentConfig) -> Compose:
    """The augmentation chain for dictionaries holding (1, D, H, W) volumes.

    Args:
        image_keys: intensity images (bilinear resampling, intensity transforms).
        mask_keys: binary masks (nearest resampling, no intensity transforms).
        config: probabilities and ranges.

    Returns:
        A MONAI ``Compose``; call ``set_random_state(seed)`` on it for reproducible draws.
    """
    image_keys = list(image_keys)
    mask_keys = list(mask_keys)
    keys = image_keys + mask_keys
    modes = ["bilinear"] * len(image_keys) + ["nearest"] * len(mask_keys)
    chain: list = []
    if config.region_prob > 0 and image_keys and mask_keys:
        chain.append(RandRegionMaskd(mask_keys[0], image_keys[0], avoid_keys=mask_keys[1:], prob=config.region_prob,
                                     radius_range=config.region_radius_range))
    if config.flip_prob > 0:
        chain += [RandFlipd(keys=keys, prob=config.flip_prob, spatial_axis=axis) for axis in config.flip_axes]
    if config.affine_prob > 0:
        angle = math.radians(config.rotate_range_deg)
        chain.append(
            RandAffined(
                keys=keys,
                prob=config.affine_prob,
                rotate_range=(angle, angle, angle),
                scale_range=(config.scale_range,) * 3,
                translate_range=(config.translate_range,) * 3,
                mode=modes,
                padding_mode="zeros",
            )
        )
    if config.elastic_prob > 0:
        chain.append(
            Rand3DElasticd(
                keys=keys,
                prob=config.elastic_prob,
                sigma_range=config.elastic_sigma_range,
                magnitude_range=config.elastic_magnitude_range,
                mode=modes,
                padding_mode="zeros",
            )
        )
    if config.bias_field_prob > 0 and image_keys:
        chain.append(
            RandBiasFieldd(
                keys=image_keys,
                prob=config.bias_field_prob,
                degree=config.bias_field_degree,
                coeff_range=config.bias_field_coeff_range,
            )
        )
    if config.gamma_prob > 0 and image_keys:
        chain.append(RandAdjustContrastd(keys=image_keys, prob=config.gamma_prob, gamma=config.gamma_range))
    return Compose(chain)


__all__ = ["AugmentConfig", "build_augmentation"]
