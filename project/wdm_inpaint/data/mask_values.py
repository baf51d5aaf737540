"""What counts as inside a mask, shared by preprocessing and cropping."""

from __future__ import annotations

import numpy as np

SPATIAL_DIMS = 3
"""Number of spatial axes."""

MASK_THRESHOLD = 0.5
"""A mask voxel belongs to the region to inpaint when its value is above this."""


def binarise_mask(mask: np.ndarray) -> np.ndarray:
    """Boolean mask: True where ``mask`` > :data:`MASK_THRESHOLD`."""
    return np.asarray(mask) > MASK_THRESHOLD


__all__ = ["MASK_THRESHOLD", "SPATIAL_DIMS", "binarise_mask"]
