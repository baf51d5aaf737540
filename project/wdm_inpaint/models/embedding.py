"""Sinusoidal timestep embedding and the MLP that widens it for the residual blocks."""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps.

    The first half of the features are cosines, the second half sines, at frequencies
    ``max_period ** (-k / half)`` for ``k = 0 .. half-1``; an odd ``dim`` gets one trailing zero.

    Args:
        t: ``(B,)`` timesteps (integer or float).
        dim: embedding width.
        max_period: the longest period; controls the lowest frequency.

    Returns:
        ``(B, dim)`` float32 embedding on ``t``'s device.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    args = t.float()[:, None] * torch.exp(exponent)[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


class TimestepMLP(nn.Module):
    """``Linear -> SiLU -> Linear`` applied to the sinusoidal embedding.

    Args:
        in_features: width of the sinusoidal embedding.
        out_features: width of the embedding fed to every residual block.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_features, out_features)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(out_features, out_features)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        """``(B, in_features) -> (B, out_features)``."""
        return self.linear_2(self.act(self.linear_1(embedding)))


__all__ = ["TimestepMLP", "timestep_embedding"]
