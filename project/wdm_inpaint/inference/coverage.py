"""Mask voxels the model never saw: an input larger than the model grid is cropped, and what falls outside the
grid cannot be sampled. Those voxels get the classical fill and the case is counted as a fallback, so that a
partial model result is never reported as a model success."""

from __future__ import annotations

import logging

import numpy as np

from wdm_inpaint.data.orientation import apply_orientation, inverse_orientation
from wdm_inpaint.inference.engine import PreparedVolume, classical_inpaint

logger = logging.getLogger(__name__)


def unseen_mask(prepared: PreparedVolume) -> np.ndarray | None:
    """``(D, H, W)`` bool: mask voxels outside the model grid, or ``None`` when the model saw every mask voxel."""
    state = prepared.state
    if state is None or not state.placement.crops:
        return None
    src, _ = state.placement.slices()
    seen = np.zeros(state.oriented_shape, dtype=bool)
    seen[src] = True
    unseen = prepared.mask & ~apply_orientation(seen, inverse_orientation(state.orientation))
    return unseen if unseen.any() else None


def fill_unseen(out: np.ndarray, prepared: PreparedVolume, fill: str) -> tuple[np.ndarray, str | None]:
    """Fill the mask voxels outside the model grid of ``out`` ``(D, H, W)`` with the classical ``fill``.

    Returns:
        ``(output, reason)``: ``reason`` is ``None`` when nothing was outside the grid (``out`` is returned as is).
    """
    unseen = unseen_mask(prepared)
    if unseen is None:
        return out, None
    count = int(unseen.sum())
    reason = f"{count} mask voxel(s) lie outside the model grid: the {fill} fill there, the model elsewhere"
    logger.warning("%s", reason)
    return classical_inpaint(fill, out, unseen), reason


__all__ = ["fill_unseen", "unseen_mask"]
