"""Single-level 3D Haar wavelet transform in torch, and the packing WDM applies to it.

Band order and signs follow the WDM convention: letters name the filter along (D, H, W) = dims (-3, -2, -1),
``L`` is ``(a + b) / sqrt(2)`` and ``H`` is ``(a - b) / sqrt(2)`` of two neighbouring voxels (first minus
second), and channel ``4*d + 2*h + w`` holds band ``(d, h, w)`` with 1 meaning high-pass. The transform is
orthonormal, so white noise stays white with unit variance in every band.
"""

from __future__ import annotations

import math

import torch

from wdm_inpaint.config import WaveletConfig

BAND_ORDER: tuple[str, ...] = ("LLL", "LLH", "LHL", "LHH", "HLL", "HLH", "HHL", "HHH")
"""Names of the 8 subbands in channel order (letters in D, H, W order)."""

WAVELET_CHANNELS = len(BAND_ORDER)
"""Channels of the packed wavelet transform of one image channel (the 8 subbands of a 3-D Haar level)."""

_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def _check_even(x: torch.Tensor) -> None:
    if x.dim() != 5:
        raise ValueError(f"the 3D DWT expects a (B, C, D, H, W) tensor, got shape {tuple(x.shape)}")
    odd = [s for s in x.shape[-3:] if s % 2]
    if odd:
        raise ValueError(
            f"the 3D Haar DWT needs even spatial sizes, got {tuple(x.shape[-3:])}; pad the volume to even sizes first"
        )


def dwt3d(x: torch.Tensor) -> torch.Tensor:
    """Forward single-level 3D Haar DWT.

    Args:
        x: ``(B, C, D, H, W)`` with even D, H, W.

    Returns:
        ``(B, 8*C, D/2, H/2, W/2)``; channel ``8*c + k`` is band ``BAND_ORDER[k]`` of input channel ``c``.
    """
    _check_even(x)
    b, c, d, h, w = x.shape
    v = x.reshape(b, c, d // 2, 2, h // 2, 2, w // 2, 2)
    for axis in (7, 5, 3):  # W, H, D
        first, second = v.select(axis, 0), v.select(axis, 1)
        v = torch.stack(((first + second) * _INV_SQRT2, (first - second) * _INV_SQRT2), dim=axis)
    # (b, c, D2, fd, H2, fh, W2, fw) -> (b, c, fd, fh, fw, D2, H2, W2)
    v = v.permute(0, 1, 3, 5, 7, 2, 4, 6)
    return v.reshape(b, c * WAVELET_CHANNELS, d // 2, h // 2, w // 2)


def idwt3d(y: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`dwt3d`.

    Args:
        y: ``(B, 8*C, D, H, W)``.

    Returns:
        ``(B, C, 2D, 2H, 2W)``.
    """
    if y.dim() != 5 or y.shape[1] % WAVELET_CHANNELS:
        raise ValueError(f"the 3D IDWT expects (B, 8*C, D, H, W), got shape {tuple(y.shape)}")
    b, c8, d, h, w = y.shape
    v = y.reshape(b, c8 // WAVELET_CHANNELS, 2, 2, 2, d, h, w).permute(0, 1, 5, 2, 6, 3, 7, 4)
    for axis in (3, 5, 7):
        low, high = v.select(axis, 0), v.select(axis, 1)
        v = torch.stack(((low + high) * _INV_SQRT2, (low - high) * _INV_SQRT2), dim=axis)
    return v.reshape(b, c8 // WAVELET_CHANNELS, 2 * d, 2 * h, 2 * w)


class WaveletCodec:
    """Image <-> packed wavelet tensor, with the LLL band scaled as WDM does.

    ``encode`` divides the LLL band of every channel by ``lll_scale``; ``decode`` multiplies it back before
    the inverse transform. Noise must go through :func:`dwt3d` directly (it is never scaled).
    """

    def __init__(self, config: WaveletConfig | None = None) -> None:
        self.config = config or WaveletConfig()

    @property
    def lll_scale(self) -> float:
        return self.config.lll_scale

    def _scale_lll(self, y: torch.Tensor, factor: float) -> torch.Tensor:
        b, c8 = y.shape[:2]
        scale = torch.ones(WAVELET_CHANNELS, dtype=y.dtype, device=y.device)
        scale[0] = factor
        packed = y.reshape(b, c8 // WAVELET_CHANNELS, WAVELET_CHANNELS, *y.shape[2:])
        return (packed * scale.view(1, 1, WAVELET_CHANNELS, 1, 1, 1)).reshape(y.shape)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, D, H, W)`` image -> ``(B, 8C, D/2, H/2, W/2)`` packed wavelets (LLL / lll_scale)."""
        return self._scale_lll(dwt3d(x), 1.0 / self.lll_scale)

    def decode(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, 8C, D, H, W)`` packed wavelets -> ``(B, C, 2D, 2H, 2W)`` image (LLL * lll_scale first)."""
        return idwt3d(self._scale_lll(y, self.lll_scale))


__all__ = ["BAND_ORDER", "WAVELET_CHANNELS", "WaveletCodec", "dwt3d", "idwt3d"]
