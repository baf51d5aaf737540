"""Typed configuration of training runs.

:class:`TrainerConfig` holds everything the generic :class:`~wdm_inpaint.training.trainer.Trainer` needs (loop,
optimisation, EMA, checkpoints, logging, validation). A task adds its own fields by subclassing it:
:class:`TrainConfig` adds the diffusion model (:class:`~wdm_inpaint.config.WDMConfig`), the data and an optional
initialisation checkpoint. The YAML file of ``wdm-inpaint train`` maps one to one onto :class:`TrainConfig`::

    name: akh_tiny_cpu          # run folder: <output_dir>/<name>/
    output_dir: runs
    init_from: null             # unconditional checkpoint to start a conditional model from
    model: {unet: ..., schedule: ..., wavelet: ..., mode: ..., preprocess: ...}   # WDMConfig
    data: {split_json: ..., data_root: ..., ...}                                  # DataConfig
    loop: {max_steps: ..., batch_size: ..., seed: ..., precision: ..., ...}       # LoopConfig
    optim: {lr: ..., warmup_steps: ..., lr_schedule: ..., grad_clip_norm: ...}    # OptimConfig
    ema: {enabled: ..., decay: ...}                                               # EMAConfig
    checkpoint: {every: ..., keep_last: ...}                                      # CheckpointConfig
    logging: {log_every: ..., image_every: ..., ...}                              # LoggingConfig
    validation: {every: ..., metric: ..., ...}                                    # ValidationConfig
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from wdm_inpaint.config import ConfigError, WDMConfig, apply_overrides, from_dict, to_dict
from wdm_inpaint.data.augment import AugmentConfig

C = TypeVar("C", bound="TrainerConfig")

RUN_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
"""Characters allowed in a run name (it becomes a folder name)."""


@dataclass(frozen=True)
class LoopConfig:
    """The training loop.

    Attributes:
        max_steps: optimiser steps to run in total (a resumed run continues up to this number).
        batch_size: samples per step and per process; the global batch is ``batch_size * world_size``.
        num_workers: data-loader worker processes (0 loads in the main process).
        seed: base seed of everything random: model initialisation, data order, timesteps and noise.
        device: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``fp32`` or ``bf16`` (autocast of the forward pass; weights and optimiser stay fp32).
        gradient_checkpointing: recompute activations in the backward pass (less memory, ~30% slower).
        deterministic: ask torch for deterministic kernels (exact resume on CPU; slower on CUDA).
    """

    max_steps: int = 1000
    batch_size: int = 1
    num_workers: int = 0
    seed: int = 0
    device: str = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    gradient_checkpointing: bool = False
    deterministic: bool = True

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"loop.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ConfigError(f"loop.num_workers must be >= 0, got {self.num_workers}")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"loop.device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser (AdamW) and learning-rate schedule.

    Attributes:
        lr: peak learning rate.
        weight_decay: AdamW decoupled weight decay.
        betas: AdamW moment coefficients.
        eps: AdamW epsilon.
        grad_clip_norm: clip the global gradient norm to this value; ``None`` disables clipping.
        warmup_steps: linear warm-up from 0 to ``lr`` over this many steps (0 = none).
        lr_schedule: ``constant`` after warm-up, or ``cosine`` decay to ``min_lr_ratio * lr`` at ``loop.max_steps``.
        min_lr_ratio: final learning rate of the cosine schedule, as a fraction of ``lr``.
    """

    lr: float = 1e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip_norm: float | None = None
    warmup_steps: int = 0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"optim.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"optim.weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip_norm is not None and not self.grad_clip_norm > 0:
            raise ConfigError(f"optim.grad_clip_norm must be > 0 or null, got {self.grad_clip_norm}")
        if self.warmup_steps < 0:
            raise ConfigError(f"optim.warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass(frozen=True)
class EMAConfig:
    """Exponential moving average of the weights.

    Attributes:
        enabled: keep an EMA copy (saved in every checkpoint; inference checkpoints carry it too).
        decay: ``ema = decay * ema + (1 - decay) * weights`` after every update.
        start_step: before this step the EMA copy simply follows the weights.
        update_every: update the EMA every this many optimiser steps.
    """

    enabled: bool = False
    decay: float = 0.9999
    start_step: int = 0
    update_every: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay < 1.0:
            raise ConfigError(f"ema.decay must be in [0, 1), got {self.decay}")
        if self.start_step < 0 or self.update_every < 1:
            raise ConfigError("ema.start_step must be >= 0 and ema.update_every >= 1")


@dataclass(frozen=True)
class CheckpointConfig:
    """Checkpoint writing.

    Attributes:
        every: write a checkpoint every this many steps (and always at the last step).
        keep_last: keep only the newest this many step checkpoints (the best-validation one is kept apart).
    """

    every: int = 5000
    keep_last: int = 3

    def __post_init__(self) -> None:
        if self.every < 1 or self.keep_last < 1:
            raise ConfigError(
                f"checkpoint.every and checkpoint.keep_last must be >= 1, got {self.every}, {self.keep_last}"
            )


@dataclass(frozen=True)
class LoggingConfig:
    """Metrics, TensorBoard and console output.

    Attributes:
        log_every: write scalars (every loss term, LR, step time, GPU memory) every this many steps; the JSONL
            metrics file records the loss terms of every step regardless.
        image_every: write image panels (input / mask / prediction slices) every this many steps (0 = never).
        tensorboard: write TensorBoard event files under ``<run>/tensorboard``.
        progress: show a progress bar with loss and ETA on the console.
    """

    log_every: int = 10
    image_every: int = 500
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.log_every < 1 or self.image_every < 0:
            raise ConfigError("logging.log_every must be >= 1 and logging.image_every >= 0")


@dataclass(frozen=True)
class ValidationConfig:
    """Validation on held-out data.

    Attributes:
        every: validate every this many steps (0 = never).
        max_batches: validate on at most this many batches (``None`` = all).
        metric: the validation metric that selects the best checkpoint (``<run>/checkpoints/best.pt``).
        higher_is_better: direction of ``metric``.
    """

    every: int = 0
    max_batches: int | None = None
    metric: str = "loss"
    higher_is_better: bool = False

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ConfigError(f"validation.every must be >= 0, got {self.every}")


@dataclass(frozen=True)
class TrainerConfig:
    """Everything the generic trainer needs; tasks subclass it to add their model and data sections.

    Attributes:
        name: run name; the run folder is ``<output_dir>/<name>``.
        output_dir: parent folder of run folders.
    """

    name: str = "run"
    output_dir: str = "runs"
    loop: LoopConfig = field(default_factory=LoopConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self) -> None:
        if not self.name or set(self.name) - RUN_NAME_CHARS or self.name in {".", ".."}:
            raise ConfigError(f"name {self.name!r}: a run name may only use letters, digits, '-', '_' and '.'")

    @property
    def run_dir(self) -> Path:
        """The run folder ``<output_dir>/<name>``."""
        return Path(self.output_dir) / self.name


@dataclass(frozen=True)
class DataConfig:
    """Training and validation data of the diffusion model.

    The volumes go through the transform chain of :mod:`wdm_inpaint.data.transforms` configured by the model's
    ``preprocess`` section (grid size, quantiles, and ``preprocess.crop`` / ``crop_margin`` to train on crops
    around the mask).

    Attributes:
        split_json: MONAI decathlon-style split file listing the cases (keys ``t1n``, ``mask_healthy``,
            ``mask_unhealthy``).
        data_root: folder the paths in ``split_json`` are relative to (``None``: the split file's folder).
        train_key: list of the split file used for training.
        val_key: list used for validation (``None``: no validation data).
        cache_rate: fraction of the training cases kept in memory after the deterministic transforms.
        augment: training augmentation (``None``: none).
        patch_size: train on random patches of this image-space size centred on a random voxel of the first
            mask (``mask_healthy``), after the optional crop around the mask (``None``: whole grid or crop).
    """

    split_json: str | None = None
    data_root: str | None = None
    train_key: str = "training"
    val_key: str | None = "validation"
    cache_rate: float = 1.0
    augment: AugmentConfig | None = None
    patch_size: tuple[int, int, int] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.cache_rate <= 1.0:
            raise ConfigError(f"data.cache_rate must be in [0, 1], got {self.cache_rate}")


@dataclass(frozen=True)
class TrainConfig(TrainerConfig):
    """A diffusion-model training run: the model, its data and the trainer settings.

    Attributes:
        model: the model and diffusion settings stored in every checkpoint.
        data: training / validation data.
        init_from: checkpoint (e.g. an unconditional ``default`` model) whose matching weights initialise the
            model; layers whose shapes differ (the input convolution) keep their fresh initialisation.
    """

    model: WDMConfig = field(default_factory=WDMConfig)
    data: DataConfig = field(default_factory=DataConfig)
    init_from: str | None = None


def load_config(cls: type[C], source: str | Path | dict[str, Any], overrides: list[str] | None = None) -> C:
    """Build a config from a YAML file (or a mapping) and ``key.path=value`` overrides.

    Args:
        cls: the config class (e.g. :class:`TrainConfig`).
        source: a YAML file or an already parsed mapping.
        overrides: ``a.b=value`` strings; values are parsed as YAML scalars.

    Raises:
        FileNotFoundError: the YAML file does not exist.
        ConfigError: unknown key, wrong type or malformed override; the message names the key (and the file).
    """
    import yaml

    where = ""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
        where = f"{path}: "
    else:
        data = dict(source)
    _check_override_keys(cls, overrides or [])
    data = to_dict(data)
    for item in overrides or []:  # an override inside a section that is null (e.g. data.augment) creates it
        node = data
        for part in item.split("=", 1)[0].split(".")[:-1]:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
    try:
        return apply_overrides(cls, data, list(overrides or []))
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"{where}{exc}") from exc


def _check_override_keys(cls: type, overrides: list[str]) -> None:
    """Reject overrides naming keys that do not exist, before they are merged into the data."""
    import dataclasses
    import typing

    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.path=value")
        key = item.split("=", 1)[0]
        node: Any = cls
        for i, part in enumerate(key.split(".")):
            if not (dataclasses.is_dataclass(node) and isinstance(node, type)):
                raise ConfigError(f"override {item!r}: {'.'.join(key.split('.')[:i])} has no sub-keys")
            names = {f.name for f in dataclasses.fields(node)}
            if part not in names:
                raise ConfigError(f"override {item!r}: unknown key {part!r}; valid keys are {sorted(names)}")
            node = _dataclass_of(typing.get_type_hints(node)[part])


def _dataclass_of(tp: Any) -> Any:
    """The dataclass inside ``tp`` (``X`` or ``X | None``), else ``tp``."""
    import dataclasses
    import typing

    for arg in (tp, *typing.get_args(tp)):
        if dataclasses.is_dataclass(arg) and isinstance(arg, type):
            return arg
    return tp


def config_to_yaml(config: Any) -> str:
    """YAML text of a (nested) dataclass config, readable by :func:`load_config`."""
    import yaml

    return yaml.safe_dump(to_dict(config), sort_keys=False)


def config_from_dict(cls: type[C], data: dict[str, Any]) -> C:
    """Build ``cls`` from a plain mapping (as stored in a checkpoint)."""
    return from_dict(cls, data)


__all__ = [
    "CheckpointConfig",
    "DataConfig",
    "EMAConfig",
    "LoggingConfig",
    "LoopConfig",
    "OptimConfig",
    "TrainConfig",
    "TrainerConfig",
    "ValidationConfig",
    "config_differences",
    "config_from_dict",
    "config_to_yaml",
    "load_config",
]


def config_differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two configs (dataclasses or mappings), sorted."""
    da, db = to_dict(a), to_dict(b)
    if not (isinstance(da, dict) and isinstance(db, dict)):
        return [prefix.rstrip(".")] if da != db else []
    keys = []
    for k in sorted(set(da) | set(db)):
        if isinstance(da.get(k), dict) and isinstance(db.get(k), dict):
            keys += config_differences(da[k], db[k], f"{prefix}{k}.")
        elif da.get(k) != db.get(k):
            keys.append(f"{prefix}{k}")
    return keys
