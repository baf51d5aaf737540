"""The wavelet-space 3D U-Net denoiser of WDM (a guided-diffusion style U-Net without attention).

Layout (``L = len(channel_mult)`` levels, ``R = num_res_blocks``):

* ``stem``: 3x3x3 convolution ``in_channels -> model_channels``.
* ``encoder``: per level ``R`` residual blocks to ``model_channels * mult``, then (except at the last level) one
  residual block that halves the grid with 2x2x2 average pooling. The stem and every encoder block leave a skip.
* ``middle``: two residual blocks at the bottleneck.
* ``decoder``: per level (deepest first) ``R + 1`` residual blocks, each preceded by merging one skip; with
  additive skips the merge is ``(h + skip) / 2`` and each block's output width is the width of the *next* skip
  it will be merged with (``model_channels`` for the last block). Every level but the top ends with a residual
  block that doubles the grid (nearest neighbour).
* ``head``: GroupNorm, SiLU and a zero-initialised 3x3x3 convolution to ``out_channels``.

Residual blocks add a projection of the timestep embedding (sinusoidal, width ``model_channels``, widened by an
MLP to ``time_embed_mult * model_channels``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from wdm_inpaint.config import ConfigError, UNetConfig, WDMConfig
from wdm_inpaint.models.blocks import OutputHead, Resample, ResBlock
from wdm_inpaint.models.embedding import TimestepMLP, timestep_embedding

NUM_MIDDLE_BLOCKS = 2
"""Residual blocks at the bottleneck."""


@dataclass(frozen=True)
class BlockSpec:
    """Widths and resampling of one residual block."""

    in_channels: int
    out_channels: int
    resample: Resample = "none"


@dataclass(frozen=True)
class UNetLayout:
    """Every residual block of a :class:`WDMUNet`, derived from its config alone.

    Attributes:
        skip_channels: widths of the skips left by the stem and the encoder blocks, in order.
        encoder: encoder blocks in order.
        middle: bottleneck blocks.
        decoder: per decoder step, the block applied after merging a skip and the optional upsampling block.
        head_channels: width entering the output head.
    """

    skip_channels: tuple[int, ...]
    encoder: tuple[BlockSpec, ...]
    middle: tuple[BlockSpec, ...]
    decoder: tuple[tuple[BlockSpec, BlockSpec | None], ...]
    head_channels: int


def unet_layout(config: UNetConfig) -> UNetLayout:
    """Compute the block widths of the U-Net described by ``config``."""
    base = config.model_channels
    ch = base
    skips = [base]
    encoder: list[BlockSpec] = []
    last_level = len(config.channel_mult) - 1
    for level, mult in enumerate(config.channel_mult):
        for _ in range(config.num_res_blocks):
            encoder.append(BlockSpec(ch, mult * base))
            ch = mult * base
            skips.append(ch)
        if level != last_level:
            encoder.append(BlockSpec(ch, ch, "down"))
            skips.append(ch)
    middle = tuple(BlockSpec(ch, ch) for _ in range(NUM_MIDDLE_BLOCKS))

    pending = list(skips)
    decoder: list[tuple[BlockSpec, BlockSpec | None]] = []
    for level in range(last_level, -1, -1):
        for i in range(config.num_res_blocks + 1):
            skip = pending.pop()
            if config.additive_skips:
                block = BlockSpec(ch, pending[-1] if pending else base)
            else:
                block = BlockSpec(ch + skip, config.channel_mult[level] * base)
            ch = block.out_channels
            up = BlockSpec(ch, ch, "up") if level and i == config.num_res_blocks else None
            decoder.append((block, up))
    return UNetLayout(tuple(skips), tuple(encoder), middle, tuple(decoder), ch)


class DecoderBlock(nn.Module):
    """One decoder step: a residual block, optionally followed by an upsampling residual block."""

    def __init__(self, block: ResBlock, upsample: ResBlock | None) -> None:
        super().__init__()
        self.block = block
        self.upsample = upsample


class WDMUNet(nn.Module):
    """3D U-Net predicting the clean wavelet coefficients x0 from noisy ones (plus conditioning channels).

    Args:
        config: architecture; ``config.in_channels`` counts the noisy wavelet channels and any conditioning
            channels concatenated after them.

    Raises:
        ConfigError: if the configuration asks for a variant this network does not implement.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if not config.resblock_updown:
            raise ConfigError(
                "UNetConfig.resblock_updown=False (strided-convolution resampling) is not implemented; "
                "WDM uses residual up/down blocks: set resblock_updown=true"
            )
        self.config = config
        self.gradient_checkpointing = False
        layout = unet_layout(config)
        embed_channels = config.time_embed_mult * config.model_channels

        def res(spec: BlockSpec) -> ResBlock:
            return ResBlock(
                spec.in_channels, spec.out_channels, embed_channels, config.num_groups, config.dropout, spec.resample
            )

        self.time_embedding = TimestepMLP(config.model_channels, embed_channels)
        self.stem = nn.Conv3d(config.in_channels, config.model_channels, kernel_size=3, padding=1)
        self.encoder = nn.ModuleList(res(spec) for spec in layout.encoder)
        self.middle = nn.ModuleList(res(spec) for spec in layout.middle)
        self.decoder = nn.ModuleList(
            DecoderBlock(res(block), res(up) if up is not None else None) for block, up in layout.decoder
        )
        self.head = OutputHead(layout.head_channels, config.out_channels, config.num_groups)

    def set_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute residual-block activations in the backward pass (less memory, about 30% more compute).

        Only active in training mode with gradients enabled.
        """
        self.gradient_checkpointing = bool(enabled)

    def _run(self, block: nn.Module, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, h, emb, use_reentrant=False)
        return block(h, emb)

    def check_input(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Validate the shapes of ``x`` and ``t``; returns ``t`` as a ``(B,)`` tensor.

        Raises:
            ValueError: with the expected and actual shapes.
        """
        cfg = self.config
        if x.dim() != 5:
            raise ValueError(f"WDMUNet expects a (B, C, D, H, W) input, got shape {tuple(x.shape)}")
        if x.shape[1] != cfg.in_channels:
            raise ValueError(
                f"WDMUNet expects {cfg.in_channels} input channels ({cfg.out_channels} noisy wavelet channels + "
                f"{cfg.in_channels - cfg.out_channels} conditioning channels), got {x.shape[1]}"
            )
        factor = cfg.downsample_factor
        if any(s % factor for s in x.shape[2:]):
            raise ValueError(
                f"WDMUNet input spatial size {tuple(x.shape[2:])} must be divisible by {factor} "
                f"(2 ** {len(cfg.channel_mult) - 1} downsamplings); pad the image to a multiple of {cfg.image_multiple}"
            )
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(f"WDMUNet expects timesteps of shape ({x.shape[0]},), got {tuple(t.shape)}")
        return t

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predict x0 in wavelet space.

        Args:
            x: ``(B, in_channels, D, H, W)``: noisy wavelet coefficients followed by conditioning channels;
                D, H, W divisible by ``config.downsample_factor``.
            t: ``(B,)`` timesteps (a 0-d tensor is broadcast to the batch).

        Returns:
            ``(B, out_channels, D, H, W)``.
        """
        t = self.check_input(x, t)
        emb = self.time_embedding(timestep_embedding(t, self.config.model_channels, self.config.max_period))
        h = self.stem(x)
        skips = [h]
        for block in self.encoder:
            h = self._run(block, h, emb)
            skips.append(h)
        for block in self.middle:
            h = self._run(block, h, emb)
        for step in self.decoder:
            skip = skips.pop()
            h = (h + skip) / 2 if self.config.additive_skips else torch.cat([h, skip], dim=1)
            h = self._run(step.block, h, emb)
            if step.upsample is not None:
                h = self._run(step.upsample, h, emb)
        return self.head(h)


def build_model(config: UNetConfig | WDMConfig) -> WDMUNet:
    """Build a freshly initialised :class:`WDMUNet` from a U-Net or full model config."""
    return WDMUNet(config.unet if isinstance(config, WDMConfig) else config)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = ["BlockSpec", "UNetLayout", "WDMUNet", "build_model", "count_parameters", "unet_layout"]
