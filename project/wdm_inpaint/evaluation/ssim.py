"""Gaussian-window SSIM map in 2-D or 3-D, with the conventions of the challenge scorers.

The scorers call torchmetrics' ``StructuralSimilarityIndexMeasure(return_full_image=True)`` with its defaults
and average the returned per-voxel map inside a mask. This module computes that map:

* a normalised Gaussian window of standard deviation :data:`SSIM_SIGMA`, truncated at
  ``int(SSIM_TRUNCATE * sigma + 0.5)`` voxels on each side (11 taps for sigma 1.5), applied separably;
* every spatial side reflect-padded by the window radius (the edge voxel is not repeated), then a "valid"
  convolution, so the map has the input's size and border voxels see mirrored data;
* local statistics ``mu = w * x``, ``sigma^2 = w * x^2 - mu^2`` and
  ``SSIM = (2 mu_p mu_t + C1)(2 sigma_pt + C2) / ((mu_p^2 + mu_t^2 + C1)(sigma_p^2 + sigma_t^2 + C2))`` with
  ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2`` for the data range ``L``.

Computation is in float64. ``roi`` restricts the output to a box (the padded data around it is still read), which
gives exactly the same values as cropping the full map but costs only the box.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_K1: float = 0.01
"""Luminance stabiliser: ``C1 = (SSIM_K1 * data_range) ** 2``."""

SSIM_K2: float = 0.03
"""Contrast/structure stabiliser: ``C2 = (SSIM_K2 * data_range) ** 2``."""

SSIM_SIGMA: float = 1.5
"""Standard deviation of the Gaussian window, in voxels."""

SSIM_TRUNCATE: float = 3.5
"""Window half-width in standard deviations: radius ``int(SSIM_TRUNCATE * sigma + 0.5)`` (5 for sigma 1.5)."""

COMPUTE_DTYPE = torch.float64
"""Precision of all SSIM arithmetic."""


def window_radius(sigma: float = SSIM_SIGMA) -> int:
    """Number of voxels the window reaches on each side of its centre (5 for the default sigma)."""
    return int(SSIM_TRUNCATE * sigma + 0.5)


def gaussian_window(sigma: float = SSIM_SIGMA, dtype: torch.dtype = COMPUTE_DTYPE) -> torch.Tensor:
    """Normalised 1-D Gaussian window.

    Returns:
        Tensor of shape ``(2 * window_radius(sigma) + 1,)`` summing to 1.
    """
    radius = window_radius(sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=dtype)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return weights / weights.sum()


def _blur(stack: torch.Tensor, window: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """Valid separable convolution of ``stack`` (``(N, 1, *spatial)``) with ``window`` along every spatial axis."""
    taps = window.numel()
    conv = F.conv3d if spatial_dims == 3 else F.conv2d
    for axis in range(spatial_dims):
        shape = [1, 1] + [1] * spatial_dims
        shape[2 + axis] = taps
        stack = conv(stack, window.reshape(shape))
    return stack


def _resolve_roi(roi: tuple[slice, ...] | None, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """Turn ``roi`` into explicit ``start:stop`` slices (the whole array when ``None``)."""
    if roi is None:
        return tuple(slice(0, n) for n in shape)
    if len(roi) != len(shape):
        raise ValueError(f"roi must have {len(shape)} slices, got {len(roi)}")
    box = []
    for s, n in zip(roi, shape, strict=True):
        start, stop, step = s.indices(n)
        if step != 1 or stop <= start:
            raise ValueError(f"roi slices must be non-empty with step 1, got {s} for an axis of length {n}")
        box.append(slice(start, stop))
    return tuple(box)


def ssim_map(
    preds: torch.Tensor,
    target: torch.Tensor,
    *,
    spatial_dims: int,
    data_range: float,
    sigma: float = SSIM_SIGMA,
    k1: float = SSIM_K1,
    k2: float = SSIM_K2,
    clamp_variance: bool = False,
    roi: tuple[slice, ...] | None = None,
) -> torch.Tensor:
    """Per-voxel SSIM map.

    Args:
        preds: prediction, shape ``(C, *spatial)``; the leading axis holds independent images (channels), the
            last ``spatial_dims`` axes are filtered. A 3-D volume is ``(1, X, Y, Z)`` with ``spatial_dims=3``;
            slice-wise 2-D SSIM of a volume is ``(X, Y, Z)`` with ``spatial_dims=2`` (planes of constant X).
        target: reference, same shape as ``preds``.
        spatial_dims: 2 or 3.
        data_range: ``L`` in the stabilising constants.
        sigma: Gaussian window standard deviation.
        k1: luminance constant factor.
        k2: contrast constant factor.
        clamp_variance: clamp the local variances at 0 (newer torchmetrics) instead of using them as computed.
        roi: optional box ``(slice_c, *slice_spatial)`` with plain ``start:stop`` slices; only that part of the
            map is computed.

    Returns:
        float64 tensor of shape ``(C, *spatial)`` (or the ``roi`` box).

    Raises:
        ValueError: on mismatched shapes, wrong dimensionality, or a side too short to reflect-pad.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if preds.shape != target.shape:
        raise ValueError(
            f"SSIM needs equal shapes, got prediction {tuple(preds.shape)} and target {tuple(target.shape)}"
        )
    if preds.ndim != spatial_dims + 1:
        raise ValueError(f"SSIM expects (C, *spatial) with {spatial_dims} spatial axes, got shape {tuple(preds.shape)}")
    radius = window_radius(sigma)
    spatial_shape = preds.shape[1:]
    if min(spatial_shape) <= radius:
        raise ValueError(
            f"every spatial side must exceed the window radius {radius} for reflect padding, got {tuple(spatial_shape)}"
        )
    box = _resolve_roi(roi, tuple(preds.shape))

    # Read the box plus the window radius from the volume; reflect only where that margin leaves the volume.
    # Reflection needs the radius + 1 voxels next to the border, which the crop always holds.
    crop = [box[0]]
    pad: list[int] = []
    for s, n in zip(box[1:], spatial_shape, strict=True):
        start, stop = max(s.start - radius, 0), min(s.stop + radius, n)
        crop.append(slice(start, stop))
        pad = [radius - (s.start - start), radius - (stop - s.stop)] + pad  # F.pad lists the last axis first
    stack = torch.stack([preds[tuple(crop)], target[tuple(crop)]]).to(COMPUTE_DTYPE)  # (2, C, *crop)
    padded = F.pad(stack, tuple(pad), mode="reflect") if any(pad) else stack
    p, t = padded[0], padded[1]
    channels = p.shape[0]
    moments = torch.stack([p, t, p * p, t * t, p * t])  # (5, C, *spatial_padded)
    window = gaussian_window(sigma, COMPUTE_DTYPE)
    blurred = _blur(moments.reshape(5 * channels, 1, *moments.shape[2:]), window, spatial_dims)
    blurred = blurred.reshape(5, channels, *blurred.shape[2:])
    mu_p, mu_t, e_pp, e_tt, e_pt = blurred
    var_p = e_pp - mu_p * mu_p
    var_t = e_tt - mu_t * mu_t
    if clamp_variance:
        var_p = var_p.clamp(min=0.0)
        var_t = var_t.clamp(min=0.0)
    cov = e_pt - mu_p * mu_t
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    return ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p * mu_p + mu_t * mu_t + c1) * (var_p + var_t + c2))


__all__ = [
    "COMPUTE_DTYPE",
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_SIGMA",
    "SSIM_TRUNCATE",
    "gaussian_window",
    "ssim_map",
    "window_radius",
]
