"""Conversion of upstream U-Net state dicts (wdm-3d, Faking_it) into this project's checkpoints.

The upstream network is guided-diffusion's ``UNetModel``; its keys look like ``input_blocks.3.0.in_layers.2.weight``.
The architecture is inferred from the tensor shapes alone:

* ``input_blocks.0.0.weight`` ``(model_channels, in_channels, 3, 3, 3)``; ``out.2.weight`` ``(out_channels, ...)``;
* ``time_embed.0.weight`` ``(time_embed_mult * model_channels, model_channels)``;
* the output blocks with a second (upsampling) module count the levels minus one; output blocks per level are
  ``num_res_blocks + 1``;
* each level's first encoder block gives ``model_channels * channel_mult[level]``;
* additive skips leave the first decoder block as wide as the bottleneck (concatenation doubles it).

GroupNorm groups, dropout and the embedding's max period are not visible in the weights; they default to the
upstream values.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from wdm_inpaint.config import ModeConfig, ScheduleConfig, UNetConfig, WDMConfig

logger = logging.getLogger(__name__)

UPSTREAM_NUM_GROUPS = 32
"""GroupNorm groups of the published upstream models (not recoverable from the weights)."""

WRAPPER_KEYS = ("state_dict", "model")
"""Keys under which training scripts sometimes nest the state dict."""

DATA_PARALLEL_PREFIX = "module."
"""Prefix that (Distributed)DataParallel adds to every key."""

_RESBLOCK_PARTS = {
    "in_layers.0": "norm1",
    "in_layers.2": "conv1",
    "emb_layers.1": "time_proj",
    "out_layers.0": "norm2",
    "out_layers.3": "conv2",
    "skip_connection": "skip",
}
_PART = "|".join(re.escape(p) for p in _RESBLOCK_PARTS)
_KEY_RULES: tuple[tuple[re.Pattern[str], Any], ...] = (
    (re.compile(r"time_embed\.0\.(weight|bias)"), lambda m: f"time_embedding.linear_1.{m[1]}"),
    (re.compile(r"time_embed\.2\.(weight|bias)"), lambda m: f"time_embedding.linear_2.{m[1]}"),
    (re.compile(r"input_blocks\.0\.0\.(weight|bias)"), lambda m: f"stem.{m[1]}"),
    (
        re.compile(rf"input_blocks\.([1-9]\d*)\.0\.({_PART})\.(weight|bias)"),
        lambda m: f"encoder.{int(m[1]) - 1}.{_RESBLOCK_PARTS[m[2]]}.{m[3]}",
    ),
    (
        re.compile(rf"middle_block\.(\d+)\.({_PART})\.(weight|bias)"),
        lambda m: f"middle.{m[1]}.{_RESBLOCK_PARTS[m[2]]}.{m[3]}",
    ),
    (
        re.compile(rf"output_blocks\.(\d+)\.0\.({_PART})\.(weight|bias)"),
        lambda m: f"decoder.{m[1]}.block.{_RESBLOCK_PARTS[m[2]]}.{m[3]}",
    ),
    (
        re.compile(rf"output_blocks\.(\d+)\.1\.({_PART})\.(weight|bias)"),
        lambda m: f"decoder.{m[1]}.upsample.{_RESBLOCK_PARTS[m[2]]}.{m[3]}",
    ),
    (re.compile(r"out\.0\.(weight|bias)"), lambda m: f"head.norm.{m[1]}"),
    (re.compile(r"out\.2\.(weight|bias)"), lambda m: f"head.conv.{m[1]}"),
)
_UNSUPPORTED = {
    "attention": re.compile(r"\.(qkv|proj_out)\."),
    "class embedding (num_classes)": re.compile(r"^label_emb\."),
    "convolutional resampling (resblock_updown=False)": re.compile(
        r"^(input_blocks\.\d+\.0\.op|output_blocks\.\d+\.\d+\.conv)\."
    ),
}


class ConversionError(ValueError):
    """An upstream state dict cannot be converted (the message lists the offending keys)."""


def upstream_key_to_ours(key: str) -> str | None:
    """Our parameter name for an upstream ``UNetModel`` key, or ``None`` if it has no counterpart."""
    for pattern, rename in _KEY_RULES:
        match = pattern.fullmatch(key)
        if match:
            return rename(match)
    return None


def _shape(state_dict: Mapping[str, Any], key: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise ConversionError(f"not an upstream WDM U-Net state dict: key {key!r} is missing")
    return tuple(state_dict[key].shape)


def _block_indices(state_dict: Mapping[str, Any], prefix: str) -> list[int]:
    pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.")
    return sorted({int(m[1]) for k in state_dict if (m := pattern.match(k))})


def infer_unet_config(state_dict: Mapping[str, Any], num_groups: int = UPSTREAM_NUM_GROUPS) -> UNetConfig:
    """Infer the U-Net architecture from the shapes of an upstream state dict.

    Raises:
        ConversionError: if the keys do not describe a supported upstream U-Net.
    """
    for feature, pattern in _UNSUPPORTED.items():
        found = sorted(k for k in state_dict if pattern.search(k))
        if found:
            raise ConversionError(f"the upstream model uses {feature}, which is not supported (keys {found[:4]})")
    model_channels, in_channels = _shape(state_dict, "input_blocks.0.0.weight")[:2]
    out_channels = _shape(state_dict, "out.2.weight")[0]
    embed_width, embed_in = _shape(state_dict, "time_embed.0.weight")
    if embed_in != model_channels or embed_width % model_channels:
        raise ConversionError(
            f"time_embed.0.weight has shape {(embed_width, embed_in)}, "
            f"expected (k * {model_channels}, {model_channels})"
        )
    inputs = _block_indices(state_dict, "input_blocks")
    outputs = _block_indices(state_dict, "output_blocks")
    upsampling = [i for i in outputs if any(k.startswith(f"output_blocks.{i}.1.") for k in state_dict)]
    levels = len(upsampling) + 1
    if not outputs or len(outputs) % levels or len(inputs) != len(outputs) or inputs != list(range(len(inputs))):
        raise ConversionError(
            f"cannot infer the levels: {len(inputs)} input blocks, {len(outputs)} output blocks, "
            f"{len(upsampling)} upsampling blocks (expected levels * (num_res_blocks + 1) of each)"
        )
    num_res_blocks = len(outputs) // levels - 1
    if num_res_blocks < 1:
        raise ConversionError("cannot infer the levels: fewer than one residual block per level")
    channel_mult = []
    for level in range(levels):
        width = _shape(state_dict, f"input_blocks.{1 + level * (num_res_blocks + 1)}.0.in_layers.2.weight")[0]
        if width % model_channels:
            raise ConversionError(f"level {level} width {width} is not a multiple of model_channels={model_channels}")
        channel_mult.append(width // model_channels)
    bottleneck = _shape(state_dict, "middle_block.0.in_layers.2.weight")[0]
    first_decoder_in = _shape(state_dict, "output_blocks.0.0.in_layers.2.weight")[1]
    return UNetConfig(
        in_channels=in_channels,
        out_channels=out_channels,
        model_channels=model_channels,
        channel_mult=tuple(channel_mult),
        num_res_blocks=num_res_blocks,
        num_groups=num_groups,
        additive_skips=first_decoder_in == bottleneck,
        resblock_updown=True,
        time_embed_mult=embed_width // model_channels,
    )


def map_state_dict(state_dict: Mapping[str, torch.Tensor], config: UNetConfig) -> dict[str, torch.Tensor]:
    """Rename every upstream key to ours and check it against the architecture of ``config``.

    Raises:
        ConversionError: listing upstream keys left over (no counterpart), our parameters left missing, and
            shape mismatches. Every key must be consumed.
    """
    from wdm_inpaint.models.unet import WDMUNet

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in WDMUNet(config).state_dict().items()}
    converted: dict[str, torch.Tensor] = {}
    leftover: list[str] = []
    mismatched: list[str] = []
    seen: set[str] = set()
    for key, tensor in state_dict.items():
        ours = upstream_key_to_ours(key)
        if ours is None or ours not in expected or ours in seen:
            leftover.append(key)
        elif tuple(tensor.shape) != expected[ours]:
            seen.add(ours)
            mismatched.append(f"{key} {tuple(tensor.shape)} -> {ours} {expected[ours]}")
        else:
            seen.add(ours)
            converted[ours] = tensor
    missing = sorted(set(expected) - seen)
    if leftover or missing or mismatched:
        parts = []
        if leftover:
            parts.append(f"{len(leftover)} upstream key(s) not consumed: {sorted(leftover)[:10]}")
        if missing:
            parts.append(f"{len(missing)} parameter(s) missing: {missing[:10]}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatch(es): {mismatched[:10]}")
        raise ConversionError("the upstream state dict does not match the inferred U-Net: " + "; ".join(parts))
    return converted


def unwrap_state_dict(obj: Any, source: str = "state dict") -> dict[str, torch.Tensor]:
    """The tensor mapping inside ``obj``: a plain state dict, or one nested under ``state_dict`` / ``model``;
    a ``module.`` prefix on every key is removed.

    Raises:
        ConversionError: if no state dict of tensors is found (or ``obj`` is already our checkpoint).
    """
    from wdm_inpaint.checkpoint import CHECKPOINT_FORMAT

    if isinstance(obj, Mapping) and obj.get("format") == CHECKPOINT_FORMAT:
        raise ConversionError(f"{source} is already a wdm-inpaint checkpoint; nothing to convert")
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(
            f"{source} does not hold a state dict of tensors (a plain dict, or one under {list(WRAPPER_KEYS)})"
        )
    if all(k.startswith(DATA_PARALLEL_PREFIX) for k in obj):
        obj = {k[len(DATA_PARALLEL_PREFIX) :]: v for k, v in obj.items()}
    return dict(obj)


def convert_state_dict(
    state_dict: Mapping[str, torch.Tensor], num_groups: int = UPSTREAM_NUM_GROUPS
) -> tuple[UNetConfig, dict[str, torch.Tensor]]:
    """Infer the architecture of an upstream state dict and rename its keys (floats are cast to float32).

    Returns:
        ``(unet_config, state_dict)`` ready for :class:`~wdm_inpaint.models.unet.WDMUNet`.
    """
    config = infer_unet_config(state_dict, num_groups)
    converted = map_state_dict(state_dict, config)
    return config, {k: v.float() if v.is_floating_point() else v for k, v in converted.items()}


def convert_checkpoint(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    mode: str | None = None,
    schedule: ScheduleConfig | None = None,
    num_groups: int = UPSTREAM_NUM_GROUPS,
) -> WDMConfig:
    """Convert an upstream state-dict file into a wdm-inpaint checkpoint.

    Args:
        source: upstream ``.pt`` file (read with ``weights_only=True``; no pickled code runs).
        destination: checkpoint to write (atomically).
        mode: training mode of the model; inferred from the input channels when ``None``
            (8 -> ``default``, 16 -> ``akh``, 24 -> ``akh_context``).
        schedule: noise schedule the model was trained with (default: linear, T = 1000).
        num_groups: GroupNorm groups of the upstream model.

    Returns:
        The config stored in the checkpoint.

    Raises:
        FileNotFoundError: if ``source`` does not exist.
        ConversionError: if the file is not a convertible upstream U-Net, or ``mode`` does not fit its inputs.
    """
    from wdm_inpaint.checkpoint import check_config, save_checkpoint
    from wdm_inpaint.diffusion.registry import MODES, mode_for_in_channels, upstream_modes

    if mode is not None and mode in MODES and not MODES[mode].upstream:
        raise ConversionError(
            f"mode {mode!r} has no upstream counterpart, so no upstream checkpoint converts to it (upstream modes: "
            f"{upstream_modes()}); train a {mode!r} model with 'wdm-inpaint train' instead"
        )
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"upstream checkpoint {source} does not exist")
    try:
        raw = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise ConversionError(f"{source} cannot be read as a safe PyTorch file ({type(exc).__name__}: {exc})") from exc
    try:
        unet, weights = convert_state_dict(unwrap_state_dict(raw, str(source)), num_groups)
        name = mode or mode_for_in_channels(unet.in_channels)
        mode_config = ModeConfig(name=name)  # type: ignore[arg-type]
        config = WDMConfig(unet=unet, schedule=schedule or ScheduleConfig(), mode=mode_config)
        check_config(config, str(source))
    except ValueError as exc:
        message = str(exc) if str(source) in str(exc) else f"{source}: {exc}"
        raise ConversionError(message) from exc
    save_checkpoint(destination, weights, config, metadata={"converted_from": source.name})
    logger.info("converted %s -> %s (%s)", source, destination, unet)
    return config


__all__ = [
    "ConversionError",
    "convert_checkpoint",
    "convert_state_dict",
    "infer_unet_config",
    "map_state_dict",
    "unwrap_state_dict",
    "upstream_key_to_ours",
]
