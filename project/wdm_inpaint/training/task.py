"""The interface between the generic :class:`~wdm_inpaint.training.trainer.Trainer` and what it trains.

A *task* owns the networks, turns a batch into losses and decides how its weights are stored. The trainer owns
everything else: device placement, DDP wrapping, the data order, autocast, the optimiser loop (automatic
style), EMA, LR schedules, checkpoints, RNG states, logging, validation and resume.

Two optimisation styles (see :attr:`TrainingTask.manual_optimization`):

* **automatic** (default, one optimiser): :meth:`TrainingTask.configure_optimizers` returns exactly one entry;
  :meth:`TrainingTask.training_step` only computes losses and returns ``{"loss": total, **terms}``. The trainer
  runs ``training_step`` under autocast, then ``zero_grad``, ``loss.backward()``, gradient clipping
  (``optim.grad_clip_norm``), ``optimizer.step()`` and ``scheduler.step()``.
* **manual** (``manual_optimization = True``, e.g. a GAN with generator and discriminator optimisers):
  ``configure_optimizers`` returns several named :class:`OptimizerSetup`; the trainer stores them in
  ``task.optimizers`` / ``task.schedulers`` (dicts by name) before the first step. ``training_step`` does its own
  ``zero_grad`` / ``backward`` / :meth:`TrainingTask.clip_gradients` / ``step`` and uses ``with self.autocast():``
  around its forward passes. After ``training_step`` returns, the trainer steps every scheduler once (set
  :attr:`TrainingTask.steps_schedulers` to ``True`` to step them yourself) and updates the EMA. The returned dict
  must still contain ``"loss"`` (shown on the progress bar); every entry is logged.

In both styles the trainer saves and restores every optimiser and scheduler state, the EMA, the step, the RNG
states and the data position. Tasks keep any other state they need across a resume in :meth:`state_dict`.

Subclasses call ``super().__init__()``. Under DDP the attributes named by :meth:`TrainingTask.modules` are
replaced by DDP wrappers before the first step: forward passes that only one process makes (``log_images`` on
rank 0, ``validation_step`` on a shard of the data) must use :func:`unwrap` of them, or DDP's collective calls hang.

Randomness: ``training_step`` receives a ``torch.Generator`` on the task's device, freshly seeded from
``(loop.seed, step, rank)`` at every step, so a resumed run draws exactly the same numbers. When the data comes
from a map-style dataset, every sample dict also carries ``batch["sample_seed"]`` (``LongTensor (B,)``), a seed
derived from ``(loop.seed, epoch, dataset index)``: drawing per-sample randomness from it makes a step's result
independent of how the global batch is split across DDP processes.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from wdm_inpaint.training.config import OptimConfig
from wdm_inpaint.training.lr_schedule import build_lr_scheduler

SAMPLE_SEED_KEY = "sample_seed"
"""Batch key of the per-sample seeds the trainer adds to every sample of a map-style dataset."""


@dataclass
class OptimizerSetup:
    """One named optimiser and its (optional) learning-rate scheduler."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None


def build_adamw(parameters: Any, config: OptimConfig, max_steps: int) -> OptimizerSetup:
    """AdamW over ``parameters`` with the warm-up / cosine schedule of ``config``."""
    optimizer = torch.optim.AdamW(
        parameters, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay
    )
    return OptimizerSetup(optimizer, build_lr_scheduler(optimizer, config, max_steps))


class TrainingTask(ABC):
    """Something the generic trainer can train. Subclass and implement :meth:`modules` and :meth:`training_step`."""

    manual_optimization: ClassVar[bool] = False
    """``True``: ``training_step`` does backward and optimiser steps itself (several optimisers allowed)."""

    steps_schedulers: ClassVar[bool] = False
    """Manual style only: ``True`` when ``training_step`` steps the LR schedulers itself."""

    def __init__(self) -> None:
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.optim_config: OptimConfig = OptimConfig()
        self.device: torch.device = torch.device("cpu")
        self.autocast_dtype: torch.dtype | None = None
        self.global_step: int = 0

    # ------------------------------------------------------------------ to implement

    @abstractmethod
    def modules(self) -> dict[str, nn.Module]:
        """The trainable networks, keyed by the attribute name under which the task holds them.

        The trainer moves them to the device, wraps them for DDP (see :meth:`wrap_modules`), keeps their EMA and
        checkpoints them. Call it again after wrapping and you get the wrapped modules.
        """

    @abstractmethod
    def training_step(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One step on ``batch`` (already on :attr:`device`).

        Returns:
            Scalar tensors by name; ``"loss"`` is required. Automatic style: ``"loss"`` is back-propagated by the
            trainer. Manual style: everything has been stepped already; the values are only logged.
        """

    # ------------------------------------------------------------------ optional hooks

    def configure_optimizers(self, config: OptimConfig, max_steps: int) -> dict[str, OptimizerSetup]:
        """Named optimisers (one for the automatic style). Default: one AdamW over all :meth:`modules`."""
        params = [p for m in self.modules().values() for p in m.parameters() if p.requires_grad]
        return {"main": build_adamw(params, config, max_steps)}

    def ema_module_names(self) -> list[str]:
        """Names (keys of :meth:`modules`) whose weights get an EMA copy when EMA is enabled. Default: all."""
        return list(self.modules())

    def log_images(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Image panels to log: ``(H, W)`` or ``(3, H, W)`` tensors in [0, 1], keyed by tag. Default: none."""
        return {}

    def validation_step(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, float]:
        """Metrics of one validation batch (averaged over batches by the trainer). Default: not supported."""
        raise NotImplementedError(f"{type(self).__name__} does not implement validation_step")

    def state_dict(self) -> dict[str, Any]:
        """Extra task state to restore on resume (not the modules, optimisers or EMA). Default: none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`. Default: nothing to restore."""
        del state

    def write_checkpoint(
        self,
        path: Path,
        module_states: dict[str, dict[str, torch.Tensor]],
        ema_states: dict[str, dict[str, torch.Tensor]] | None,
        training_state: dict[str, Any],
    ) -> None:
        """Write one checkpoint file to ``path`` (a temporary name; the trainer renames it atomically).

        Default: ``torch.save({"modules", "ema", "training_state"})``. Override to write a format that inference
        code loads directly (the WDM task does).
        """
        torch.save({"modules": module_states, "ema": ema_states, "training_state": training_state}, path)

    def read_checkpoint(self, path: Path) -> tuple[dict[str, dict], dict[str, dict] | None, dict[str, Any]]:
        """Read what :meth:`write_checkpoint` wrote: ``(module_states, ema_states, training_state)``."""
        payload = torch.load(path, map_location="cpu", weights_only=True)
        return payload["modules"], payload.get("ema"), payload["training_state"]

    def wrap_modules(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Replace every module of :meth:`modules` by ``wrap(module)`` (used for DDP).

        Default: ``setattr(self, name, wrap(getattr(self, name)))`` for each name; override when the modules are
        not plain attributes.
        """
        for name in self.modules():
            setattr(self, name, wrap(getattr(self, name)))

    # ------------------------------------------------------------------ helpers for tasks

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context for forward passes (bf16 when ``loop.precision = bf16``; a no-op otherwise)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def clip_gradients(self, optimizer_name: str) -> torch.Tensor | None:
        """Clip the gradients of one optimiser's parameters to ``optim.grad_clip_norm`` (manual style).

        Returns:
            The total gradient norm before clipping, or ``None`` when clipping is disabled.
        """
        if self.optim_config.grad_clip_norm is None:
            return None
        params = [p for g in self.optimizers[optimizer_name].param_groups for p in g["params"]]
        return torch.nn.utils.clip_grad_norm_(params, self.optim_config.grad_clip_norm)

    def iter_parameters(self) -> Iterator[nn.Parameter]:
        """All parameters of all :meth:`modules`."""
        for module in self.modules().values():
            yield from module.parameters()


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP (or ``torch.compile``) wrapper, else ``module`` itself."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod  # type: ignore[assignment]
        else:
            return module


__all__ = ["SAMPLE_SEED_KEY", "OptimizerSetup", "TrainingTask", "build_adamw", "unwrap"]
