"""Training-only networks of the label GAN: critic (discriminator), encoder and code discriminator.

The critic and the code discriminator use spectral normalisation on every layer (as the alpha-GAN / WGAN-GP
recipe of the label generator does); the encoder does not. All three work on the generator's 64^3 label volumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from wdm_inpaint.masks.label_generator import CHANNEL_NAMES, OUTPUT_SIZE, STEM_SIZE, WIDTH_MULTIPLIERS

CRITIC_SLOPE = 0.2
"""Negative slope of the leaky ReLUs of the critic, encoder and code discriminator."""

DOWN_KERNEL = 4
"""Kernel of the stride-2 convolutions that halve the resolution (64 -> 32 -> 16 -> 8 -> 4)."""


@dataclass(frozen=True)
class LabelGANNetsConfig:
    """Widths of the training networks.

    Attributes:
        critic_channel: base width of the critic (widths c, 2c, 4c, 8c).
        encoder_channel: base width of the encoder.
        code_hidden: hidden width of the code discriminator's two hidden layers.
    """

    critic_channel: int = 64
    encoder_channel: int = 64
    code_hidden: int = 1024

    def __post_init__(self) -> None:
        for name in ("critic_channel", "encoder_channel", "code_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"LabelGANNetsConfig.{name} must be >= 1, got {getattr(self, name)}")


def _down_stack(in_channels: int, channel: int, sn: bool, norm: bool) -> nn.Sequential:
    """Stride-2 convolutions 64^3 -> 4^3 with widths c, 2c, 4c, 8c."""
    widths = [m * channel for m in reversed(WIDTH_MULTIPLIERS)]
    layers: list[nn.Module] = []
    prev = in_channels
    for i, width in enumerate(widths):
        conv = nn.Conv3d(prev, width, kernel_size=DOWN_KERNEL, stride=2, padding=1, bias=not norm or i == 0)
        layers.append(spectral_norm(conv) if sn else conv)
        if norm and i > 0:
            layers.append(nn.InstanceNorm3d(width, affine=True))
        layers.append(nn.LeakyReLU(CRITIC_SLOPE))
        prev = width
    return nn.Sequential(*layers)


def _check_input(x: torch.Tensor, channels: int, who: str) -> None:
    expected = (channels, OUTPUT_SIZE, OUTPUT_SIZE, OUTPUT_SIZE)
    if x.ndim != 5 or tuple(x.shape[1:]) != expected:
        raise ValueError(f"{who} expects (B, {', '.join(map(str, expected))}) label volumes, got {tuple(x.shape)}")


class Critic(nn.Module):
    """WGAN critic: (B, 3, 64, 64, 64) labels -> (B,) scores. Spectral norm on every convolution."""

    def __init__(self, channel: int = 64, in_channels: int = len(CHANNEL_NAMES)) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.features = _down_stack(in_channels, channel, sn=True, norm=False)
        self.out = spectral_norm(nn.Conv3d(WIDTH_MULTIPLIERS[0] * channel, 1, kernel_size=STEM_SIZE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 64, 64, 64) -> (B,)."""
        _check_input(x, self.in_channels, "Critic")
        return self.out(self.features(x)).flatten()


class Encoder(nn.Module):
    """Encoder of the alpha-GAN: (B, 3, 64, 64, 64) labels -> (B, latent_dim) codes (no spectral norm)."""

    def __init__(self, latent_dim: int, channel: int = 64, in_channels: int = len(CHANNEL_NAMES)) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.features = _down_stack(in_channels, channel, sn=False, norm=True)
        self.out = nn.Conv3d(WIDTH_MULTIPLIERS[0] * channel, latent_dim, kernel_size=STEM_SIZE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, 64, 64, 64) -> (B, latent_dim)."""
        _check_input(x, self.in_channels, "Encoder")
        return self.out(self.features(x)).flatten(1)


class CodeDiscriminator(nn.Module):
    """Code critic of the alpha-GAN: (B, latent_dim) -> (B,) scores. Spectral norm on every layer."""

    def __init__(self, latent_dim: int, hidden: int = 1024) -> None:
        super().__init__()
        self.net = nn.Sequential(
            spectral_norm(nn.Linear(latent_dim, hidden)),
            nn.LeakyReLU(CRITIC_SLOPE),
            spectral_norm(nn.Linear(hidden, hidden)),
            nn.LeakyReLU(CRITIC_SLOPE),
            spectral_norm(nn.Linear(hidden, 1)),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_dim) -> (B,)."""
        return self.net(z).flatten()


__all__ = ["CodeDiscriminator", "Critic", "Encoder", "LabelGANNetsConfig"]
