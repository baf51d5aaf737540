"""Mean fill: every masked voxel gets the mean intensity of the known brain tissue around the mask.

Exactly: the *shell* is the set of voxels outside the mask whose city-block (6-neighbour) distance to the mask is at
most :data:`MEAN_FILL_SHELL_WIDTH`; *tissue* are voxels whose value is finite and non-zero (background is 0 in
BraTS volumes). The fill value is the mean of the tissue voxels of the shell. If the shell holds no tissue, the
mean of all tissue voxels outside the mask is used; if there is none,
:data:`~wdm_inpaint.fill.common.BACKGROUND_VALUE`.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage

from wdm_inpaint.fill.common import BACKGROUND_VALUE, grown_box, output_like, prepare_inputs

logger = logging.getLogger(__name__)

MEAN_FILL_SHELL_WIDTH: int = 3
"""Width of the shell around the mask, in 6-neighbour steps, from which the mean is taken."""


def _tissue(values: np.ndarray) -> np.ndarray:
    """Boolean map of tissue voxels: finite and non-zero."""
    return np.isfinite(values) & (values != 0)


def shell_mean(image: np.ndarray, mask: np.ndarray) -> float:
    """The fill value of :func:`mean_fill` (see the module docstring for the exact rule)."""
    image, mask_bool = prepare_inputs(image, mask)
    if not mask_bool.any():
        return BACKGROUND_VALUE
    box = grown_box(mask_bool, margin=MEAN_FILL_SHELL_WIDTH)
    inside = mask_bool[box]
    cross = ndimage.generate_binary_structure(3, 1)
    shell = ndimage.binary_dilation(inside, structure=cross, iterations=MEAN_FILL_SHELL_WIDTH) & ~inside
    values = np.asarray(image[box], dtype=np.float64)
    chosen = values[shell & _tissue(values)]
    if chosen.size:
        return float(chosen.mean())
    everywhere = np.asarray(image, dtype=np.float64)[~mask_bool]
    chosen = everywhere[_tissue(everywhere)]
    if chosen.size:
        logger.warning(
            "no tissue in the %d-voxel shell around the mask: using the mean of all known tissue", MEAN_FILL_SHELL_WIDTH
        )
        return float(chosen.mean())
    logger.warning("no known tissue at all: filling with %s", BACKGROUND_VALUE)
    return BACKGROUND_VALUE


def mean_fill(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill the mask with one value, the mean known tissue intensity in a shell around it.

    Args:
        image: ``(X, Y, Z)`` volume; values inside the mask are ignored.
        mask: ``(X, Y, Z)``; non-zero marks the voxels to fill.

    Returns:
        A new array (the image's dtype if floating, else float64); voxels outside the mask equal the input bit for bit.

    Raises:
        ValueError: on shape mismatch or a non-3-D input.
    """
    image, mask_bool = prepare_inputs(image, mask)
    out = output_like(image)
    out[mask_bool] = shell_mean(image, mask_bool)
    return out


__all__ = ["MEAN_FILL_SHELL_WIDTH", "mean_fill", "shell_mean"]
