"""Boxes around the mask on the model grid: one box, or one per group of far-apart connected components.

Inference samples only these boxes instead of the whole volume (``PreprocessConfig.crop``). :func:`crop` and
:func:`uncrop` are exact inverses on the box; voxels outside every box are never touched.

With ``PreprocessConfig.crop_split`` the mask is split into connected components (26-neighbourhood, as
``skimage.measure.label`` with connectivity 3). Each component starts with its own box; two boxes are merged
into the box around both while they overlap, or while the merged box holds no more voxels than the two boxes
together (then one network call over it costs no more than two). The result is a set of disjoint boxes, each
holding whole components, whose total volume is never larger than the single box around the whole mask.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from math import prod

import numpy as np
import torch
from scipy import ndimage

from wdm_inpaint.data.mask_values import SPATIAL_DIMS, binarise_mask

logger = logging.getLogger(__name__)

COMPONENT_CONNECTIVITY = SPATIAL_DIMS
"""Voxels touching by a face, an edge or a corner belong to the same component (26-neighbourhood)."""

WAVELET_BLOCK = 2
"""Box starts are multiples of this (the Haar block), so the crop's wavelet grid is the whole volume's."""

MAX_SPLIT_COMPONENTS = 64
"""With more connected components than this the mask is not split (one box): the merging is quadratic."""


@dataclass(frozen=True)
class CropBox:
    """A box of a model-grid volume.

    Attributes:
        start: (d, h, w) first voxel of the box.
        size: (d, h, w) size of the box (multiples of the grid multiple where the grid allows).
        grid_shape: (D, H, W) of the volume the box lies in.
    """

    start: tuple[int, int, int]
    size: tuple[int, int, int]
    grid_shape: tuple[int, int, int]

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        """Slices selecting the box from a (..., D, H, W) array (use as ``x[(..., *box.slices)]``)."""
        return tuple(slice(s, s + n) for s, n in zip(self.start, self.size))  # type: ignore[return-value]

    @property
    def stop(self) -> tuple[int, int, int]:
        """(d, h, w) one past the last voxel of the box."""
        return tuple(s + n for s, n in zip(self.start, self.size))  # type: ignore[return-value]

    @property
    def volume(self) -> int:
        """Number of voxels in the box."""
        return prod(self.size)

    def overlaps(self, other: CropBox) -> bool:
        """Whether the two boxes share at least one voxel."""
        return all(a0 < b1 and b0 < a1 for a0, a1, b0, b1 in zip(self.start, self.stop, other.start, other.stop))


def _check_crop_args(margin: int, multiple: int) -> None:
    if margin < 0:
        raise ValueError(f"crop margin must be >= 0, got {margin}")
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")


def _union_mask(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    """``(D, H, W)`` boolean union over the leading axes of a (..., D, H, W) mask."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    m = binarise_mask(mask)
    grid = tuple(int(s) for s in m.shape[-SPATIAL_DIMS:])
    return m.reshape((-1,) + grid).any(axis=0)


def box_around(
    low: tuple[int, ...], high: tuple[int, ...], grid: tuple[int, int, int], margin: int, multiple: int
) -> CropBox:
    """Box around the voxel extent ``[low, high)`` grown by ``margin``, sizes rounded up to ``multiple``.

    The box is centred on the grown extent, shifted to stay inside ``grid`` and to start on a multiple of
    :data:`WAVELET_BLOCK` (grid-aligned: its Haar blocks are those of the whole volume); when that shift would
    uncover part of the grown extent the size grows by one more ``multiple``. A size that would exceed the grid
    is capped at the grid size.
    """
    start, size = [], []
    for axis in range(SPATIAL_DIMS):
        lo, hi = int(low[axis]) - margin, int(high[axis]) + margin
        need_lo, need_hi = max(lo, 0), min(hi, grid[axis])
        extent = hi - lo
        n = min(-(-extent // multiple) * multiple, grid[axis])
        while True:
            s = lo - (n - extent) // 2
            s = min(max(s, 0), grid[axis] - n)
            s -= s % WAVELET_BLOCK
            if (s <= need_lo and s + n >= need_hi) or n >= grid[axis]:
                break
            n = min(n + multiple, grid[axis])
        start.append(s)
        size.append(n)
    return CropBox(tuple(start), tuple(size), grid)  # type: ignore[arg-type]


def mask_crop_box(mask: np.ndarray | torch.Tensor, margin: int, multiple: int) -> CropBox:
    """Box around the mask's bounding box plus ``margin``, with sizes rounded up to ``multiple``.

    The box is centred on the (margin-grown) bounding box and shifted to stay inside the volume. A size
    that would exceed the volume is capped at the volume size. An empty mask gives the whole volume.

    Args:
        mask: (..., D, H, W) mask on the model grid (inside where >= ``MASK_THRESHOLD``); leading axes are
            combined.
        margin: voxels added on every side of the bounding box (>= 0).
        multiple: box sizes are multiples of this (``UNetConfig.image_multiple``).

    Raises:
        ValueError: for a negative margin or ``multiple`` < 1.
    """
    _check_crop_args(margin, multiple)
    m = _union_mask(mask)
    grid = tuple(int(s) for s in m.shape)
    if not m.any():
        logger.warning("empty mask: the crop box is the whole volume")
        return CropBox((0, 0, 0), grid, grid)  # type: ignore[arg-type]
    low, high = [], []
    for axis in range(SPATIAL_DIMS):
        other = tuple(a for a in range(SPATIAL_DIMS) if a != axis)
        idx = np.flatnonzero(m.any(axis=other))
        low.append(int(idx[0]))
        high.append(int(idx[-1]) + 1)
    return box_around(tuple(low), tuple(high), grid, margin, multiple)  # type: ignore[arg-type]


def mask_crop_boxes(mask: np.ndarray | torch.Tensor, margin: int, multiple: int) -> list[CropBox]:
    """Disjoint boxes covering the mask: one per group of connected components (see the module docstring).

    Args:
        mask: (..., D, H, W) mask on the model grid; leading axes are combined.
        margin: voxels added around each group's bounding box (>= 0).
        multiple: box sizes are multiples of this.

    Returns:
        Boxes sorted by their start; a single box (as :func:`mask_crop_box`) when the components are close,
        when there are more than :data:`MAX_SPLIT_COMPONENTS` of them, or when the mask is empty.

    Raises:
        ValueError: for a negative margin or ``multiple`` < 1.
    """
    _check_crop_args(margin, multiple)
    m = _union_mask(mask)
    grid = tuple(int(s) for s in m.shape)
    structure = ndimage.generate_binary_structure(SPATIAL_DIMS, COMPONENT_CONNECTIVITY)
    labels, count = ndimage.label(m, structure=structure)
    if count <= 1 or count > MAX_SPLIT_COMPONENTS:
        if count > MAX_SPLIT_COMPONENTS:
            logger.info("mask has %d components (> %d): one crop box", count, MAX_SPLIT_COMPONENTS)
        return [mask_crop_box(m, margin, multiple)]
    extents = [
        (tuple(s.start for s in sl), tuple(s.stop for s in sl)) for sl in ndimage.find_objects(labels)
    ]
    groups = [(lo, hi, box_around(lo, hi, grid, margin, multiple)) for lo, hi in extents]  # type: ignore[arg-type]
    merged = True
    while merged and len(groups) > 1:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                (lo_i, hi_i, box_i), (lo_j, hi_j, box_j) = groups[i], groups[j]
                lo = tuple(min(a, b) for a, b in zip(lo_i, lo_j))
                hi = tuple(max(a, b) for a, b in zip(hi_i, hi_j))
                union = box_around(lo, hi, grid, margin, multiple)  # type: ignore[arg-type]
                if box_i.overlaps(box_j) or union.volume <= box_i.volume + box_j.volume:
                    groups[i] = (lo, hi, union)
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    boxes = sorted((g[2] for g in groups), key=lambda b: b.start)
    if len(boxes) > 1:
        logger.debug("mask split into %d crop boxes of %s voxels", len(boxes), [b.volume for b in boxes])
    return boxes


def crop(x: np.ndarray | torch.Tensor, box: CropBox) -> np.ndarray | torch.Tensor:
    """The box of a (..., D, H, W) array or tensor (a view)."""
    if tuple(x.shape[-SPATIAL_DIMS:]) != box.grid_shape:
        raise ValueError(f"array shape {tuple(x.shape)} does not match the crop grid {box.grid_shape}")
    return x[(..., *box.slices)]


def uncrop(
    x_crop: np.ndarray | torch.Tensor, box: CropBox, base: np.ndarray | torch.Tensor
) -> np.ndarray | torch.Tensor:
    """Paste a cropped (..., d, h, w) array back into a copy of ``base`` (..., D, H, W).

    ``uncrop(crop(x, box), box, base)`` equals ``x`` inside the box and ``base`` outside.
    """
    if tuple(x_crop.shape[-SPATIAL_DIMS:]) != box.size:
        raise ValueError(f"cropped shape {tuple(x_crop.shape)} does not match the box size {box.size}")
    if tuple(base.shape[-SPATIAL_DIMS:]) != box.grid_shape:
        raise ValueError(f"base shape {tuple(base.shape)} does not match the crop grid {box.grid_shape}")
    out = base.clone() if isinstance(base, torch.Tensor) else np.array(base, copy=True)
    out[(..., *box.slices)] = x_crop
    return out


__all__ = [
    "COMPONENT_CONNECTIVITY",
    "MAX_SPLIT_COMPONENTS",
    "WAVELET_BLOCK",
    "CropBox",
    "box_around",
    "crop",
    "mask_crop_box",
    "mask_crop_boxes",
    "uncrop",
]
