"""Where a volume sits in the model grid: pad where the grid is larger, crop where it is smaller (MONAI's centring)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wdm_inpaint.data.mask_values import SPATIAL_DIMS

PAD_VALUE = 0.0
"""Value of padded voxels (native background), before the intensity normalisation."""

@dataclass(frozen=True)
class GridPlacement:
    """Where a source grid sits inside a target grid, per axis (pad where larger, crop where smaller).

    Attributes:
        source_shape: (D, H, W) of the source array.
        target_shape: (D, H, W) of the target grid.
        offset: target index of source voxel 0 on each axis (negative where the source is cropped).
    """

    source_shape: tuple[int, int, int]
    target_shape: tuple[int, int, int]
    offset: tuple[int, int, int]

    def slices(self) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        """(source slices, target slices) of the overlapping region."""
        src, dst = [], []
        for s, t, o in zip(self.source_shape, self.target_shape, self.offset):
            s0 = max(-o, 0)
            t0 = max(o, 0)
            n = min(s - s0, t - t0)
            src.append(slice(s0, s0 + n))
            dst.append(slice(t0, t0 + n))
        return tuple(src), tuple(dst)

    @property
    def crops(self) -> bool:
        """Whether some source voxels fall outside the target grid."""
        return any(o < 0 or o + s > t for s, t, o in zip(self.source_shape, self.target_shape, self.offset))


def grid_placement(source_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> GridPlacement:
    """Centred placement with MONAI's ``ResizeWithPadOrCrop`` convention.

    Padding by ``d`` puts ``d // 2`` voxels before; cropping starts at ``source // 2 - target // 2``.
    """
    if len(source_shape) != SPATIAL_DIMS or len(target_shape) != SPATIAL_DIMS:
        raise ValueError(f"expected 3-D shapes, got {tuple(source_shape)} and {tuple(target_shape)}")
    offset = []
    for s, t in zip(source_shape, target_shape):
        if t >= s:
            offset.append((t - s) // 2)
        else:
            offset.append(-(s // 2 - t // 2))
    return GridPlacement(tuple(int(s) for s in source_shape), tuple(int(t) for t in target_shape), tuple(offset))  # type: ignore[arg-type]


def place_in_grid(x: np.ndarray, placement: GridPlacement, fill: float = PAD_VALUE) -> np.ndarray:
    """Pad/crop the last three axes of ``x`` from ``placement.source_shape`` to ``placement.target_shape``."""
    if tuple(x.shape[-SPATIAL_DIMS:]) != placement.source_shape:
        raise ValueError(f"array shape {x.shape} does not end with the placement source {placement.source_shape}")
    out = np.full(x.shape[:-SPATIAL_DIMS] + placement.target_shape, fill, dtype=x.dtype)
    src, dst = placement.slices()
    out[(..., *dst)] = x[(..., *src)]
    return out


def take_from_grid(y: np.ndarray, placement: GridPlacement, fill: float = PAD_VALUE) -> np.ndarray:
    """Inverse of :func:`place_in_grid`: bring the last three axes back to the source shape.

    Source voxels that were cropped away get ``fill``.
    """
    if tuple(y.shape[-SPATIAL_DIMS:]) != placement.target_shape:
        raise ValueError(f"array shape {y.shape} does not end with the placement target {placement.target_shape}")
    out = np.full(y.shape[:-SPATIAL_DIMS] + placement.source_shape, fill, dtype=y.dtype)
    src, dst = placement.slices()
    out[(..., *src)] = y[(..., *dst)]
    return out


def model_grid_shape(
    shape: tuple[int, ...], spatial_size: tuple[int, int, int] | None, multiple: int
) -> tuple[int, int, int]:
    """The model grid for an (oriented) input shape.

    Args:
        shape: (D, H, W) of the oriented input.
        spatial_size: a fixed grid, or ``None`` for the next multiple of ``multiple`` on each axis.
        multiple: every grid size must be a multiple of this (``UNetConfig.image_multiple``).

    Raises:
        ValueError: if ``multiple`` < 1 or a fixed grid size is not a multiple of ``multiple``.
    """
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    if spatial_size is None:
        return tuple(int(-(-s // multiple) * multiple) for s in shape)  # type: ignore[return-value]
    bad = [s for s in spatial_size if s % multiple]
    if bad:
        raise ValueError(
            f"PreprocessConfig.spatial_size {tuple(spatial_size)} must be divisible by {multiple} on every axis "
            "(2 for the DWT times the U-Net's downsampling factor)"
        )
    return tuple(int(s) for s in spatial_size)  # type: ignore[return-value]


__all__ = ["PAD_VALUE", "GridPlacement", "grid_placement", "model_grid_shape", "place_in_grid", "take_from_grid"]
