"""The project's self-describing checkpoint: weights, the full :class:`~wdm_inpaint.config.WDMConfig`, metadata.

A checkpoint is a dictionary saved with :func:`torch.save` and read back with ``torch.load(weights_only=True)``,
which only rebuilds tensors and plain containers: loading never executes pickled code. Its keys:

* ``format`` (:data:`CHECKPOINT_FORMAT`) and ``format_version`` (:data:`CHECKPOINT_VERSION`);
* ``config``: ``to_dict(WDMConfig)``;
* ``state_dict``: the U-Net weights (CPU tensors);
* ``metadata``: ``package_version``, ``mode``, ``step`` and ``extra`` (a JSON-compatible dict);
* ``training_state`` (optional): optimizer and loop state for resuming training.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wdm_inpaint.config import ConfigError, WDMConfig, from_dict, to_dict
from wdm_inpaint.io.atomic import atomic_path
from wdm_inpaint.models.state_dict import compare_state_dict, expected_shapes
from wdm_inpaint.version import __version__

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "wdm-inpaint-checkpoint"
"""Value of the ``format`` key that marks a file as a checkpoint of this project."""

CHECKPOINT_VERSION = 1
"""Layout version of the checkpoint dictionary; readers refuse newer versions."""

_UPSTREAM_KEY_PREFIXES = ("input_blocks.", "middle_block.", "output_blocks.", "time_embed.")


class CheckpointError(ValueError):
    """A file is not a readable checkpoint of this project (the message names the file and what to do)."""


def _unwrap(model: nn.Module) -> nn.Module:
    """The plain module behind ``torch.compile`` and DistributedDataParallel wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model) if isinstance(model, nn.parallel.DistributedDataParallel) else model


def check_config(config: WDMConfig, where: str = "config") -> None:
    """Check that the U-Net's input channels match what the mode feeds it.

    Raises:
        ConfigError: naming both numbers.
    """
    from wdm_inpaint.diffusion.registry import build_mode

    try:
        mode = build_mode(config.mode)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    if mode.in_channels != config.unet.in_channels:
        raise ConfigError(
            f"{where}: mode {config.mode.name!r} feeds {mode.in_channels} input channels but unet.in_channels is "
            f"{config.unet.in_channels}"
        )


def _checked_weights(config: WDMConfig, state_dict: Mapping[str, Any], where: str) -> dict[str, torch.Tensor]:
    """Check ``state_dict`` against the architecture of ``config`` (keys, tensor types and shapes).

    Raises:
        CheckpointError: listing missing, unexpected, non-tensor and wrongly shaped entries.
    """
    from wdm_inpaint.models.unet import WDMUNet

    with torch.device("meta"):
        expected = expected_shapes(WDMUNet(config.unet))
    problems = compare_state_dict(state_dict, expected).problems()
    if problems:
        raise CheckpointError(f"{where}: the weights do not match the U-Net config: " + "; ".join(problems))
    return dict(state_dict)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module | Mapping[str, torch.Tensor],
    config: WDMConfig,
    *,
    step: int = 0,
    metadata: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (a reader never sees a partial file).

    Args:
        path: destination file (conventionally ``*.pt``).
        model: the U-Net (compiled / DDP wrappers are unwrapped) or its state dict.
        config: the full config; stored inside the checkpoint.
        step: training step the weights come from.
        metadata: free-form JSON-compatible information stored under ``metadata['extra']``.
        training_state: optional optimizer / loop state (tensors and plain containers only).

    Returns:
        The path written.

    Raises:
        ConfigError: if the config is inconsistent or ``metadata`` is not JSON-compatible.
        CheckpointError: if the weights do not match the config's architecture.
    """
    path = Path(path)
    check_config(config, str(path))
    extra = dict(metadata or {})
    try:
        json.dumps(extra)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"checkpoint metadata for {path} must be JSON-compatible: {exc}") from exc
    weights = _unwrap(model).state_dict() if isinstance(model, nn.Module) else model
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "config": to_dict(config),
        "state_dict": {k: v.detach().cpu() for k, v in _checked_weights(config, weights, str(path)).items()},
        "metadata": {"package_version": __version__, "mode": config.mode.name, "step": int(step), "extra": extra},
    }
    if training_state is not None:
        payload["training_state"] = training_state
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    logger.debug("saved checkpoint %s (mode %s, step %d)", path, config.mode.name, step)
    return path


def export_checkpoint(
    source: str | os.PathLike[str], destination: str | os.PathLike[str], metadata: dict[str, Any] | None = None
) -> Path:
    """Copy a (training) checkpoint without its training state, for distribution.

    The weights (the EMA weights when the run kept an EMA), the config and the step are kept; ``metadata`` is
    merged into the stored ``metadata['extra']``.

    Raises:
        CheckpointError: if ``source`` is not a checkpoint of this project.
    """
    raw = read_checkpoint(source)
    config = raw["config"]
    extra = {**raw["metadata"].get("extra", {}), **(metadata or {})}
    return save_checkpoint(destination, raw["state_dict"], config, step=int(raw["metadata"].get("step", 0)),
                           metadata=extra)


def _looks_like_upstream(obj: Any) -> bool:
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
        keys = [k for k in obj if isinstance(k, str)]
        return bool(keys) and any(k.removeprefix("module.").startswith(_UPSTREAM_KEY_PREFIXES) for k in keys)
    return False


def read_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and validate a checkpoint without building the model.

    Args:
        path: checkpoint file.
        map_location: where tensors are loaded.

    Returns:
        The checkpoint dictionary; ``config`` is already a :class:`WDMConfig`.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        CheckpointError: if the file is not a checkpoint of this project (unreadable, unsafe pickle, an upstream
            state dict, a newer format) or its config or weights are invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        raw = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(
            f"{path} is not a wdm-inpaint checkpoint: it cannot be read as a safe PyTorch file ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}). Loading never runs pickled code; files holding "
            "arbitrary Python objects are refused."
        ) from exc
    if not isinstance(raw, Mapping) or raw.get("format") != CHECKPOINT_FORMAT:
        if _looks_like_upstream(raw):
            raise CheckpointError(
                f"{path} looks like an upstream WDM / Faking_it state dict, not a wdm-inpaint checkpoint: convert it "
                f"with `wdm-inpaint convert-checkpoint {path} OUTPUT.pt`"
            )
        raise CheckpointError(
            f"{path} is not a wdm-inpaint checkpoint (no format marker {CHECKPOINT_FORMAT!r}; found "
            f"{type(raw).__name__}{' with keys ' + str(sorted(map(str, raw))[:8]) if isinstance(raw, Mapping) else ''})"
        )
    version = raw.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}; this wdm-inpaint ({__version__}) reads versions "
            f"<= {CHECKPOINT_VERSION}: upgrade the package"
        )
    for key in ("config", "state_dict", "metadata"):
        if not isinstance(raw.get(key), Mapping):
            raise CheckpointError(f"{path} is a damaged checkpoint: {key!r} is missing or not a mapping")
    try:
        config = from_dict(WDMConfig, dict(raw["config"]), where=f"{path}: config")
        check_config(config, f"{path}: config")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc
    checkpoint = dict(raw)
    checkpoint["config"] = config
    checkpoint["state_dict"] = _checked_weights(config, raw["state_dict"], str(path))
    return checkpoint


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, WDMConfig]:
    """Rebuild the model stored in a checkpoint; no other flags needed.

    Args:
        path: checkpoint file written by :func:`save_checkpoint` (or ``convert-checkpoint``).
        map_location: device of the returned model.

    Returns:
        ``(model, config)``: a float32 :class:`~wdm_inpaint.models.unet.WDMUNet` in eval mode, and its config.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        CheckpointError: if the file is not a valid checkpoint (see :func:`read_checkpoint`).
    """
    from wdm_inpaint.models.unet import WDMUNet

    checkpoint = read_checkpoint(path, map_location="cpu")
    config: WDMConfig = checkpoint["config"]
    model = WDMUNet(config.unet)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()})
    model.eval()
    return model.to(map_location), config


__all__ = [
    "export_checkpoint",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "check_config",
    "load_checkpoint",
    "read_checkpoint",
    "save_checkpoint",
]
