"""Plausibility figures of label shapes: volume and connected components (26-connectivity)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
"""26-connectivity: voxels sharing a face, an edge or a corner belong to one component."""


def shape_statistics(mask: np.ndarray) -> dict[str, Any]:
    """Figures of one binary 3-D shape.

    Args:
        mask: (D, H, W) binary array.

    Returns:
        ``voxels`` (foreground count), ``components`` (26-connected), ``largest_fraction`` (share of the largest
        component in the foreground; 0 for an empty shape) and ``bbox`` (extent per axis).
    """
    fg = np.asarray(mask).astype(bool, copy=False)
    labels, n = ndimage.label(fg, structure=CONNECTIVITY)
    voxels = int(fg.sum())
    largest = int(np.bincount(labels.ravel())[1:].max()) if n else 0
    if voxels:
        idx = np.nonzero(fg)
        bbox = [int(i.max() - i.min() + 1) for i in idx]
    else:
        bbox = [0, 0, 0]
    return {
        "voxels": voxels,
        "components": int(n),
        "largest_fraction": largest / voxels if voxels else 0.0,
        "bbox": bbox,
    }


def summarize(stats: list[dict[str, Any]], reference_range: tuple[int, int] | None = None) -> dict[str, Any]:
    """Aggregate :func:`shape_statistics` of several shapes.

    Args:
        stats: per-shape figures.
        reference_range: (min, max) voxel count of the training shapes; adds the share of shapes inside it.
    """
    if not stats:
        return {"count": 0}
    voxels = np.array([s["voxels"] for s in stats])
    comps = np.array([s["components"] for s in stats])
    out: dict[str, Any] = {
        "count": len(stats),
        "empty": int((voxels == 0).sum()),
        "single_component_fraction": float((comps == 1).mean()),
        "mean_largest_fraction": float(np.mean([s["largest_fraction"] for s in stats])),
        "voxels_min": int(voxels.min()),
        "voxels_median": float(np.median(voxels)),
        "voxels_max": int(voxels.max()),
    }
    if reference_range is not None:
        lo, hi = reference_range
        out["reference_range"] = [int(lo), int(hi)]
        out["in_reference_range_fraction"] = float(((voxels >= lo) & (voxels <= hi)).mean())
    return out


__all__ = ["CONNECTIVITY", "shape_statistics", "summarize"]
