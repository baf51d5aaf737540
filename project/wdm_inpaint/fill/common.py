"""Helpers shared by the classical fills: input checks, the output array and the mask's box."""

from __future__ import annotations

import numpy as np

BACKGROUND_VALUE: float = 0.0
"""Fill value when no voxel is known at all (the mask covers the whole volume)."""


def prepare_inputs(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a fill's inputs; return the image as an array and the boolean mask (non-zero = to fill).

    Raises:
        ValueError: if the image is not a numeric 3-D volume or the mask's shape differs.
    """
    image = np.asarray(image)
    mask_bool = np.asarray(mask) != 0
    if image.ndim != 3:
        raise ValueError(f"the image must be a 3-D volume, got shape {image.shape}")
    if mask_bool.shape != image.shape:
        raise ValueError(f"the mask has shape {mask_bool.shape}, the image {image.shape}: they must match")
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == np.bool_):
        raise ValueError(f"the image must be numeric, got dtype {image.dtype}")
    return image, mask_bool


def output_like(image: np.ndarray) -> np.ndarray:
    """Copy of ``image`` in a floating dtype (its own if floating, else float64) to write a fill into."""
    dtype = image.dtype if np.issubdtype(image.dtype, np.floating) else np.float64
    return image.astype(dtype, copy=True)


def grown_box(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Bounding box of a non-empty mask, grown by ``margin`` voxels and clipped to the volume."""
    box = []
    for axis, size in enumerate(mask.shape):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, size)))
    return tuple(box)


__all__ = ["BACKGROUND_VALUE", "grown_box", "output_like", "prepare_inputs"]
