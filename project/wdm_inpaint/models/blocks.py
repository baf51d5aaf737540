"""Building blocks of the wavelet-space U-Net: float32 GroupNorm and the time-conditioned residual block."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

RESAMPLE_FACTOR = 2
"""Spatial factor of one down- or upsampling step (average pooling / nearest-neighbour repetition)."""

Resample = Literal["none", "down", "up"]


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype, cast back to the input dtype.

    Keeps the statistics exact under bf16/fp16 autocast (the reference network does the same).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, ...) -> (B, C, ...)`` in ``x.dtype``."""
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def resample(x: torch.Tensor, mode: Resample) -> torch.Tensor:
    """Halve (``down``: 2x2x2 average pooling) or double (``up``: nearest neighbour) every spatial size."""
    if mode == "down":
        return F.avg_pool3d(x, kernel_size=RESAMPLE_FACTOR, stride=RESAMPLE_FACTOR)
    if mode == "up":
        return F.interpolate(x, scale_factor=RESAMPLE_FACTOR, mode="nearest")
    return x


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding, optionally resampling.

    ``h = Conv3(SiLU(GN(x)))`` (resampled between the activation and the convolution), ``h += Linear(SiLU(emb))``,
    ``h = Conv3_zero(Dropout(SiLU(GN(h))))``, output ``skip(x) + h`` where ``skip`` is the identity, or a 1x1
    convolution when the width changes, applied to the equally resampled input. The last convolution starts at
    zero, so a new block is the identity (or a linear map) of its input.

    Args:
        in_channels: input width.
        out_channels: output width.
        embed_channels: width of the timestep embedding.
        num_groups: GroupNorm groups (both widths must be multiples of it).
        dropout: dropout probability before the last convolution.
        resample: ``none``, ``down`` (average pooling on both paths) or ``up`` (nearest upsampling on both paths).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        embed_channels: int,
        num_groups: int,
        dropout: float = 0.0,
        resample: Resample = "none",
    ) -> None:
        super().__init__()
        if resample not in ("none", "down", "up"):
            raise ValueError(f"ResBlock resample must be 'none', 'down' or 'up', got {resample!r}")
        self.resample = resample
        self.norm1 = GroupNorm32(num_groups, in_channels)
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)
        self.time_proj = nn.Linear(embed_channels, out_channels)
        self.norm2 = GroupNorm32(num_groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip: nn.Module = (
            nn.Identity() if in_channels == out_channels else nn.Conv3d(in_channels, out_channels, kernel_size=1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: ``(B, in_channels, D, H, W)``.
            emb: ``(B, embed_channels)`` timestep embedding.

        Returns:
            ``(B, out_channels, D', H', W')`` with ``D' = D/2`` (down), ``2D`` (up) or ``D``.
        """
        h = F.silu(self.norm1(x))
        h = resample(h, self.resample)
        x = resample(x, self.resample)
        h = self.conv1(h)
        h = h + self.time_proj(F.silu(emb)).to(h.dtype)[:, :, None, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class OutputHead(nn.Module):
    """``GN -> SiLU -> Conv3`` with the convolution initialised to zero (a new model predicts 0)."""

    def __init__(self, in_channels: int, out_channels: int, num_groups: int) -> None:
        super().__init__()
        self.norm = GroupNorm32(num_groups, in_channels)
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, D, H, W) -> (B, out_channels, D, H, W)``."""
        return self.conv(F.silu(self.norm(h)))


__all__ = ["RESAMPLE_FACTOR", "GroupNorm32", "OutputHead", "ResBlock", "resample"]
