"""Seeded Gaussian noise: the one place the package draws ``N(0, 1)`` tensors for diffusion."""

from __future__ import annotations

import torch


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


__all__ = ["randn_as", "randn_like"]
