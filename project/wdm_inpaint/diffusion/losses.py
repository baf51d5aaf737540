"""Loss building blocks shared by the training modes (wavelet-band MSE, weighted voxel means, 3D SSIM)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wdm_inpaint.wavelet import WAVELET_CHANNELS

IMAGE_DATA_RANGE = 2.0
"""Dynamic range of model-space images ([-1, 1]); sets the SSIM stabilising constants."""

SSIM_WINDOW = 7
"""Side of the cubic Gaussian SSIM window (voxels)."""

SSIM_SIGMA = 1.5
"""Standard deviation of the Gaussian SSIM window (voxels)."""

SSIM_K1 = 0.01
"""SSIM luminance constant: ``C1 = (K1 * data_range) ** 2`` (Wang et al. 2004)."""

SSIM_K2 = 0.03
"""SSIM contrast constant: ``C2 = (K2 * data_range) ** 2``."""


def wavelet_band_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per wavelet band.

    Args:
        prediction: ``(B, 8C, D, H, W)`` packed wavelet coefficients.
        target: same shape.

    Returns:
        ``(8,)`` MSE of each band (averaged over batch, image channels and voxels), in ``wavelet.BAND_ORDER``.
    """
    bands = WAVELET_CHANNELS
    diff = (prediction - target).reshape(prediction.shape[0], -1, bands, *prediction.shape[2:])
    return diff.square().mean(dim=(0, 1, 3, 4, 5))


def voxel_mean(values: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over *all* voxels of ``weight * values`` (not renormalised by the weight's sum).

    This is the reference recipe's convention: a region term is diluted by the region's size, so the effective
    weight of a voxel does not depend on how large its region is.
    """
    return (values if weight is None else weight * values).mean()


def weighted_average(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``sum(weight * values) / sum(weight)``; 0 where the weight is empty."""
    return (weight * values).sum() / weight.sum().clamp(min=torch.finfo(values.dtype).eps)


def _gaussian_kernel(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _gaussian_blur3d(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian filter of every channel of ``(B, C, D, H, W)`` with replicated borders."""
    channels = x.shape[1]
    kernel = _gaussian_kernel(size, sigma, x.dtype, x.device)
    pad = size // 2
    for dim in range(3):
        shape = [1, 1, 1]
        shape[dim] = size
        weight = kernel.view(1, 1, *shape).repeat(channels, 1, 1, 1, 1)
        padding = [0] * 6
        padding[2 * (2 - dim)] = padding[2 * (2 - dim) + 1] = pad
        x = F.conv3d(F.pad(x, padding, mode="replicate"), weight, groups=channels)
    return x


def ssim3d(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = IMAGE_DATA_RANGE,
    window: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
) -> torch.Tensor:
    """Per-voxel structural similarity of two volumes with a Gaussian window (Wang et al. 2004).

    Args:
        x: ``(B, C, D, H, W)``.
        y: same shape.
        data_range: dynamic range of the images.
        window: window side (odd).
        sigma: window standard deviation.

    Returns:
        ``(B, C, D, H, W)`` SSIM map (1 where the volumes agree).
    """
    if x.shape != y.shape or x.dim() != 5:
        raise ValueError(f"ssim3d expects two (B, C, D, H, W) tensors of equal shape, got {x.shape} and {y.shape}")
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    channels = x.shape[1]
    stats = _gaussian_blur3d(torch.cat([x, y, x * x, y * y, x * y], dim=1), window, sigma)
    mu_x, mu_y, xx, yy, xy = stats.split(channels, dim=1)
    var_x = xx - mu_x.square()
    var_y = yy - mu_y.square()
    cov = xy - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2)
    return numerator / denominator


__all__ = [
    "IMAGE_DATA_RANGE",
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_SIGMA",
    "SSIM_WINDOW",
    "ssim3d",
    "voxel_mean",
    "wavelet_band_mse",
    "weighted_average",
]
