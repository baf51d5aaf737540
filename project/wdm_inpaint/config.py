"""Typed configuration objects and their (de)serialisation.

Every object of the package is built from a dataclass defined here or next to the object. A checkpoint
stores :class:`WDMConfig` as a plain dictionary, so loading a model needs no command-line flags.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key is invalid."""


def to_dict(obj: Any) -> Any:
    """Turn a (nested) dataclass into plain Python containers (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} does not match {tp}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(get_args(tp))}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        return from_dict(tp, value, where)
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is list:
        (arg,) = get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(arg, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str | None = None) -> T:
    """Build dataclass ``cls`` from a mapping, checking keys and types.

    Raises:
        ConfigError: on an unknown key or a value of the wrong type; the message names the key.
    """
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys are {sorted(names)}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def apply_overrides(cls: type[T], data: dict[str, Any], overrides: list[str]) -> T:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML scalars) to ``data`` and build ``cls``."""
    import yaml

    data = to_dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        key, raw = item.split("=", 1)
        node = data
        parts = key.split(".")
        for p in parts[:-1]:
            if p not in node or not isinstance(node[p], dict):
                node[p] = {} if p not in node else node[p]
            node = node[p]
        node[parts[-1]] = yaml.safe_load(raw)
    return from_dict(cls, data)


# --------------------------------------------------------------------------- core model configs


@dataclass(frozen=True)
class WaveletConfig:
    """Wavelet packing of images for the diffusion model.

    Attributes:
        lll_scale: the low-pass (LLL) band is divided by this value when an image, a target or a mask is
            packed, and multiplied by it before the inverse transform. Upstream uses 3. Noise is never scaled.
    """

    lll_scale: float = 3.0

    def __post_init__(self) -> None:
        if not self.lll_scale > 0:
            raise ConfigError(f"WaveletConfig.lll_scale must be > 0, got {self.lll_scale}")


@dataclass(frozen=True)
class ScheduleConfig:
    """Noise schedule of the trained diffusion process.

    Attributes:
        kind: ``linear`` (upstream: betas from 1e-4*s to 0.02*s, s = 1000/T) or ``cosine``.
        num_timesteps: the number of trained timesteps T.
        linear_beta_start: first beta of the linear schedule at T = 1000 (scaled by 1000/T).
        linear_beta_end: last beta of the linear schedule at T = 1000 (scaled by 1000/T).
        cosine_offset: the ``s`` offset of the cosine schedule (Nichol & Dhariwal).
        max_beta: betas of the cosine schedule are clipped to this value.
    """

    kind: Literal["linear", "cosine"] = "linear"
    num_timesteps: int = 1000
    linear_beta_start: float = 1e-4
    linear_beta_end: float = 0.02
    cosine_offset: float = 0.008
    max_beta: float = 0.999

    def __post_init__(self) -> None:
        if self.num_timesteps < 1:
            raise ConfigError(f"ScheduleConfig.num_timesteps must be >= 1, got {self.num_timesteps}")


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of the wavelet-space 3D U-Net (guided-diffusion ``UNetModel`` as WDM configures it).

    Attributes:
        in_channels: input channels: 8 noisy wavelet bands plus any conditioning channels.
        out_channels: output channels (8 wavelet bands of the x0 prediction).
        model_channels: base width.
        channel_mult: width multiplier per resolution level; len(channel_mult) - 1 downsamplings.
        num_res_blocks: residual blocks per encoder level (the decoder has one more per level).
        num_groups: GroupNorm groups.
        dropout: dropout inside residual blocks.
        additive_skips: decoder merges skips as ``(h + skip) / 2`` instead of concatenation.
        resblock_updown: down/upsample with residual blocks (average pooling / nearest upsampling).
        time_embed_mult: the time-embedding MLP width is ``time_embed_mult * model_channels``.
        max_period: max period of the sinusoidal timestep embedding.
    """

    in_channels: int = 16
    out_channels: int = 8
    model_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2, 4, 4, 4)
    num_res_blocks: int = 2
    num_groups: int = 32
    dropout: float = 0.0
    additive_skips: bool = True
    resblock_updown: bool = True
    time_embed_mult: int = 4
    max_period: float = 10000.0

    def __post_init__(self) -> None:
        for name in ("in_channels", "out_channels", "model_channels", "num_res_blocks", "num_groups"):
            if getattr(self, name) < 1:
                raise ConfigError(f"UNetConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.channel_mult:
            raise ConfigError("UNetConfig.channel_mult must name at least one level")
        for m in self.channel_mult:
            if (m * self.model_channels) % self.num_groups:
                raise ConfigError(
                    f"UNetConfig: every level width (model_channels * mult = {m * self.model_channels}) must be "
                    f"a multiple of num_groups={self.num_groups}"
                )

    @property
    def downsample_factor(self) -> int:
        """Spatial factor by which the wavelet-space input is reduced at the bottleneck."""
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def image_multiple(self) -> int:
        """Every image-space size must be a multiple of this (the DWT halves, then the U-Net downsamples)."""
        return 2 * self.downsample_factor


@dataclass(frozen=True)
class ModeConfig:
    """Training / inpainting mode.

    Attributes:
        name: ``default`` (unconditional, noise everywhere), ``akh`` (always-known-healthy: mask as condition,
            noise only in the region), ``akh_context`` (akh plus the clean voided image as condition) or ``prior``
            (akh_context whose x0 is a residual over the harmonic fill of the hole; see
            :mod:`wdm_inpaint.diffusion.prior_mode`).
        roi_loss_weight: weight of the in-region image-space MSE term (akh modes; upstream 10).
        image_loss: image-space reconstruction loss of the akh_context and prior modes: ``mse`` or ``l1``.
        ssim_weight: weight of an optional (1 - SSIM) term (akh_context, prior).
    """

    name: Literal["default", "akh", "akh_context", "prior"] = "akh"
    roi_loss_weight: float = 10.0
    image_loss: Literal["mse", "l1"] = "mse"
    ssim_weight: float = 0.0


@dataclass(frozen=True)
class PreprocessConfig:
    """Image preprocessing into the model grid (and its exact inverse).

    Attributes:
        orientation: axis codes the model works in.
        spatial_size: model grid; ``None`` pads each axis to the next multiple of the model's ``image_multiple``.
        lower_quantile: lower clipping quantile (fraction) of the intensity normalisation.
        upper_quantile: upper clipping quantile (fraction).
        crop_margin: margin (voxels) around the mask bounding box for crop-based training and inference.
        crop: whether inference samples only a crop around the mask.
        crop_split: with ``crop``, sample one box per group of far-apart connected components of the mask
            instead of one box around all of it (see :mod:`wdm_inpaint.data.cropping`): fewer voxels, less
            context. Off by default: on the bundled model it lowered SSIM (``docs/performance.md``).
        intensity_restore: how a model output returns to the native intensity scale: ``lstsq`` (gain fitted
            outside the mask, as upstream) or ``percentile`` (inverse of the quantile normalisation).
    """

    orientation: str = "RAS"
    spatial_size: tuple[int, int, int] | None = (256, 256, 256)
    lower_quantile: float = 0.001
    upper_quantile: float = 0.999
    crop_margin: int = 8
    crop: bool = False
    crop_split: bool = False
    intensity_restore: Literal["lstsq", "percentile"] = "lstsq"

    def __post_init__(self) -> None:
        if not 0.0 <= self.lower_quantile < self.upper_quantile <= 1.0:
            raise ConfigError(
                f"PreprocessConfig: need 0 <= lower_quantile < upper_quantile <= 1, got "
                f"{self.lower_quantile}, {self.upper_quantile}"
            )


@dataclass(frozen=True)
class WDMConfig:
    """Everything needed to rebuild a trained model and use it: stored inside every checkpoint."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    wavelet: WaveletConfig = field(default_factory=WaveletConfig)
    mode: ModeConfig = field(default_factory=ModeConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)


__all__ = [
    "ConfigError",
    "ModeConfig",
    "PreprocessConfig",
    "ScheduleConfig",
    "UNetConfig",
    "WDMConfig",
    "WaveletConfig",
    "apply_overrides",
    "from_dict",
    "to_dict",
]
