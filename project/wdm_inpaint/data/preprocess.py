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

The optional crop around the mask lives in :mod:`wdm_inpaint.data.cropping`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import nibabel as nib
import numpy as np
import torch

from wdm_inpaint.config import PreprocessConfig
from wdm_inpaint.data.mask_values import MASK_THRESHOLD, SPATIAL_DIMS, binarise_mask

logger = logging.getLogger(__name__)

MODEL_MIN = -1.0
"""Lowest model intensity (the lower clipping quantile maps here)."""

MODEL_MAX = 1.0
"""Highest model intensity (the upper clipping quantile maps here)."""

PAD_VALUE = 0.0
"""Value of padded voxels (native background), before the intensity normalisation."""

INTENSITY_FLOOR = 0.0
"""Restored (inpainted) intensities are clamped to at least this value: MRI magnitudes are non-negative."""

GAIN_DENOMINATOR_EPS = 1e-12
"""A least-squares gain is not fitted when the sum of squared predictions outside the mask is below this."""

RestoreMethod = Literal["lstsq", "percentile"]


# --------------------------------------------------------------------------- geometry helpers


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


# --------------------------------------------------------------------------- intensity helpers


def quantile_range(x: np.ndarray, lower_quantile: float, upper_quantile: float) -> tuple[float, float]:
    """The (lower, upper) quantile values of all voxels of ``x`` (linear interpolation)."""
    lo, hi = np.quantile(np.asarray(x, dtype=np.float64), [lower_quantile, upper_quantile])
    return float(lo), float(hi)


def scale_to_model(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Clip ``x`` to [low, high] and map it linearly onto [MODEL_MIN, MODEL_MAX] (all ``MODEL_MIN`` if flat)."""
    x = np.asarray(x, dtype=np.float64)
    if high <= low:
        return np.full(x.shape, MODEL_MIN)
    unit = (np.clip(x, low, high) - low) / (high - low)
    return unit * (MODEL_MAX - MODEL_MIN) + MODEL_MIN


def scale_from_model(y: np.ndarray, low: float, high: float) -> np.ndarray:
    """Inverse of :func:`scale_to_model` (without the clipping): [MODEL_MIN, MODEL_MAX] -> [low, high]."""
    unit = (np.asarray(y, dtype=np.float64) - MODEL_MIN) / (MODEL_MAX - MODEL_MIN)
    return unit * (high - low) + low


def lstsq_gain(prediction: np.ndarray, reference: np.ndarray, known: np.ndarray) -> float:
    """No-intercept least-squares gain ``a`` minimising ``sum((a * prediction - reference)^2)`` over ``known``.

    Returns 1.0 (and logs a warning) when the prediction is zero on every known voxel.
    """
    p = prediction[known]
    v = reference[known]
    denominator = float(np.dot(p, p))
    if denominator < GAIN_DENOMINATOR_EPS:
        logger.warning("prediction is zero outside the mask; intensity gain set to 1")
        return 1.0
    return float(np.dot(p, v)) / denominator


def _min_max(x: np.ndarray, over: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    values = x if over is None else x[over]
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros_like(x, dtype=np.float64), lo, hi
    return (x - lo) / (hi - lo), lo, hi


def restore_intensity_lstsq(
    prediction: np.ndarray, voided: np.ndarray, mask: np.ndarray, valid: np.ndarray | None = None
) -> np.ndarray:
    """Native intensities of a model prediction by a least-squares gain fitted outside the mask.

    Both arrays are min-max normalised to [0, 1] over the whole volume (``P`` and ``V``); the gain
    ``a = sum(P V) / sum(P^2)`` over the voxels outside the mask (background included) scales ``P``, and the
    result returns to the native range of the voided scan: ``vmin + (vmax - vmin) * a * P``.

    Args:
        prediction: (D, H, W) model output on the native grid (any affine intensity scale).
        voided: (D, H, W) native voided scan.
        mask: (D, H, W) boolean region to inpaint.
        valid: (D, H, W) boolean voxels where the prediction is defined (default: all); the prediction's
            min-max and the fit use only these.

    Returns:
        (D, H, W) float64 restored prediction (meaningful inside the mask).
    """
    p, _, _ = _min_max(np.asarray(prediction, dtype=np.float64), valid)
    v, vmin, vmax = _min_max(np.asarray(voided, dtype=np.float64))
    gain = lstsq_gain(p, v, ~mask if valid is None else ~mask & valid)
    logger.debug("least-squares intensity gain %.6g", gain)
    return vmin + (vmax - vmin) * gain * p


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
    "GridPlacement",
    "INTENSITY_FLOOR",
    "MASK_THRESHOLD",
    "MODEL_MAX",
    "MODEL_MIN",
    "PAD_VALUE",
    "PreprocessState",
    "apply_orientation",
    "binarise_mask",
    "grid_placement",
    "inverse_orientation",
    "lstsq_gain",
    "model_grid_shape",
    "orientation_transform",
    "place_in_grid",
    "postprocess",
    "preprocess",
    "quantile_range",
    "restore_intensity_lstsq",
    "scale_from_model",
    "scale_to_model",
    "take_from_grid",
    "to_model_grid",
    "to_native_grid",
]
