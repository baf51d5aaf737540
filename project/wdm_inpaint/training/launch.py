"""Start or resume a training run: resolve the config and run folder, then drive a task with the trainer.

Shared by every training command (``wdm-inpaint train``, the label GAN's command)::

    config, run_dir, resume_ckpt = resolve_run(MyConfig, config_file, overrides, resume)
    summary = launch(config, run_dir, build_task, build_data, resume_ckpt)

Rules:

* a new run lives in ``<output_dir>/<name>/``; starting a new run where checkpoints already exist is refused
  (resume it, or pick another ``name=...``);
* ``--resume RUN_DIR`` continues from the newest ``checkpoints/step_*.pt``; ``--resume FILE`` from that file. The
  config stored in the checkpoint is used, with the command-line overrides applied (e.g. ``loop.max_steps=...``);
  a ``-c`` file given as well must agree with it, or the differing keys are reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from wdm_inpaint.config import ConfigError
from wdm_inpaint.training.checkpointing import list_checkpoints, resolve_resume
from wdm_inpaint.training.config import TrainerConfig, config_differences, load_config
from wdm_inpaint.training.distributed import cleanup_distributed, init_distributed
from wdm_inpaint.training.task import TrainingTask
from wdm_inpaint.training.trainer import Trainer, TrainSummary

logger = logging.getLogger(__name__)

C = TypeVar("C", bound=TrainerConfig)

BuildTask = Callable[[Any, torch.device], TrainingTask]
"""``build_task(config, device) -> task``; called after the global RNGs are seeded with ``loop.seed``."""

BuildData = Callable[[Any], tuple[Any, Any]]
"""``build_data(config) -> (train_data, val_data_or_None)``."""


def stored_config(checkpoint: Path) -> dict[str, Any]:
    """The resolved run config stored in a checkpoint's ``training_state``.

    Raises:
        ValueError: the file has no training state (not a resumable training checkpoint).
    """
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    state = payload.get("training_state") if isinstance(payload, dict) else None
    if not isinstance(state, dict) or "config" not in state:
        raise ValueError(f"{checkpoint} holds no training state with a config; it cannot be resumed")
    return state["config"]


def resolve_run(
    cls: type[C], config_file: str | Path | None, overrides: list[str], resume: str | Path | None
) -> tuple[C, Path, Path | None]:
    """Resolve the config, run folder and checkpoint to resume from.

    Returns:
        ``(config, run_dir, checkpoint or None)``.

    Raises:
        ConfigError: bad config / overrides, or ``-c`` disagreeing with the resumed run.
        FileNotFoundError: the config file or the resume target does not exist.
        FileExistsError: a new run would overwrite a run folder that already has checkpoints.
    """
    if resume is None:
        if config_file is None:
            raise ConfigError("give a config file (-c CONFIG.yaml) or a run to resume (--resume RUN_DIR)")
        config = load_config(cls, config_file, overrides)
        run_dir = config.run_dir
        if list_checkpoints(run_dir):
            raise FileExistsError(
                f"run folder {run_dir} already has checkpoints: continue it with --resume {run_dir}, or start a new "
                f"run with another name (override name=...)"
            )
        return config, run_dir, None
    run_dir, checkpoint = resolve_resume(resume)
    config = load_config(cls, stored_config(checkpoint), overrides)
    if config_file is not None:
        given = load_config(cls, config_file, overrides)
        changed = [k for k in config_differences(given, config) if k not in {"name", "output_dir"}]
        if changed:
            raise ConfigError(
                f"{config_file} differs from the config of the run being resumed ({checkpoint}) at {changed}; "
                "drop -c to use the run's config, or pass the intended changes as key=value overrides"
            )
    return config, run_dir, checkpoint


def seed_everything(seed: int) -> None:
    """Seed the global torch, numpy and python RNGs (for model initialisation)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def launch(
    config: TrainerConfig,
    run_dir: Path,
    build_task: BuildTask,
    build_data: BuildData,
    resume_checkpoint: Path | None = None,
    collate_fn: Any = None,
) -> TrainSummary:
    """Join DDP (from ``torchrun``'s environment), build task and data, restore, train, leave DDP.

    Returns:
        What the trainer did.
    """
    dist_info, device = init_distributed(config.loop.device)
    try:
        seed_everything(config.loop.seed)
        task = build_task(config, device)
        train_data, val_data = build_data(config)
        trainer = Trainer(
            task, config, train_data, val_data=val_data, run_dir=run_dir, collate_fn=collate_fn,
            dist_info=dist_info, device=device,
        )
        if resume_checkpoint is not None:
            trainer.restore(resume_checkpoint)
        return trainer.fit()
    finally:
        cleanup_distributed()


__all__ = ["BuildData", "BuildTask", "launch", "resolve_run", "seed_everything", "stored_config"]
