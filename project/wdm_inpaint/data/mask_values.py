"""What counts as inside a mask: the one rule of the package, applied once where a mask enters it.

A mask voxel is inside the region to inpaint when its value is **>= 0.5** (:data:`MASK_THRESHOLD`). Files
are binarised with :func:`binarise_mask` when they are read (``inference/inputs.py``, preprocessing,
training transforms); the model-grid tensors are then exactly 0 or 1, and :func:`inside` reads them with the
same rule.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

SPATIAL_DIMS = 3
"""Number of spatial axes."""

MASK_THRESHOLD = 0.5
"""A mask voxel belongs to the region to inpaint when its value is at least this (``value >= 0.5``)."""

MASK_RULE = f">= {MASK_THRESHOLD:g}"
"""The rule in words, as user-facing messages print it."""

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def binarise_mask(mask: np.ndarray) -> np.ndarray:
    """Boolean ``(D, H, W)`` mask: True where ``mask`` >= :data:`MASK_THRESHOLD` (NaN is outside)."""
    return np.asarray(mask) >= MASK_THRESHOLD


def inside(mask: ArrayT) -> ArrayT:
    """Boolean array or tensor of the same shape: True where ``mask`` >= :data:`MASK_THRESHOLD`."""
    return mask >= MASK_THRESHOLD


__all__ = ["MASK_RULE", "MASK_THRESHOLD", "SPATIAL_DIMS", "binarise_mask", "inside"]
