"""Seeded Gaussian noise: the one place the package draws ``N(0, 1)`` tensors for diffusion."""

from __future__ import annotations

import torch

from wdm_inpaint.wavelet import dwt3d


def randn_like(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise shaped like ``x`` (on ``x``'s device and dtype), drawn from ``generator``.

    The noise is drawn on the generator's device, so a CPU generator gives the same numbers whatever the
    device of ``x``.
    """
    if generator is None:
        return torch.randn(x.shape, device=x.device, dtype=x.dtype)
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=torch.float32)
    return noise.to(device=x.device, dtype=x.dtype)


def randn_as(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, drawn on ``x``'s device and in its dtype from ``generator``.

    Unlike :func:`randn_like` the generator must live on ``x``'s device (the samplers' and the pipeline's noise).
    """
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def region_noise(eps: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
    """Wavelet-space noise ``dwt3d(eps * region)`` of image-space noise ``eps`` ``(B, C, D, H, W)``.

    The noise is masked at full resolution *before* the transform and never LLL-scaled, so wavelet blocks that do
    not touch ``region`` (same shape as ``eps``, 0/1; ``None``: everywhere) carry exactly zero noise.

    Returns:
        ``(B, 8C, D/2, H/2, W/2)``.
    """
    return dwt3d(eps if region is None else eps * region)


__all__ = ["randn_as", "randn_like", "region_noise"]
