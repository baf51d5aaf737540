"""Rule-based placement of a binary 3-D shape into a brain volume.

A shape is placed by translating it (no resampling) so that all rules of :class:`PlacementRules` hold:

* at least ``min_inside_brain_fraction`` of the shape's voxels lie inside the brain;
* every voxel of the shape is at least ``min_distance_voxels`` (Euclidean, in voxels, between voxel centres)
  away from every forbidden voxel (the tumour ``mask-unhealthy`` and regions placed before);
* the shape's foreground bounding box lies inside the volume.

Candidate positions are drawn so that one fixed foreground voxel of the shape (the *anchor*, the foreground
voxel nearest the shape's centroid) lands on a brain voxel that is far enough from the forbidden mask and
keeps the bounding box inside the volume; each candidate is then checked against all rules. The forbidden
mask's distance transform is computed once per call (or passed in precomputed), so one try costs
O(number of shape voxels).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

logger = logging.getLogger(__name__)

DEFAULT_MIN_INSIDE_BRAIN_FRACTION = 0.75
"""Fraction of a placed shape that must lie inside the brain (the organisers' rule for ``mask-healthy``)."""

DEFAULT_MIN_DISTANCE_VOXELS = 5.0
"""Minimum Euclidean distance, in voxels, from the tumour and from other placed regions."""

DEFAULT_MAX_TRIES = 2000
"""Candidate positions checked before giving up on one shape."""


@dataclass(frozen=True)
class PlacementRules:
    """Rules a placed shape must satisfy.

    Attributes:
        min_inside_brain_fraction: fraction in [0, 1] of shape voxels that must be brain voxels.
        min_distance_voxels: minimum Euclidean distance (voxels) of every shape voxel to every forbidden voxel.
        max_tries: candidate positions to check before giving up (> 0).
    """

    min_inside_brain_fraction: float = DEFAULT_MIN_INSIDE_BRAIN_FRACTION
    min_distance_voxels: float = DEFAULT_MIN_DISTANCE_VOXELS
    max_tries: int = DEFAULT_MAX_TRIES

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_inside_brain_fraction <= 1.0:
            raise ValueError(
                f"PlacementRules.min_inside_brain_fraction must be in [0, 1], got {self.min_inside_brain_fraction}"
            )
        if self.min_distance_voxels < 0:
            raise ValueError(f"PlacementRules.min_distance_voxels must be >= 0, got {self.min_distance_voxels}")
        if self.max_tries < 1:
            raise ValueError(f"PlacementRules.max_tries must be >= 1, got {self.max_tries}")


@dataclass
class PlacementResult:
    """Outcome of :func:`place_shape`.

    Attributes:
        success: whether a position satisfying all rules was found.
        tries: candidate positions checked.
        mask: (D, H, W) bool array of the placed shape in the volume, or ``None`` on failure.
        offset: volume index of the corner of the shape's cropped foreground box, or ``None`` on failure.
        inside_brain_fraction: fraction of the placed shape inside the brain (``nan`` on failure).
        min_distance: smallest distance of a placed voxel to the forbidden mask, exact when below the margin
            of the distance map (``inf`` when every placed voxel is farther than that; ``nan`` on failure).
        reason: why placement failed (empty on success).
    """

    success: bool
    tries: int
    mask: np.ndarray | None = None
    offset: tuple[int, int, int] | None = None
    inside_brain_fraction: float = float("nan")
    min_distance: float = float("nan")
    reason: str = ""


def forbidden_distance(forbidden: np.ndarray, margin: float | None = None) -> np.ndarray:
    """Euclidean distance of each voxel to the nearest forbidden voxel.

    Args:
        forbidden: (D, H, W) boolean-like array, nonzero = forbidden.
        margin: ``None`` computes exact distances everywhere. A number computes them only in the forbidden
            voxels' bounding box grown by ``ceil(margin) + 1`` (much faster for a small mask in a large volume):
            every value below ``margin`` is then exact, and voxels outside the box get ``inf``.

    Returns:
        (D, H, W) float64 distances in voxels; 0 on forbidden voxels, ``inf`` everywhere if nothing is forbidden.
    """
    forbidden = np.asarray(forbidden).astype(bool, copy=False)
    if not forbidden.any():
        return np.full(forbidden.shape, np.inf)
    if margin is None:
        return ndimage.distance_transform_edt(~forbidden)
    distance = np.full(forbidden.shape, np.inf)
    add_forbidden_region(distance, forbidden, margin)
    return distance


def add_forbidden_region(distance: np.ndarray, region: np.ndarray, margin: float) -> None:
    """Lower ``distance`` in place to account for a newly forbidden ``region``, touching only a local box.

    The distance transform of the region is computed in its bounding box grown by ``ceil(margin) + 1`` voxels,
    which holds every voxel closer than ``margin`` to the region. Afterwards every value of ``distance`` below
    ``margin`` is exact; larger values are at least ``margin``. Checks against a threshold ``<= margin`` are
    therefore exact.

    Args:
        distance: (D, H, W) float map from :func:`forbidden_distance`, updated in place.
        region: (D, H, W) binary mask of the new forbidden voxels.
        margin: the largest distance threshold that will be checked.
    """
    region = np.asarray(region).astype(bool, copy=False)
    if region.shape != distance.shape:
        raise ValueError(f"region shape {region.shape} differs from distance map shape {distance.shape}")
    if not region.any():
        return
    pad = int(np.ceil(margin)) + 1
    idx = np.nonzero(region)
    box = tuple(
        slice(max(int(i.min()) - pad, 0), min(int(i.max()) + 1 + pad, n)) for i, n in zip(idx, region.shape)
    )
    local = ndimage.distance_transform_edt(~region[box])
    np.minimum(distance[box], local, out=distance[box])


def crop_to_foreground(shape: np.ndarray) -> np.ndarray:
    """Crop a binary 3-D array to the bounding box of its nonzero voxels.

    Args:
        shape: (D, H, W) array; nonzero = foreground.

    Returns:
        The cropped (d, h, w) bool array.

    Raises:
        ValueError: if the array is not 3-D or has no foreground.
    """
    shape = np.asarray(shape)
    if shape.ndim != 3:
        raise ValueError(f"shape must be a 3-D array, got {shape.ndim} dimensions {shape.shape}")
    fg = shape.astype(bool, copy=False)
    if not fg.any():
        raise ValueError("shape has no foreground voxels; nothing to place")
    idx = np.nonzero(fg)
    lo = [int(i.min()) for i in idx]
    hi = [int(i.max()) + 1 for i in idx]
    return fg[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]


def place_shape(
    shape: np.ndarray,
    brain: np.ndarray,
    forbidden: np.ndarray,
    rules: PlacementRules,
    rng: np.random.Generator,
    distance: np.ndarray | None = None,
) -> PlacementResult:
    """Place a binary shape into a volume by translation so that all placement rules hold.

    Args:
        shape: (d, h, w) binary array of the region to place (cropped to its foreground internally).
        brain: (D, H, W) binary brain mask (e.g. ``t1n > 0``).
        forbidden: (D, H, W) binary mask the shape must keep away from (tumour plus earlier regions).
        rules: the placement rules.
        rng: random generator drawing the candidate positions (the only source of randomness).
        distance: optional precomputed ``forbidden_distance(forbidden, margin)`` with ``margin >=
            rules.min_distance_voxels`` (saves one distance transform).

    Returns:
        A :class:`PlacementResult`; ``success`` is False after ``rules.max_tries`` failed candidates, or at once
        (``tries == 0``) if the shape cannot fit (larger than the volume or the brain) or no voxel can host its anchor.

    Raises:
        ValueError: if the arrays have mismatched or non-3-D shapes, or the shape is empty.
    """
    brain = np.asarray(brain).astype(bool, copy=False)
    forbidden = np.asarray(forbidden).astype(bool, copy=False)
    if brain.ndim != 3:
        raise ValueError(f"brain mask must be 3-D, got shape {brain.shape}")
    if forbidden.shape != brain.shape:
        raise ValueError(f"forbidden mask shape {forbidden.shape} differs from brain mask shape {brain.shape}")
    if distance is None:
        distance = forbidden_distance(forbidden, margin=rules.min_distance_voxels)
    elif distance.shape != brain.shape:
        raise ValueError(f"distance map shape {distance.shape} differs from brain mask shape {brain.shape}")
    fg = crop_to_foreground(shape)
    size = np.array(fg.shape)
    vol = np.array(brain.shape)
    if np.any(size > vol):
        return PlacementResult(False, 0, reason=f"shape {tuple(size)} is larger than the volume {tuple(vol)}")

    coords = np.argwhere(fg)  # (n, 3) foreground voxel coordinates in the cropped box
    if coords.shape[0] * rules.min_inside_brain_fraction > np.count_nonzero(brain):
        return PlacementResult(False, 0, reason=f"shape of {coords.shape[0]} voxels cannot fit inside the brain")
    centroid = coords.mean(axis=0)
    anchor = coords[np.argmin(((coords - centroid) ** 2).sum(axis=1))]
    allowed = brain & (distance >= rules.min_distance_voxels)
    # Anchor positions that keep the whole box inside the volume: offset = pos - anchor in [0, vol - size].
    lo = anchor
    hi = vol - size + anchor  # inclusive
    window = np.zeros_like(allowed)
    window[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1] = True
    candidates = np.flatnonzero(allowed & window)
    if candidates.size == 0:
        return PlacementResult(False, 0, reason="no brain voxel far enough from the forbidden mask can host the shape")

    n_voxels = coords.shape[0]
    for attempt in range(1, rules.max_tries + 1):
        pos = np.array(np.unravel_index(candidates[rng.integers(candidates.size)], brain.shape))
        offset = pos - anchor
        placed = coords + offset
        ix = (placed[:, 0], placed[:, 1], placed[:, 2])
        inside = float(np.count_nonzero(brain[ix])) / n_voxels
        if inside < rules.min_inside_brain_fraction:
            continue
        min_dist = float(distance[ix].min())
        if min_dist < rules.min_distance_voxels:
            continue
        mask = np.zeros(brain.shape, dtype=bool)
        mask[ix] = True
        logger.debug("placed shape %s at %s after %d tries", tuple(size), tuple(offset), attempt)
        return PlacementResult(
            True,
            attempt,
            mask=mask,
            offset=tuple(int(o) for o in offset),
            inside_brain_fraction=inside,
            min_distance=min_dist,
        )
    return PlacementResult(False, rules.max_tries, reason=f"no valid position in {rules.max_tries} tries")


__all__ = [
    "DEFAULT_MAX_TRIES",
    "DEFAULT_MIN_DISTANCE_VOXELS",
    "DEFAULT_MIN_INSIDE_BRAIN_FRACTION",
    "PlacementResult",
    "PlacementRules",
    "add_forbidden_region",
    "crop_to_foreground",
    "forbidden_distance",
    "place_shape",
]
