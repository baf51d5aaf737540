"""The skeleton both training commands share (``train``, ``train-label-gan``).

Arguments ``-c/--config``, ``--resume`` and ``KEY=VALUE`` overrides; resolve the run
(:func:`~wdm_inpaint.training.launch.resolve_run`), turn on deterministic kernels if asked, optionally tee the log
into the run folder, :func:`~wdm_inpaint.training.launch.launch` the task, and print where the run went.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wdm_inpaint.console import LOG_FORMAT

LOG_FILE = "train.log"
"""Log file of a run, in its run folder."""

DETERMINISTIC_CUBLAS_WORKSPACE = ":4096:8"
"""cuBLAS workspace setting required for deterministic CUDA matrix products."""

EXIT_RUN_EXISTS = 1
"""Exit code when a new run would overwrite a run folder that already has checkpoints."""

BuildTask = Callable[[Any, torch.device, "Path | None"], Any]
"""``build_task(config, device, resume_checkpoint) -> TrainingTask``."""


@dataclass
class TrainingRun:
    """A finished (or only resolved, with ``summary=None``) training run."""

    config: Any
    run_dir: Path
    resume_checkpoint: Path | None
    summary: Any = None


def add_training_arguments(p: argparse.ArgumentParser, config_help: str, overrides_help: str) -> None:
    """Register ``-c/--config``, ``--resume`` and the ``KEY=VALUE`` overrides."""
    p.add_argument("-c", "--config", type=Path, default=None, help=config_help)
    p.add_argument("--resume", default=None, metavar="RUN_DIR|CHECKPOINT",
                   help="continue a run from its newest checkpoint (or the given one) with its stored config "
                   "(default: start a new run)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=overrides_help)


def configure_determinism(deterministic: bool) -> None:
    """Ask torch for deterministic kernels (global state, so it is set here and not in the library)."""
    if not deterministic:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", DETERMINISTIC_CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def _add_run_log(run_dir: Path) -> logging.Handler:
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / LOG_FILE, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    return handler


def is_main_process() -> bool:
    """Whether this is rank 0 of a (torchrun) job, or a single process."""
    return int(os.environ.get("RANK", "0")) == 0


def run_training(
    args: argparse.Namespace,
    config_cls: type,
    build_task: BuildTask,
    build_data: Callable[[Any], tuple[Any, Any]],
    *,
    run_log: bool = False,
    before_launch: Callable[[TrainingRun], bool] | None = None,
) -> TrainingRun | int:
    """Resolve, set up and launch one training run.

    Args:
        args: parsed arguments with ``config``, ``resume`` and ``overrides``.
        config_cls: the run's config dataclass.
        build_task: makes the task (with the checkpoint being resumed, if any).
        build_data: ``config -> (train_data, val_data_or_None)``.
        run_log: also write the log into ``<run>/train.log`` (rank 0).
        before_launch: called with the resolved run; returning ``False`` stops before training.

    Returns:
        The finished :class:`TrainingRun`, or an exit code (the run exists already; stopped before launch: 0).
    """
    from wdm_inpaint.training.launch import launch, resolve_run

    try:
        config, run_dir, resume_ckpt = resolve_run(config_cls, args.config, list(args.overrides), args.resume)
    except FileExistsError as exc:
        logging.getLogger("wdm_inpaint").error("%s", exc)
        return EXIT_RUN_EXISTS
    run = TrainingRun(config, run_dir, resume_ckpt)
    if before_launch is not None and not before_launch(run):
        return 0
    configure_determinism(config.loop.deterministic)
    handler = _add_run_log(run_dir) if run_log and is_main_process() else None
    try:
        run.summary = launch(config, run_dir, lambda cfg, device: build_task(cfg, device, resume_ckpt), build_data,
                             resume_ckpt)
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
    return run


def print_run(run: TrainingRun, terms: str = "") -> None:
    """The run folder and the steps done (``terms``: the last loss terms, appended)."""
    print(f"run folder:      {run.run_dir}")
    print(f"steps:           {run.summary.start_step} -> {run.summary.final_step}" + (f" ({terms})" if terms else ""))


__all__ = [
    "LOG_FILE",
    "TrainingRun",
    "add_training_arguments",
    "configure_determinism",
    "is_main_process",
    "print_run",
    "run_training",
]
