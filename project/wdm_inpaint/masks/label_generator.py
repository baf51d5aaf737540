"""3-D label-generator GAN generator: a noise vector to a (TC, WT, ET) tumour label volume of 64^3 voxels.

Architecture (width ``c = channel``):

* ``z`` of ``noise_dim`` values viewed as (noise_dim, 1, 1, 1);
* transposed convolution, kernel 4, to ``8c`` channels at 4^3, then instance norm and leaky ReLU;
* three blocks of [nearest upsampling x2, 3^3 convolution, instance norm, leaky ReLU]: 8c -> 4c -> 2c -> c
  (8^3 -> 32^3);
* nearest upsampling x2 and a 3^3 convolution to 3 channels, then tanh: (3, 64, 64, 64) in [-1, 1].

Convolutions have no bias and the instance norms no affine parameters. Besides its own checkpoint format
(:func:`save_label_generator`), :func:`load_label_generator` reads the published ``LabelGenerator.pth`` files,
whose keys are ``tp_conv1.weight`` ... ``tp_conv5.weight`` (a plain state dict, or a trainer dict holding one under
``state_dict``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wdm_inpaint.io.atomic import atomic_path
from wdm_inpaint.models.state_dict import compare_state_dict, expected_shapes

logger = logging.getLogger(__name__)

CHANNEL_NAMES: tuple[str, str, str] = ("TC", "WT", "ET")
"""Output channels: tumour core, whole tumour, enhancing tumour."""

WT_CHANNEL = CHANNEL_NAMES.index("WT")
"""Index of the whole-tumour channel (the one used as a region shape)."""

STEM_SIZE = 4
"""Spatial size of the first feature map (kernel of the first transposed convolution)."""

WIDTH_MULTIPLIERS: tuple[int, ...] = (8, 4, 2, 1)
"""Feature widths of the stem and the upsampling blocks, in units of ``channel``."""

OUTPUT_SIZE = STEM_SIZE * 2 ** len(WIDTH_MULTIPLIERS)
"""Edge length of the generated volume (64)."""

GENERATOR_FORMAT = "wdm-inpaint/label-generator"
"""Format marker of the generator checkpoints written by :func:`save_label_generator`."""

GENERATOR_FORMAT_VERSION = 1
"""Version of the generator checkpoint layout."""


@dataclass(frozen=True)
class LabelGeneratorConfig:
    """Hyper-parameters of :class:`LabelGenerator`.

    Attributes:
        noise_dim: length of the latent vector ``z``.
        channel: base width ``c``; the published model uses 64 (widths 512, 256, 128, 64).
        out_channels: generated label channels (TC, WT, ET).
        negative_slope: slope of the leaky ReLUs.
    """

    noise_dim: int = 100
    channel: int = 64
    out_channels: int = len(CHANNEL_NAMES)
    negative_slope: float = 0.01

    def __post_init__(self) -> None:
        for name in ("noise_dim", "channel", "out_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"LabelGeneratorConfig.{name} must be a positive integer, got {value!r}")
        if self.negative_slope < 0:
            raise ValueError(f"LabelGeneratorConfig.negative_slope must be >= 0, got {self.negative_slope}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (stored in checkpoints)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelGeneratorConfig:
        """Build from a dict, rejecting unknown keys with a clear message."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown LabelGeneratorConfig keys {unknown}; known keys are {sorted(known)}")
        return cls(**data)


class _UpBlock(nn.Module):
    """Nearest upsampling x2, 3^3 convolution (no bias), instance norm, leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.norm = nn.InstanceNorm3d(out_channels)
        self.act = nn.LeakyReLU(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, S, S, S) -> (B, C_out, 2S, 2S, 2S)."""
        return self.act(self.norm(self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))))


class LabelGenerator(nn.Module):
    """Generator of 3-channel tumour label volumes from Gaussian noise."""

    def __init__(self, config: LabelGeneratorConfig | None = None) -> None:
        super().__init__()
        self.config = config or LabelGeneratorConfig()
        c = self.config.channel
        widths = [m * c for m in WIDTH_MULTIPLIERS]
        self.stem = nn.ConvTranspose3d(self.config.noise_dim, widths[0], kernel_size=STEM_SIZE, bias=False)
        self.stem_norm = nn.InstanceNorm3d(widths[0])
        self.stem_act = nn.LeakyReLU(self.config.negative_slope)
        self.blocks = nn.ModuleList(
            _UpBlock(w_in, w_out, self.config.negative_slope) for w_in, w_out in zip(widths[:-1], widths[1:])
        )
        self.head = nn.Conv3d(widths[-1], self.config.out_channels, kernel_size=3, padding=1, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Generate labels.

        Args:
            z: (B, noise_dim) latent vectors.

        Returns:
            (B, out_channels, 64, 64, 64) values in [-1, 1]; > 0 means "label present".
        """
        if z.ndim != 2 or z.shape[1] != self.config.noise_dim:
            raise ValueError(f"z must have shape (B, {self.config.noise_dim}), got {tuple(z.shape)}")
        h = self.stem_act(self.stem_norm(self.stem(z.view(z.shape[0], -1, 1, 1, 1))))
        for block in self.blocks:
            h = block(h)
        h = self.head(F.interpolate(h, scale_factor=2, mode="nearest"))
        return torch.tanh(h)

    def sample_noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw (n, noise_dim) standard normal latents on the module's device."""
        device = next(self.parameters()).device
        return torch.randn(n, self.config.noise_dim, generator=generator, device=device)


# --------------------------------------------------------------------------------------------- key mapping
def upstream_key_map(config: LabelGeneratorConfig) -> dict[str, str]:
    """Map from the published generator's state-dict keys to this module's keys."""
    mapping = {"tp_conv1.weight": "stem.weight"}
    n_blocks = len(WIDTH_MULTIPLIERS) - 1
    for i in range(n_blocks):
        mapping[f"tp_conv{i + 2}.weight"] = f"blocks.{i}.conv.weight"
    mapping[f"tp_conv{n_blocks + 2}.weight"] = "head.weight"
    return mapping


def config_from_state_dict(state_dict: dict[str, torch.Tensor], source: str = "state dict") -> LabelGeneratorConfig:
    """Infer ``noise_dim``, ``channel`` and ``out_channels`` from a (native or published-format) state dict."""
    if "stem.weight" in state_dict:
        stem, head = state_dict["stem.weight"], state_dict.get("head.weight")
    elif "tp_conv1.weight" in state_dict:
        stem, head = state_dict["tp_conv1.weight"], state_dict.get(f"tp_conv{len(WIDTH_MULTIPLIERS) + 1}.weight")
    else:
        raise ValueError(
            f"{source}: not a label-generator state dict (neither 'stem.weight' nor 'tp_conv1.weight' present; "
            f"keys start with {sorted(state_dict)[:5]})"
        )
    if stem.ndim != 5 or head is None or head.ndim != 5:
        raise ValueError(f"{source}: label-generator weights have unexpected shapes or a missing output layer")
    width = stem.shape[1]
    if width % WIDTH_MULTIPLIERS[0]:
        raise ValueError(f"{source}: first layer width {width} is not a multiple of {WIDTH_MULTIPLIERS[0]}")
    return LabelGeneratorConfig(
        noise_dim=int(stem.shape[0]), channel=int(width // WIDTH_MULTIPLIERS[0]), out_channels=int(head.shape[0])
    )


def convert_state_dict(
    state_dict: dict[str, torch.Tensor], config: LabelGeneratorConfig, source: str = "state dict"
) -> dict[str, torch.Tensor]:
    """Return a state dict with this module's key names, validating keys and shapes.

    Accepts native keys or the published ``tp_convN.weight`` keys. Every key must be consumed and every shape
    must match the model built from ``config``.

    Raises:
        ValueError: naming ``source`` and the missing, unexpected or mis-shaped keys.
    """
    expected = expected_shapes(LabelGenerator(config))
    if any(k.startswith("tp_conv") for k in state_dict):
        mapping = upstream_key_map(config)
        unexpected = sorted(k for k in state_dict if k not in mapping)
        converted = {mapping[k]: v for k, v in state_dict.items() if k in mapping}
    else:
        unexpected = sorted(k for k in state_dict if k not in expected)
        converted = {k: v for k, v in state_dict.items() if k in expected}
    mismatch = compare_state_dict(converted, expected)
    problems = []
    if mismatch.missing:
        problems.append(f"missing keys {mismatch.missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    for k, (got, needed) in mismatch.wrong_shapes.items():
        problems.append(f"{k}: shape {got} but the model (channel={config.channel}) needs {needed}")
    if problems:
        raise ValueError(f"{source}: cannot load label-generator weights: " + "; ".join(problems))
    return {k: v.float() for k, v in converted.items()}


# --------------------------------------------------------------------------------------------- files
def _extract(obj: Any, source: str) -> tuple[dict[str, torch.Tensor], LabelGeneratorConfig | None]:
    """Pull (state_dict, config or None) out of any supported checkpoint layout."""
    if not isinstance(obj, dict):
        raise ValueError(f"{source}: expected a dict (state dict or checkpoint), got {type(obj).__name__}")
    if obj.get("format") == GENERATOR_FORMAT:
        if "config" not in obj or "state_dict" not in obj:
            raise ValueError(f"{source}: label-generator checkpoint lacks 'config' or 'state_dict'")
        return obj["state_dict"], LabelGeneratorConfig.from_dict(dict(obj["config"]))
    if "format" in obj and "generator" in obj:  # a training checkpoint that embeds a generator checkpoint
        return _extract(obj["generator"], source)
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):  # trainer dict {"iteration", "state_dict", ...}
        return obj["state_dict"], None
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, None
    raise ValueError(
        f"{source}: not a label-generator checkpoint (expected a state dict of tensors, a dict with 'state_dict', "
        f"or a '{GENERATOR_FORMAT}' file; top-level keys: {sorted(map(str, obj))[:8]})"
    )


def load_label_generator(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[LabelGenerator, LabelGeneratorConfig]:
    """Load a label generator from this package's checkpoint or a published ``LabelGenerator.pth``.

    Args:
        path: the checkpoint file.
        map_location: device for the tensors.

    Returns:
        (model in eval mode, its config).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if the file is not a readable label-generator checkpoint (the message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label-generator checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the file is unusable
        raise ValueError(f"{path}: cannot read as a torch checkpoint ({type(exc).__name__}: {exc})") from exc
    state_dict, config = _extract(obj, str(path))
    if config is None:
        config = config_from_state_dict(state_dict, str(path))
    model = LabelGenerator(config)
    model.load_state_dict(convert_state_dict(state_dict, config, str(path)))
    model.to(map_location).eval()
    logger.info("loaded label generator from %s (channel=%d)", path, config.channel)
    return model, config


def generator_checkpoint(model: LabelGenerator, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Self-describing checkpoint dict: format marker, config and state dict (loadable with weights_only)."""
    ckpt: dict[str, Any] = {
        "format": GENERATOR_FORMAT,
        "version": GENERATOR_FORMAT_VERSION,
        "config": model.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if extra:
        ckpt["extra"] = dict(extra)
    return ckpt


def save_label_generator(
    path: str | os.PathLike[str], model: LabelGenerator, extra: dict[str, Any] | None = None
) -> Path:
    """Write a generator checkpoint atomically; ``extra`` holds plain metadata (e.g. the training step)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(generator_checkpoint(model, extra), tmp)
    return path


__all__ = [
    "CHANNEL_NAMES",
    "GENERATOR_FORMAT",
    "OUTPUT_SIZE",
    "WT_CHANNEL",
    "LabelGenerator",
    "LabelGeneratorConfig",
    "config_from_state_dict",
    "convert_state_dict",
    "generator_checkpoint",
    "load_label_generator",
    "save_label_generator",
    "upstream_key_map",
]
