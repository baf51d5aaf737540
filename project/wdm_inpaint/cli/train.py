"""``wdm-inpaint train``: train (or resume training) a diffusion model from a YAML config.

Examples::

    wdm-inpaint train -c configs/akh_tiny_cpu.yaml data.split_json=demo/split.json
    wdm-inpaint train -c configs/akh_full.yaml name=akh_run2 optim.lr=2e-5 data.split_json=splits/fold0.json
    wdm-inpaint train --resume runs/akh_run2 loop.max_steps=4000000
    torchrun --standalone --nproc_per_node 4 -m wdm_inpaint.cli.main train -c configs/akh_full.yaml

The run folder is ``<output_dir>/<name>/`` (defaults ``runs/`` and the config's ``name``); it receives
``config.yaml``, ``train.log``, ``metrics.jsonl``, ``tensorboard/`` and ``checkpoints/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from wdm_inpaint.cli.training_command import (
    TrainingRun,
    add_training_arguments,
    is_main_process,
    print_run,
    run_training,
)
from wdm_inpaint.training.config import TrainConfig, config_to_yaml


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train``."""
    p = subparsers.add_parser(
        "train",
        help="train a diffusion model (default / akh / akh_context modes)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_training_arguments(
        p,
        config_help="YAML training config (default: none; required unless --resume is given)",
        overrides_help="config overrides such as optim.lr=2e-5 or loop.max_steps=100 (values parsed as YAML)",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit (default: off)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resolve the run, train, print a summary; returns the exit code."""
    from wdm_inpaint.training.data import build_datasets
    from wdm_inpaint.training.init_from import init_from_checkpoint
    from wdm_inpaint.training.wdm_task import WDMTask

    def build_task(cfg: TrainConfig, device: torch.device, resume_ckpt: Path | None) -> WDMTask:
        task = WDMTask(cfg.model, gradient_checkpointing=cfg.loop.gradient_checkpointing)
        if cfg.init_from and resume_ckpt is None:
            init_from_checkpoint(task.model, cfg.init_from)
        return task

    def print_config_only(run: TrainingRun) -> bool:
        if args.print_config:
            print(config_to_yaml(run.config), end="")
        return not args.print_config

    result = run_training(args, TrainConfig, build_task, build_datasets, run_log=True, before_launch=print_config_only)
    if isinstance(result, int):
        return result
    summary = result.summary
    if is_main_process():
        loss = summary.last_terms.get("loss")
        print_run(result)
        if loss is not None:
            print(f"last loss:       {loss:.6g}")
        if summary.last_checkpoint is not None:
            print(f"last checkpoint: {summary.last_checkpoint}")
        if summary.best_metric is not None:
            print(f"best {result.config.validation.metric}: {summary.best_metric:.6g}")
    return 0
