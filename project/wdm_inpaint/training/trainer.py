"""Generic, resumable training loop that drives a :class:`~wdm_inpaint.training.task.TrainingTask`.

Interface (for any task: the diffusion model here, the label GAN elsewhere)::

    task = MyTask(...)                                    # subclass of TrainingTask
    trainer = Trainer(task, config, train_data,           # config: TrainerConfig (or a subclass of it)
                      val_data=None, run_dir=Path("runs/x"), collate_fn=None,
                      dist_info=None, device=None)
    trainer.restore(checkpoint_path)                      # optional: resume (exactly) from a checkpoint
    summary = trainer.fit()                               # runs to config.loop.max_steps

The task (see :mod:`wdm_inpaint.training.task` for the full contract):

* ``modules() -> dict[str, nn.Module]``: trainable networks by attribute name (moved to the device, DDP-wrapped
  through ``wrap_modules``, EMA'd, checkpointed);
* ``training_step(batch, generator) -> dict[str, Tensor]`` with key ``"loss"``;
* optional: ``configure_optimizers(optim_config, max_steps) -> {name: OptimizerSetup}`` (default one AdamW with
  the warm-up / cosine schedule), ``manual_optimization = True`` to do backward / steps itself (several
  optimisers, e.g. a GAN), ``log_images(batch)``, ``validation_step(batch, generator)``, ``state_dict`` /
  ``load_state_dict`` for extra state, ``write_checkpoint`` / ``read_checkpoint`` for the file format.

``train_data`` is a map-style ``torch.utils.data.Dataset`` of sample dicts (batched by a ``DataLoader`` with a
seeded, resumable, DDP-sharded order; see :mod:`wdm_inpaint.training.data_order`) or any re-iterable of batch
dicts (tests feed lists of synthetic tensors). Each step:

1. next batch -> device; a ``torch.Generator`` seeded from ``(loop.seed, step, rank)``;
2. automatic style: ``training_step`` under autocast, backward, clip, optimiser and scheduler step;
   manual style: ``training_step`` does it, then the trainer steps the schedulers;
3. EMA update; metrics (averaged over processes) to ``metrics.jsonl``, TensorBoard and the progress bar;
4. every ``logging.image_every``: ``task.log_images``; every ``validation.every``: validation with the EMA
   weights (if any) and ``checkpoints/best.pt`` when the metric improves; every ``checkpoint.every`` and at the
   end: an atomic checkpoint, keeping the newest ``checkpoint.keep_last``.

Run-folder layout: ``config.yaml`` (resolved config), ``metrics.jsonl``, ``tensorboard/``,
``checkpoints/step_XXXXXXXX.pt`` and ``checkpoints/best.pt``. Only rank 0 writes. The library never changes
global torch settings; the command line turns on deterministic kernels (``loop.deterministic``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wdm_inpaint.config import to_dict
from wdm_inpaint.io.atomic import atomic_write_text
from wdm_inpaint.training.checkpointing import (
    BEST_NAME,
    CHECKPOINT_DIR,
    capture_rng_state,
    checkpoint_path,
    prune_checkpoints,
    remove_stale_temporaries,
    restore_rng_state,
    write_atomically,
)
from wdm_inpaint.seeding import derive_seed
from wdm_inpaint.training.config import TrainerConfig, config_to_yaml
from wdm_inpaint.training.data_order import BatchStream
from wdm_inpaint.training.distributed import DistInfo, barrier, mean_over_processes, move_to_device, resolve_device
from wdm_inpaint.training.ema import EMA, ema_weights
from wdm_inpaint.training.logging_tb import RunLogger, gpu_memory
from wdm_inpaint.training.task import TrainingTask, unwrap

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"
"""Resolved config of a run, in its run folder."""
TRAINING_STATE_VERSION = 1
"""Version of the ``training_state`` layout inside checkpoints."""


@dataclass
class TrainSummary:
    """What :meth:`Trainer.fit` did."""

    start_step: int
    final_step: int
    last_terms: dict[str, float] = field(default_factory=dict)
    last_checkpoint: Path | None = None
    best_metric: float | None = None


class Trainer:
    """Drives a task for ``config.loop.max_steps`` optimiser steps. See the module docstring.

    Args:
        task: what to train.
        config: trainer settings (a :class:`TrainerConfig` or subclass; the whole object is saved as the run's
            resolved config).
        train_data: map-style dataset of sample dicts, or an iterable of batch dicts.
        val_data: the same for validation (``None``: no validation).
        run_dir: run folder (``None``: ``config.run_dir``).
        collate_fn: batches samples of a map-style dataset (``None``: torch's default collate).
        dist_info: this process' place in a DDP job (``None``: single process).
        device: the device (``None``: from ``config.loop.device`` and the local rank).

    Raises:
        ValueError: an automatic-style task returned several optimisers.
    """

    def __init__(
        self,
        task: TrainingTask,
        config: TrainerConfig,
        train_data: torch.utils.data.Dataset | Iterable[dict[str, Any]],
        *,
        val_data: torch.utils.data.Dataset | Iterable[dict[str, Any]] | None = None,
        run_dir: Path | None = None,
        collate_fn: Any = None,
        dist_info: DistInfo | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.task = task
        self.config = config
        self.dist = dist_info or DistInfo()
        self.device = device or resolve_device(config.loop.device, self.dist.local_rank)
        self.run_dir = Path(run_dir) if run_dir is not None else config.run_dir
        self.val_data = val_data
        self.collate_fn = collate_fn
        self.step = 0
        self.best_metric: float | None = None

        task.device = self.device
        task.optim_config = config.optim
        task.autocast_dtype = torch.bfloat16 if config.loop.precision == "bf16" else None
        self.modules: dict[str, nn.Module] = {k: m.to(self.device) for k, m in task.modules().items()}
        setups = task.configure_optimizers(config.optim, config.loop.max_steps)
        if not task.manual_optimization and len(setups) != 1:
            raise ValueError(
                f"{type(task).__name__} returned {len(setups)} optimisers; the automatic style needs exactly one "
                "(set manual_optimization = True to step several yourself)"
            )
        task.optimizers = {k: s.optimizer for k, s in setups.items()}
        task.schedulers = {k: s.scheduler for k, s in setups.items() if s.scheduler is not None}
        self.ema: dict[str, EMA] = {}
        if config.ema.enabled:
            self.ema = {k: EMA(self.modules[k], config.ema) for k in task.ema_module_names()}
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            task.wrap_modules(lambda m: nn.parallel.DistributedDataParallel(m, device_ids=ids))
        self.stream = BatchStream(
            train_data,
            config.loop.batch_size,
            config.loop.seed,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            num_workers=config.loop.num_workers,
            collate_fn=collate_fn,
        )

    # ------------------------------------------------------------------ checkpoints

    def _rng_states(self) -> list[dict[str, Any]]:
        """Global RNG states of every process (collective: every process must call it)."""
        state = capture_rng_state()
        if not self.dist.enabled:
            return [state]
        gathered: list[Any] = [None] * self.dist.world_size
        torch.distributed.all_gather_object(gathered, state)
        return gathered

    def training_state(self, rng_states: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Everything besides the module weights needed to continue exactly where the run is now.

        Args:
            rng_states: global RNG states of every process (default: this process' only).
        """
        rng_states = rng_states or [capture_rng_state()]
        return {
            "version": TRAINING_STATE_VERSION,
            "step": self.step,
            "optimizers": {k: o.state_dict() for k, o in self.task.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.task.schedulers.items()},
            "rng": rng_states[0],
            "rng_per_rank": rng_states,
            "data": self.stream.state_dict(),
            "task": self.task.state_dict(),
            "best_metric": self.best_metric,
            "world_size": self.dist.world_size,
            "config": to_dict(self.config),
        }

    def save_checkpoint(self, path: Path | None = None) -> Path:
        """Write a checkpoint of the current step atomically (rank 0 only; others just wait)."""
        path = path or checkpoint_path(self.run_dir, self.step)
        rng_states = self._rng_states()
        if self.dist.is_main:
            module_states = {k: unwrap(m).state_dict() for k, m in self.modules.items()}
            ema_states = {k: e.state_dict() for k, e in self.ema.items()} or None
            state = self.training_state(rng_states)
            write_atomically(path, lambda tmp: self.task.write_checkpoint(tmp, module_states, ema_states, state))
            logger.debug("wrote checkpoint %s", path)
        barrier(self.dist)
        return path

    def restore(self, path: Path) -> None:
        """Load a checkpoint written by :meth:`save_checkpoint` and continue from its step.

        Raises:
            ValueError: the checkpoint has no training state, or does not fit this run.
        """
        module_states, ema_states, state = self.task.read_checkpoint(Path(path))
        if not state or "optimizers" not in state:
            raise ValueError(f"{path} holds no training state; it cannot be resumed (use it with init_from instead)")
        if state.get("world_size", 1) != self.dist.world_size:
            logger.warning(
                "%s was written by %d processes, resuming with %d: the data order continues by position but the "
                "per-process split differs", path, state.get("world_size", 1), self.dist.world_size,
            )
        for k, m in self.modules.items():
            if k not in module_states:
                raise ValueError(f"{path} has no weights for module {k!r} (has {sorted(module_states)})")
            unwrap(m).load_state_dict(module_states[k])
        for k, e in self.ema.items():
            if not ema_states or k not in ema_states:
                logger.warning("%s has no EMA weights for %r; the EMA restarts from the current weights", path, k)
                e.load_state_dict(unwrap(self.modules[k]).state_dict())
            else:
                e.load_state_dict(ema_states[k])
        if set(state["optimizers"]) != set(self.task.optimizers):
            raise ValueError(
                f"{path} has optimisers {sorted(state['optimizers'])}, the task has {sorted(self.task.optimizers)}"
            )
        for k, o in self.task.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.task.schedulers.items():
            if k in state["schedulers"]:
                s.load_state_dict(state["schedulers"][k])
        self.stream.load_state_dict(state["data"])
        self.task.load_state_dict(state.get("task", {}))
        per_rank = state.get("rng_per_rank") or []
        restore_rng_state(per_rank[self.dist.rank] if len(per_rank) == self.dist.world_size else state["rng"])
        self.step = int(state["step"])
        self.task.global_step = self.step
        self.best_metric = state.get("best_metric")
        logger.info("resumed from %s at step %d", path, self.step)

    # ------------------------------------------------------------------ steps

    def _step_generator(self) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(derive_seed(self.config.loop.seed, "step", self.step, self.dist.rank))
        return g

    def _train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        for m in self.task.modules().values():
            m.train()
        generator = self._step_generator()
        if self.task.manual_optimization:
            out = self.task.training_step(batch, generator)
            if not self.task.steps_schedulers:
                for s in self.task.schedulers.values():
                    s.step()
            return out
        (name, optimizer), = self.task.optimizers.items()
        optimizer.zero_grad(set_to_none=True)
        with self.task.autocast():
            out = self.task.training_step(batch, generator)
        loss = out["loss"]
        if not torch.isfinite(loss.detach()):
            raise FloatingPointError(
                f"non-finite loss at step {self.step + 1}: "
                + ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in out.items())
                + "; lower optim.lr or enable optim.grad_clip_norm"
            )
        loss.backward()
        if self.config.optim.grad_clip_norm is not None:
            out = {**out, "grad_norm": self.task.clip_gradients(name)}
        optimizer.step()
        if name in self.task.schedulers:
            self.task.schedulers[name].step()
        return out

    def _ema_update(self) -> None:
        for k, e in self.ema.items():
            e.update(unwrap(self.modules[k]), self.step)

    # ------------------------------------------------------------------ validation

    def validate(self) -> dict[str, float]:
        """Mean of ``task.validation_step`` over the validation data (EMA weights when enabled), all processes."""
        if self.val_data is None:
            return {}
        for m in self.task.modules().values():
            m.eval()
        sums: dict[str, float] = {}
        count = 0
        limit = self.config.validation.max_batches
        with ema_weights(self.ema, self.modules), torch.no_grad(), self.task.autocast():
            for i, batch in enumerate(self._val_batches()):
                if limit is not None and i >= limit:
                    break
                if i % self.dist.world_size != self.dist.rank:
                    continue
                g = torch.Generator(device=self.device)
                g.manual_seed(derive_seed(self.config.loop.seed, "validation", i))
                metrics = self.task.validation_step(move_to_device(batch, self.device), g)
                for k, v in metrics.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                count += 1
        totals = mean_over_processes({**sums, "_count": float(count)}, self.dist, self.device)
        n = totals.pop("_count") * self.dist.world_size
        return {k: v * self.dist.world_size / n for k, v in totals.items()} if n else {}

    def _val_batches(self) -> Iterable[dict[str, Any]]:
        data = self.val_data
        if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
            return torch.utils.data.DataLoader(data, batch_size=1, shuffle=False, collate_fn=self.collate_fn)
        return data  # type: ignore[return-value]

    def _maybe_validate(self, run_log: RunLogger) -> None:
        every = self.config.validation.every
        if not every or self.val_data is None or self.step % every:
            return
        metrics = self.validate()
        if not metrics:
            return
        run_log.log_validation(self.step, metrics)
        key = self.config.validation.metric
        if key not in metrics:
            raise ValueError(f"validation.metric={key!r} is not among the validation metrics {sorted(metrics)}")
        value = metrics[key]
        better = self.best_metric is None or (
            value > self.best_metric if self.config.validation.higher_is_better else value < self.best_metric
        )
        if better:
            self.best_metric = value
            self.save_checkpoint(self.run_dir / CHECKPOINT_DIR / BEST_NAME)
            logger.info("step %d: new best %s=%.5g", self.step, key, value)

    # ------------------------------------------------------------------ loop

    def _prepare_run_dir(self) -> None:
        if not self.dist.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.run_dir)
        atomic_write_text(self.run_dir / CONFIG_FILE, config_to_yaml(self.config))

    def fit(self, until_step: int | None = None) -> TrainSummary:
        """Train from the current step until ``until_step`` (default ``loop.max_steps``), checkpointing along the way.

        Args:
            until_step: stop (with a checkpoint) after this many steps in total; LR schedules still run to
                ``loop.max_steps``, so a later :meth:`restore` + :meth:`fit` continues exactly.
        """
        loop = self.config.loop
        start = self.step
        stop = loop.max_steps if until_step is None else min(until_step, loop.max_steps)
        self._prepare_run_dir()
        summary = TrainSummary(start_step=start, final_step=start, best_metric=self.best_metric)
        if start >= stop:
            logger.info("nothing to do: step %d >= %d", start, stop)
            return summary
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        run_log = RunLogger(self.run_dir if self.dist.is_main else None, self.config.logging, start, loop.max_steps)
        global_batch = loop.batch_size * self.dist.world_size
        try:
            while self.step < stop:
                t0 = time.perf_counter()
                batch = move_to_device(next(self.stream), self.device)
                out = self._train_step(batch)
                self.step += 1
                self.task.global_step = self.step
                self._ema_update()
                terms = mean_over_processes(
                    {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in out.items()},
                    self.dist,
                    self.device,
                )
                elapsed = time.perf_counter() - t0
                lrs = {k: o.param_groups[0]["lr"] for k, o in self.task.optimizers.items()}
                perf = {"step_time_s": elapsed, "samples_per_s": global_batch / elapsed, **gpu_memory(self.device)}
                run_log.log_step(self.step, terms, lrs, perf)
                summary.last_terms = terms
                if run_log.wants_images(self.step):
                    with torch.no_grad():
                        run_log.log_images(self.step, self.task.log_images(batch))
                self._maybe_validate(run_log)
                if self.step % self.config.checkpoint.every == 0 or self.step == stop:
                    summary.last_checkpoint = self.save_checkpoint()
                    if self.dist.is_main:
                        prune_checkpoints(self.run_dir, self.config.checkpoint.keep_last)
                    run_log.flush()
        finally:
            run_log.close()
        summary.final_step = self.step
        summary.best_metric = self.best_metric
        return summary


__all__ = ["CONFIG_FILE", "TrainSummary", "Trainer"]
