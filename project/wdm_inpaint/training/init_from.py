"""Initialise a model from another checkpoint whose architecture differs in a few layers.

The usual case: a conditional ``akh`` model (16 input channels) started from an unconditional ``default``
checkpoint (8 input channels). Every tensor whose name and shape match is copied; a layer whose weight shape
differs (the input convolution) keeps its fresh initialisation as a whole, bias included, and so do layers the
source lacks. Each group of keys is logged.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import torch
from torch import nn

from wdm_inpaint.checkpoint import read_checkpoint

logger = logging.getLogger(__name__)


@dataclass
class InitReport:
    """Which keys of the target model were loaded, re-initialised (shape mismatch), absent from the source, or
    present only in the source."""

    loaded: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def _layer(key: str) -> str:
    return key.rsplit(".", 1)[0] if "." in key else ""


def transfer_weights(model: nn.Module, source: dict[str, torch.Tensor]) -> InitReport:
    """Copy matching tensors of ``source`` into ``model`` (in place).

    A layer (key prefix before the last dot) with any shape-mismatched tensor is left entirely as initialised.

    Raises:
        ValueError: nothing at all could be copied (the checkpoint is of an unrelated architecture).
    """
    target = model.state_dict()
    mismatched_layers = {
        _layer(k) for k, v in source.items() if k in target and tuple(v.shape) != tuple(target[k].shape)
    }
    report = InitReport()
    new_state = {}
    for k in target:
        if k not in source:
            report.missing.append(k)
        elif _layer(k) in mismatched_layers:
            report.reinitialised.append(k)
        else:
            new_state[k] = source[k].to(dtype=target[k].dtype)
            report.loaded.append(k)
    report.unexpected = sorted(set(source) - set(target))
    if not report.loaded:
        raise ValueError("no weight of the source checkpoint matches the model (different architecture?)")
    model.load_state_dict(new_state, strict=False)
    return report


def init_from_checkpoint(model: nn.Module, path: str | os.PathLike[str]) -> InitReport:
    """Initialise ``model`` from the weights of a wdm-inpaint checkpoint (see :func:`transfer_weights`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        wdm_inpaint.checkpoint.CheckpointError: ``path`` is not a checkpoint of this project.
        ValueError: no weight matches.
    """
    ckpt = read_checkpoint(path)
    report = transfer_weights(model, ckpt["state_dict"])
    logger.info(
        "initialised from %s (mode %s): %d tensors loaded, %d re-initialised, %d not in the checkpoint, "
        "%d unused", path, ckpt["config"].mode.name, len(report.loaded), len(report.reinitialised),
        len(report.missing), len(report.unexpected),
    )
    if report.reinitialised:
        logger.info("re-initialised (shape differs): %s", ", ".join(report.reinitialised))
    if report.missing:
        logger.info("fresh (absent from the checkpoint): %s", ", ".join(report.missing))
    if report.unexpected:
        logger.info("unused checkpoint tensors: %s", ", ".join(report.unexpected))
    logger.debug("loaded: %s", ", ".join(report.loaded))
    return report


__all__ = ["InitReport", "init_from_checkpoint", "transfer_weights"]
