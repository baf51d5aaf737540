"""Challenge metrics inside ``mask-healthy``: SSIM, PSNR and MSE with both official formulas.

Two formulas are in use (``challenge.md`` §3); both first zero everything outside the healthy mask, map the
intensities to [0, 1] with a percentile window taken from a *reference* volume, then score only mask voxels.

**Synapse 2023/24 validation scorer** (:func:`synapse_metrics`, the published validation numbers):

1. reference = ground truth with the healthy mask zeroed (the tumour is *not* zeroed); window
   ``[max(p0.5, 0), p99.5]`` of the whole reference volume, zeros included;
2. ``prediction * mask`` and ``ground_truth * mask`` are clipped to the window and scaled to [0, 1];
3. SSIM: 3-D Gaussian SSIM of the two whole volumes (a ``(1, 1, X, Y, Z)`` tensor in the scorer), data range
   ``max(ptp(pred), ptp(gt))``, local variances as computed (no clamp); the map is averaged over mask voxels;
4. MSE over mask voxels; reported ``PSNR = 10 log10(1 / MSE)`` (the scorer's ``PSNR_01``). The hidden
   auto-range PSNR uses ``max(0, max gt) - min(0, min gt)`` over mask voxels and is kept as ``psnr_auto``.

**``inpainting`` package** (:func:`package_metrics`, the 2025+ scorer):

1. reference = ``t1n-voided`` (healthy *and* tumour regions zeroed); same window rule;
2. same clipping and scaling;
3. SSIM on ``(1, X, Y, Z)`` tensors, which torchmetrics treats as X channels of 2-D images: slice-wise 2-D
   Gaussian SSIM in the planes of constant first index, local variances clamped at 0; map averaged over mask voxels;
4. MSE, RMSE, MAE over mask voxels; ``psnr`` with the data range ``max - min`` of the normalised target over mask
   voxels, prediction and target clamped to that range first; ``psnr_01`` with data range 1.

The package reads every file cast back to its header dtype; that step belongs to the reader
(:func:`wdm_inpaint.evaluation.evaluate.as_header_dtype`). All arithmetic here is float64; the scorers
use float32, which changes results by about 1e-6.

An exact copy scores SSIM 1, MSE 0 and PSNR ``inf``. An empty healthy mask or a degenerate percentile window
raises :class:`ValueError`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from wdm_inpaint.evaluation.ssim import ssim_map

PERCENTILE_LOW: float = 0.5
"""Lower percentile (in %) of the reference volume that maps to 0 (clamped to be >= 0)."""

PERCENTILE_HIGH: float = 99.5
"""Upper percentile (in %) of the reference volume that maps to 1."""

PERCENTILE_METHOD: str = "linear"
"""``numpy.percentile`` interpolation used by both scorers (numpy's default)."""

SYNAPSE_SSIM_DIMS: int = 3
"""The Synapse scorer passes 5-D tensors: one 3-D SSIM over the volume."""

PACKAGE_SSIM_DIMS: int = 2
"""The package passes 4-D tensors: 2-D SSIM in each plane of constant first index."""

FIXED_PSNR_RANGE: float = 1.0
"""Data range of the fixed-range PSNR (values are normalised to [0, 1])."""


@dataclass(frozen=True)
class SynapseMetrics:
    """Scores of the 2023/24 Synapse validation scorer.

    Attributes:
        ssim: mean 3-D SSIM over healthy-mask voxels.
        psnr: ``10 log10(1 / mse)``, the PSNR the leaderboard reports (dB; ``inf`` for a perfect fill).
        mse: mean squared error of the normalised values over healthy-mask voxels.
        psnr_auto: the hidden auto-range PSNR (range ``max(0, max gt) - min(0, min gt)``).
    """

    ssim: float
    psnr: float
    mse: float
    psnr_auto: float


@dataclass(frozen=True)
class PackageMetrics:
    """Scores of the ``inpainting`` package formula.

    Attributes:
        ssim: mean slice-wise 2-D SSIM over healthy-mask voxels.
        psnr: PSNR with the normalised target's own range over mask voxels (dB).
        psnr_01: PSNR with data range 1 (dB).
        mse: mean squared error of the normalised values over mask voxels.
        rmse: square root of ``mse``.
        mae: mean absolute error over mask voxels.
    """

    ssim: float
    psnr: float
    psnr_01: float
    mse: float
    rmse: float
    mae: float


@dataclass(frozen=True)
class CaseMetrics:
    """Both formulas for one case."""

    synapse: SynapseMetrics
    package: PackageMetrics

    def as_flat_dict(self) -> dict[str, float]:
        """``{"synapse_ssim": ..., "package_psnr_01": ...}``: one key per formula and metric."""
        flat: dict[str, float] = {}
        for formula in ("synapse", "package"):
            for key, value in dataclasses.asdict(getattr(self, formula)).items():
                flat[f"{formula}_{key}"] = float(value)
        return flat


def percentile_window(reference: np.ndarray, *, strictly_positive: bool = True) -> tuple[float, float]:
    """Intensity window ``(v_min, v_max)`` from the :data:`PERCENTILE_LOW`/:data:`PERCENTILE_HIGH` percentiles.

    Args:
        reference: any-shape array; every voxel counts, zeros included.
        strictly_positive: clamp ``v_min`` at 0 (both scorers do).

    Raises:
        ValueError: if ``v_max <= v_min`` (a constant reference cannot define a window).
    """
    v_min, v_max = (
        float(v) for v in np.percentile(reference, [PERCENTILE_LOW, PERCENTILE_HIGH], method=PERCENTILE_METHOD)
    )
    if strictly_positive:
        v_min = max(v_min, 0.0)
    if not v_max > v_min:
        raise ValueError(
            f"the normalisation reference has an empty window: p{PERCENTILE_LOW} -> {v_min}, "
            f"p{PERCENTILE_HIGH} -> {v_max} (is the reference volume constant or empty?)"
        )
    return v_min, v_max


def normalise_to_window(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Clip ``values`` to ``window`` and map it linearly to [0, 1] (float64)."""
    v_min, v_max = window
    return (np.clip(np.asarray(values, dtype=np.float64), v_min, v_max) - v_min) / (v_max - v_min)


def psnr_from_mse(mse: float, data_range: float) -> float:
    """``10 log10(data_range^2 / mse)`` in dB: ``inf`` for ``mse == 0`` (``nan`` if the range is 0 too)."""
    if mse == 0.0:
        return math.inf if data_range > 0 else math.nan
    if data_range == 0.0:
        return -math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def _check_inputs(mask: np.ndarray, **volumes: np.ndarray) -> np.ndarray:
    """Validate shapes and return the boolean mask (non-zero = scored)."""
    mask_bool = np.asarray(mask) != 0
    if mask_bool.ndim != 3:
        raise ValueError(f"the healthy mask must be a 3-D volume, got shape {mask_bool.shape}")
    for name, volume in volumes.items():
        if np.shape(volume) != mask_bool.shape:
            raise ValueError(f"{name} has shape {np.shape(volume)}, the healthy mask {mask_bool.shape}")
    if not mask_bool.any():
        raise ValueError("the healthy mask is empty: there are no voxels to score")
    return mask_bool


def _as_float(volume: np.ndarray) -> np.ndarray:
    """float64 view/copy of a volume (products with the mask follow IEEE rules: ``nan * 0`` stays ``nan``)."""
    return np.asarray(volume, dtype=np.float64)


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Smallest box (``start:stop`` per axis) holding every ``True`` voxel of a non-empty mask."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def masked_ssim(
    pred_norm: np.ndarray, gt_norm: np.ndarray, mask: np.ndarray, *, spatial_dims: int, clamp_variance: bool
) -> float:
    """Mean of the SSIM map of two whole normalised volumes over ``mask`` voxels.

    Args:
        pred_norm: normalised prediction, ``(X, Y, Z)``, zero outside the mask.
        gt_norm: normalised ground truth, same shape.
        mask: boolean ``(X, Y, Z)``.
        spatial_dims: 3 for one volumetric SSIM, 2 for slice-wise SSIM in planes of constant X.
        clamp_variance: clamp local variances at 0 (see :func:`~wdm_inpaint.evaluation.ssim.ssim_map`).
    """
    data_range = max(float(np.ptp(pred_norm)), float(np.ptp(gt_norm)))
    box = _bounding_box(mask)
    preds = torch.from_numpy(np.ascontiguousarray(pred_norm))
    target = torch.from_numpy(np.ascontiguousarray(gt_norm))
    if spatial_dims == 3:
        preds, target, roi = preds[None], target[None], (slice(0, 1), *box)
    else:
        roi = box
    ssim = ssim_map(
        preds, target, spatial_dims=spatial_dims, data_range=data_range, clamp_variance=clamp_variance, roi=roi
    )
    inside = torch.from_numpy(np.ascontiguousarray(mask[box]))
    if spatial_dims == 3:
        ssim = ssim[0]
    return float(ssim[inside].mean())


def synapse_metrics(prediction: np.ndarray, ground_truth: np.ndarray, healthy_mask: np.ndarray) -> SynapseMetrics:
    """Score one case with the 2023/24 Synapse validation formula.

    Args:
        prediction: inpainted volume in the native intensity scale, ``(X, Y, Z)``.
        ground_truth: the full ``t1n``, same shape.
        healthy_mask: ``mask-healthy`` (non-zero = scored), same shape.

    Raises:
        ValueError: on shape mismatches, an empty mask, or a degenerate percentile window.
    """
    mask = _check_inputs(healthy_mask, prediction=prediction, ground_truth=ground_truth)
    pred, gt = _as_float(prediction), _as_float(ground_truth)
    window = percentile_window(gt * ~mask)
    pred_norm = normalise_to_window(pred * mask, window)
    gt_norm = normalise_to_window(gt * mask, window)
    ssim = masked_ssim(pred_norm, gt_norm, mask, spatial_dims=SYNAPSE_SSIM_DIMS, clamp_variance=False)
    pred_in, gt_in = pred_norm[mask], gt_norm[mask]
    mse = float(np.mean((pred_in - gt_in) ** 2))
    auto_range = max(0.0, float(gt_in.max())) - min(0.0, float(gt_in.min()))
    return SynapseMetrics(
        ssim=ssim,
        psnr=psnr_from_mse(mse, FIXED_PSNR_RANGE),
        mse=mse,
        psnr_auto=psnr_from_mse(mse, auto_range),
    )


def package_metrics(
    prediction: np.ndarray, ground_truth: np.ndarray, voided: np.ndarray, healthy_mask: np.ndarray
) -> PackageMetrics:
    """Score one case with the ``inpainting`` package formula.

    Args:
        prediction: inpainted volume, ``(X, Y, Z)``.
        ground_truth: the full ``t1n``, same shape.
        voided: ``t1n-voided`` (the normalisation reference), same shape.
        healthy_mask: ``mask-healthy`` (non-zero = scored), same shape.

    Raises:
        ValueError: on shape mismatches, an empty mask, or a degenerate percentile window.
    """
    mask = _check_inputs(healthy_mask, prediction=prediction, ground_truth=ground_truth, voided=voided)
    window = percentile_window(_as_float(voided))
    pred_norm = normalise_to_window(_as_float(prediction) * mask, window)
    gt_norm = normalise_to_window(_as_float(ground_truth) * mask, window)
    ssim = masked_ssim(pred_norm, gt_norm, mask, spatial_dims=PACKAGE_SSIM_DIMS, clamp_variance=True)
    pred_in, gt_in = pred_norm[mask], gt_norm[mask]
    diff = pred_in - gt_in
    mse = float(np.mean(diff**2))
    lo, hi = float(gt_in.min()), float(gt_in.max())
    mse_in_range = float(np.mean((np.clip(pred_in, lo, hi) - gt_in) ** 2))
    return PackageMetrics(
        ssim=ssim,
        psnr=psnr_from_mse(mse_in_range, hi - lo),
        psnr_01=psnr_from_mse(mse, FIXED_PSNR_RANGE),
        mse=mse,
        rmse=math.sqrt(mse),
        mae=float(np.mean(np.abs(diff))),
    )


def case_metrics(
    prediction: np.ndarray, ground_truth: np.ndarray, voided: np.ndarray, healthy_mask: np.ndarray
) -> CaseMetrics:
    """Both formulas for one case (same arguments as :func:`package_metrics`)."""
    return CaseMetrics(
        synapse=synapse_metrics(prediction, ground_truth, healthy_mask),
        package=package_metrics(prediction, ground_truth, voided, healthy_mask),
    )


__all__ = [
    "FIXED_PSNR_RANGE",
    "PACKAGE_SSIM_DIMS",
    "PERCENTILE_HIGH",
    "PERCENTILE_LOW",
    "PERCENTILE_METHOD",
    "SYNAPSE_SSIM_DIMS",
    "CaseMetrics",
    "PackageMetrics",
    "SynapseMetrics",
    "case_metrics",
    "masked_ssim",
    "normalise_to_window",
    "package_metrics",
    "percentile_window",
    "psnr_from_mse",
    "synapse_metrics",
]
