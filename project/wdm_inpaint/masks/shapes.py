"""Region shapes for synthetic healthy masks: random flips/rotations of real masks and GAN-generated shapes.

Every function returns a boolean array cropped to its foreground (or an empty array when nothing is left).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from wdm_inpaint.masks.label_generator import OUTPUT_SIZE, WT_CHANNEL, LabelGenerator

logger = logging.getLogger(__name__)

GAN_CROP_SIZE = 96
"""Edge length (voxels) of the tumour-centred crop that one 64^3 generator output represents: the generator is
trained on 96^3 crops resized to 64^3, so its shapes are resized back to 96^3 to get real-scale regions."""

GAN_THRESHOLD = 0.5
"""Generator outputs (tanh, in [-1, 1]) above this value are foreground."""


@dataclass(frozen=True)
class ShapeAugmentConfig:
    """Random transforms of real (other cases') masks.

    Attributes:
        flip_probability: probability of flipping along each axis (independently).
        rotate_probability: probability of a random rotation.
        max_rotation_degrees: rotation angles about each axis are uniform in [-max, max] degrees.
    """

    flip_probability: float = 0.5
    rotate_probability: float = 0.5
    max_rotation_degrees: float = 180.0

    def __post_init__(self) -> None:
        for name in ("flip_probability", "rotate_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"ShapeAugmentConfig.{name} must be in [0, 1], got {value}")
        if self.max_rotation_degrees < 0:
            raise ValueError(f"ShapeAugmentConfig.max_rotation_degrees must be >= 0, got {self.max_rotation_degrees}")


def crop_foreground(mask: np.ndarray) -> np.ndarray:
    """Crop a 3-D array to the bounding box of its nonzero voxels (bool); an all-zero input gives shape (0, 0, 0)."""
    fg = np.asarray(mask).astype(bool, copy=False)
    if not fg.any():
        return np.zeros((0, 0, 0), dtype=bool)
    idx = np.nonzero(fg)
    return fg[tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)]


def rotation_matrix(angles_rad: np.ndarray) -> np.ndarray:
    """(3, 3) rotation about axes 0, 1, 2 (in that order) by the given angles in radians."""
    a, b, c = (float(x) for x in angles_rad)
    r0 = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    r1 = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    r2 = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return r2 @ r1 @ r0


def rotate_nearest(mask: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Rotate a binary volume about its centre with nearest-neighbour sampling, without clipping.

    Args:
        mask: (d, h, w) binary array.
        matrix: (3, 3) rotation matrix.

    Returns:
        The rotated mask cropped to its foreground.
    """
    mask = np.asarray(mask).astype(bool, copy=False)
    side = int(np.ceil(np.linalg.norm(mask.shape))) + 2
    canvas = np.zeros((side,) * 3, dtype=np.uint8)
    start = [(side - s) // 2 for s in mask.shape]
    canvas[tuple(slice(st, st + s) for st, s in zip(start, mask.shape))] = mask
    centre = (np.array(canvas.shape) - 1) / 2.0
    # affine_transform maps output coordinates o to input coordinates matrix^-1 (o - c) + c.
    inverse = matrix.T
    offset = centre - inverse @ centre
    rotated = ndimage.affine_transform(canvas, inverse, offset=offset, order=0, mode="constant", cval=0)
    return crop_foreground(rotated)


def augment_real_shape(mask: np.ndarray, rng: np.random.Generator, config: ShapeAugmentConfig) -> np.ndarray:
    """Random per-axis flips and an optional random rotation of a real mask, then crop to the foreground.

    The random draws are made in a fixed order (three flip draws, one rotate draw, three angles) so that the
    result depends only on ``rng``'s state.
    """
    out = np.asarray(mask).astype(bool, copy=False)
    flips = rng.random(3) < config.flip_probability
    for axis in np.flatnonzero(flips):
        out = np.flip(out, axis=int(axis))
    rotate = rng.random() < config.rotate_probability
    angles = np.deg2rad(rng.uniform(-config.max_rotation_degrees, config.max_rotation_degrees, size=3))
    if rotate:
        out = rotate_nearest(out, rotation_matrix(angles))
    return crop_foreground(np.ascontiguousarray(out))


def resize_nearest(volume: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a 3-D array: output index ``o`` takes input index ``floor(o * in / out)``."""
    idx = [np.minimum((np.arange(o) * (i / o)).astype(np.int64), i - 1) for i, o in zip(volume.shape, size)]
    return volume[np.ix_(*idx)]


def gan_shape(
    generator: LabelGenerator,
    rng: np.random.Generator,
    crop_size: int = GAN_CROP_SIZE,
    threshold: float = GAN_THRESHOLD,
) -> np.ndarray:
    """One whole-tumour shape from the label generator at real scale.

    Args:
        generator: the label generator (any device; run in eval mode without gradients).
        rng: draws the seed of the latent vector.
        crop_size: edge length the 64^3 output is resized to (see :data:`GAN_CROP_SIZE`).
        threshold: foreground threshold on the resized whole-tumour channel.

    Returns:
        The shape cropped to its foreground (shape (0, 0, 0) when the output is empty).
    """
    seed = int(rng.integers(0, 2**63 - 1))
    device = next(generator.parameters()).device
    torch_rng = torch.Generator(device="cpu").manual_seed(seed)
    z = torch.randn(1, generator.config.noise_dim, generator=torch_rng).to(device)
    with torch.no_grad():
        out = generator(z)[0, WT_CHANNEL].float().cpu().numpy()
    if out.shape != (OUTPUT_SIZE,) * 3:
        raise ValueError(f"label generator returned shape {out.shape}, expected {(OUTPUT_SIZE,) * 3}")
    resized = resize_nearest(out, (crop_size,) * 3)
    return crop_foreground(resized > threshold)


__all__ = [
    "GAN_CROP_SIZE",
    "GAN_THRESHOLD",
    "ShapeAugmentConfig",
    "augment_real_shape",
    "crop_foreground",
    "gan_shape",
    "resize_nearest",
    "rotate_nearest",
    "rotation_matrix",
]
