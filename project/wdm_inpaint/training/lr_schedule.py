"""Learning-rate schedules: linear warm-up, then constant or cosine decay."""

from __future__ import annotations

import math

import torch

from wdm_inpaint.training.config import OptimConfig


def lr_factor(step: int, config: OptimConfig, max_steps: int) -> float:
    """Multiplier of the peak learning rate for the update that follows ``step`` completed updates.

    1. Warm-up (``step < warmup_steps``): ``(step + 1) / warmup_steps``, so the first update already moves.
    2. ``constant``: 1.
    3. ``cosine``: ``r + (1 - r) * (1 + cos(pi * p)) / 2`` with ``r = min_lr_ratio`` and
       ``p = (step - warmup_steps) / (max_steps - warmup_steps)`` clipped to [0, 1].
    """
    warmup = config.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    if config.lr_schedule == "constant":
        return 1.0
    span = max(1, max_steps - warmup)
    progress = min(1.0, max(0.0, (step - warmup) / span))
    r = config.min_lr_ratio
    return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer, config: OptimConfig, max_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying :func:`lr_factor`; step it once after every optimiser step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config, max_steps))


__all__ = ["build_lr_scheduler", "lr_factor"]
