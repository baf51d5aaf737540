"""Reorientation of voxel arrays by their affine (nibabel's orientation maths; no hard-coded flips)."""

from __future__ import annotations

import nibabel as nib
import numpy as np


def orientation_transform(affine: np.ndarray, axcodes: str) -> np.ndarray:
    """nibabel orientation transform (``ornt``) taking an array with ``affine`` to ``axcodes``."""
    start = nib.orientations.io_orientation(np.asarray(affine, dtype=np.float64))
    target = nib.orientations.axcodes2ornt(tuple(axcodes))
    return nib.orientations.ornt_transform(start, target)


def inverse_orientation(ornt: np.ndarray) -> np.ndarray:
    """The ``ornt`` transform undoing ``ornt``."""
    ornt = np.asarray(ornt)
    inverse = np.empty_like(ornt)
    # Input axis i goes to output axis ornt[i, 0] (flipped if ornt[i, 1] == -1): send it back.
    for axis, (target, flip) in enumerate(ornt):
        inverse[int(target)] = (axis, flip)
    return inverse


def apply_orientation(x: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Reorient the (D, H, W) array ``x`` by ``ornt``; returns a contiguous copy."""
    return np.ascontiguousarray(nib.orientations.apply_orientation(x, ornt))


__all__ = ["apply_orientation", "inverse_orientation", "orientation_transform"]
