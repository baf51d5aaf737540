"""Invertible preprocessing of one volume into the model grid, and its exact inverse.

Forward (:func:`preprocess`), for a native (D, H, W) image and mask with their affine:

1. reorient to ``config.orientation`` (axis permutation/flips derived from the affine with nibabel's
   orientation math; no hard-coded flips);
2. pad or crop each axis to the model grid (``config.spatial_size``, or the next multiple of ``multiple``),
   centred with MONAI's convention: pad ``before = diff // 2``; crop start ``size // 2 - target // 2``;
3. clip the image to its ``lower_quantile``/``upper_quantile`` (computed on the padded volume, zeros
   included) and scale min-max to [-1, 1]. The mask is binarised, not scaled.

Inverse (:func:`postprocess`): undo the padding and the orientation, bring intensities back to the native
scale (``lstsq``: a no-intercept least-squares gain fitted outside the mask; ``percentile``: the inverse of
the quantile scaling), clamp at :data:`INTENSITY_FLOOR` and paste: voxels outside the mask are returned
bit-identical to the voided input.

The steps live in :mod:`~wdm_inpaint.data.orientation`, :mod:`~wdm_inpaint.data.grid` and
:mod:`~wdm_inpaint.data.intensity`; the optional crop around the mask in :mod:`wdm_inpaint.data.cropping`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from wdm_inpaint.config import PreprocessConfig
from wdm_inpaint.data.grid import (
    PAD_VALUE,
    GridPlacement,
    grid_placement,
    model_grid_shape,
    place_in_grid,
    take_from_grid,
)
from wdm_inpaint.data.intensity import (
    INTENSITY_FLOOR,
    MODEL_MIN,
    quantile_range,
    restore_intensity_lstsq,
    scale_from_model,
    scale_to_model,
)
from wdm_inpaint.data.mask_values import MASK_THRESHOLD, SPATIAL_DIMS, binarise_mask
from wdm_inpaint.data.orientation import apply_orientation, inverse_orientation, orientation_transform

logger = logging.getLogger(__name__)

RestoreMethod = Literal["lstsq", "percentile"]


# --------------------------------------------------------------------------- forward / inverse


@dataclass(frozen=True)
class PreprocessState:
    """Everything :func:`postprocess` needs to undo :func:`preprocess`.

    Attributes:
        native_shape: (D, H, W) of the input.
        native_affine: (4, 4) affine of the input.
        orientation: nibabel ``ornt`` transform native -> model orientation.
        oriented_shape: (D, H, W) after reorientation.
        placement: where the oriented array sits in the model grid.
        intensity_low: native value mapped to :data:`MODEL_MIN` (the lower clipping quantile).
        intensity_high: native value mapped to :data:`MODEL_MAX` (the upper clipping quantile).
        intensity_restore: the default restore method of :func:`postprocess`.
    """

    native_shape: tuple[int, int, int]
    native_affine: np.ndarray
    orientation: np.ndarray
    oriented_shape: tuple[int, int, int]
    placement: GridPlacement
    intensity_low: float
    intensity_high: float
    intensity_restore: RestoreMethod = "lstsq"

    @property
    def model_shape(self) -> tuple[int, int, int]:
        """(D, H, W) of the model grid."""
        return self.placement.target_shape


def to_model_grid(x: np.ndarray, state: PreprocessState, fill: float = PAD_VALUE) -> np.ndarray:
    """Reorient and pad/crop a native (D, H, W) array into the model grid of ``state`` (no intensity change)."""
    if tuple(x.shape) != state.native_shape:
        raise ValueError(f"array shape {x.shape} differs from the preprocessed shape {state.native_shape}")
    return place_in_grid(apply_orientation(x, state.orientation), state.placement, fill)


def to_native_grid(y: np.ndarray, state: PreprocessState, fill: float = PAD_VALUE) -> np.ndarray:
    """Inverse of :func:`to_model_grid`: un-pad/crop and undo the reorientation of a (D, H, W) array."""
    y = np.asarray(y)
    if tuple(y.shape) != state.model_shape:
        raise ValueError(f"array shape {y.shape} differs from the model grid {state.model_shape}")
    oriented = take_from_grid(y, state.placement, fill)
    return apply_orientation(oriented, inverse_orientation(state.orientation))


def preprocess(
    image: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    config: PreprocessConfig,
    multiple: int,
) -> tuple[torch.Tensor, torch.Tensor, PreprocessState]:
    """Bring a native image and mask into the model grid and intensity range.

    Args:
        image: (D, H, W) native image (e.g. ``t1n-voided``).
        mask: (D, H, W) region to inpaint (inside where >= :data:`MASK_THRESHOLD`).
        affine: (4, 4) voxel-to-world affine of both arrays.
        config: orientation, grid and quantiles.
        multiple: grid sizes must be multiples of this (``UNetConfig.image_multiple``).

    Returns:
        ``(image, mask, state)``: image (1, 1, D', H', W') float32 in [-1, 1], mask (1, 1, D', H', W') float32
        in {0, 1}, and the :class:`PreprocessState` for :func:`postprocess`.

    Raises:
        ValueError: on mismatched shapes, a non-3-D input or a grid not divisible by ``multiple``.
    """
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != SPATIAL_DIMS:
        raise ValueError(f"image must be 3-D, got shape {image.shape}")
    if mask.shape != image.shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {image.shape}")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got {affine.shape}")
    ornt = orientation_transform(affine, config.orientation)
    oriented_image = apply_orientation(image.astype(np.float64, copy=False), ornt)
    oriented_mask = apply_orientation(binarise_mask(mask), ornt)
    grid = model_grid_shape(oriented_image.shape, config.spatial_size, multiple)
    placement = grid_placement(oriented_image.shape, grid)
    if placement.crops:
        src, _ = placement.slices()
        lost = int(oriented_mask.sum() - oriented_mask[src].sum())
        logger.warning(
            "input %s is cropped to the model grid %s%s",
            oriented_image.shape,
            grid,
            f"; {lost} mask voxels fall outside and keep their input value" if lost else "",
        )
    padded = place_in_grid(oriented_image, placement, PAD_VALUE)
    low, high = quantile_range(padded, config.lower_quantile, config.upper_quantile)
    scaled = scale_to_model(padded, low, high)
    padded_mask = place_in_grid(oriented_mask, placement, False)
    state = PreprocessState(
        native_shape=tuple(int(s) for s in image.shape),  # type: ignore[arg-type]
        native_affine=affine.copy(),
        orientation=ornt,
        oriented_shape=tuple(int(s) for s in oriented_image.shape),  # type: ignore[arg-type]
        placement=placement,
        intensity_low=low,
        intensity_high=high,
        intensity_restore=config.intensity_restore,
    )
    image_t = torch.from_numpy(scaled.astype(np.float32))[None, None]
    mask_t = torch.from_numpy(padded_mask.astype(np.float32))[None, None]
    return image_t, mask_t, state


def _as_grid_array(model_output: torch.Tensor | np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    if isinstance(model_output, torch.Tensor):
        model_output = model_output.detach().to("cpu", torch.float64).numpy()
    y = np.asarray(model_output, dtype=np.float64)
    if y.ndim > SPATIAL_DIMS:
        lead = y.shape[:-SPATIAL_DIMS]
        if any(s != 1 for s in lead):
            raise ValueError(f"model output must hold one volume, got shape {y.shape}")
        y = y.reshape(y.shape[-SPATIAL_DIMS:])
    if tuple(y.shape) != tuple(shape):
        raise ValueError(f"model output shape {y.shape} differs from the model grid {shape}")
    return y


def postprocess(
    model_output: torch.Tensor | np.ndarray,
    state: PreprocessState,
    voided_native: np.ndarray,
    mask_native: np.ndarray,
    intensity_restore: RestoreMethod | None = None,
) -> np.ndarray:
    """Bring a model output back to the native grid and intensity scale and paste it into the voided scan.

    Args:
        model_output: (D', H', W') or (1, 1, D', H', W') model-grid prediction in [-1, 1].
        state: from :func:`preprocess`.
        voided_native: (D, H, W) native voided scan (as read; its values are kept outside the mask).
        mask_native: (D, H, W) native mask.
        intensity_restore: ``lstsq`` or ``percentile``; defaults to the method recorded in ``state``.

    Returns:
        (D, H, W) array, ``voided_native``'s dtype if floating (else float64): bit-identical to
        ``voided_native`` outside the mask, the restored prediction (clamped at :data:`INTENSITY_FLOOR`) inside.

    Raises:
        ValueError: on mismatched shapes or an unknown restore method.
    """
    voided_native = np.asarray(voided_native)
    if tuple(voided_native.shape) != state.native_shape:
        raise ValueError(f"voided scan shape {voided_native.shape} differs from {state.native_shape}")
    if tuple(np.shape(mask_native)) != state.native_shape:
        raise ValueError(f"mask shape {np.shape(mask_native)} differs from {state.native_shape}")
    mask = binarise_mask(mask_native)
    y = _as_grid_array(model_output, state.model_shape)
    native = to_native_grid(y, state, fill=MODEL_MIN)
    seen = None
    if state.placement.crops:
        # Voxels outside the model grid were never seen by the model: they keep their input value.
        src, _ = state.placement.slices()
        seen_oriented = np.zeros(state.oriented_shape, dtype=bool)
        seen_oriented[src] = True
        seen = apply_orientation(seen_oriented, inverse_orientation(state.orientation))
    method = intensity_restore or state.intensity_restore
    if method == "lstsq":
        restored = restore_intensity_lstsq(native, voided_native, mask, valid=seen)
    elif method == "percentile":
        restored = scale_from_model(native, state.intensity_low, state.intensity_high)
    else:
        raise ValueError(f"unknown intensity_restore {method!r}; use 'lstsq' or 'percentile'")
    restored = np.maximum(restored, INTENSITY_FLOOR)
    out_dtype = voided_native.dtype if np.issubdtype(voided_native.dtype, np.floating) else np.float64
    if seen is not None:
        mask = mask & seen
    return np.where(mask, restored.astype(out_dtype), voided_native.astype(out_dtype, copy=False))


__all__ = [
    "MASK_THRESHOLD",
    "PreprocessState",
    "RestoreMethod",
    "binarise_mask",
    "postprocess",
    "preprocess",
    "to_model_grid",
    "to_native_grid",
]
