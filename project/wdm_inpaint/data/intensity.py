"""Intensity maps between native scans and the model's [-1, 1]: quantile scaling and the least-squares restore."""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)

MODEL_MIN = -1.0
"""Lowest model intensity (the lower clipping quantile maps here)."""

MODEL_MAX = 1.0
"""Highest model intensity (the upper clipping quantile maps here)."""

INTENSITY_FLOOR = 0.0
"""Restored (inpainted) intensities are clamped to at least this value: MRI magnitudes are non-negative."""

GAIN_DENOMINATOR_EPS = 1e-12
"""A least-squares gain is not fitted when the sum of squared predictions outside the mask is below this."""


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


__all__ = [
    "INTENSITY_FLOOR",
    "MODEL_MAX",
    "MODEL_MIN",
    "lstsq_gain",
    "quantile_range",
    "restore_intensity_lstsq",
    "scale_from_model",
    "scale_to_model",
]
