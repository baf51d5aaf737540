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
import logging
import os
from pathlib import Path

import torch

from wdm_inpaint.training.config import TrainConfig, config_to_yaml

LOG_FILE = "train.log"
"""Log file of a run, in its run folder."""
DETERMINISTIC_CUBLAS_WORKSPACE = ":4096:8"
"""cuBLAS workspace setting required for deterministic CUDA matrix products."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train``."""
    p = subparsers.add_parser(
        "train",
        help="train a diffusion model (default / akh / akh_context modes)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-c", "--config", type=Path, default=None, help="YAML training config (default: none; required "
                   "unless --resume is given)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR|CHECKPOINT",
                   help="continue a run from its newest checkpoint (or the given one) with its stored config "
                   "(default: start a new run)")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit (default: off)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="config overrides such as optim.lr=2e-5 or loop.max_steps=100 (values parsed as YAML)")
    p.set_defaults(func=run)


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
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler


def run(args: argparse.Namespace) -> int:
    """Resolve the run, train, print a summary; returns the exit code."""
    from wdm_inpaint.training.data import build_datasets
    from wdm_inpaint.training.init_from import init_from_checkpoint
    from wdm_inpaint.training.launch import launch, resolve_run
    from wdm_inpaint.training.wdm_task import WDMTask

    try:
        config, run_dir, resume_ckpt = resolve_run(TrainConfig, args.config, list(args.overrides), args.resume)
    except FileExistsError as exc:
        logging.getLogger("wdm_inpaint").error("%s", exc)
        return 1
    if args.print_config:
        print(config_to_yaml(config), end="")
        return 0
    configure_determinism(config.loop.deterministic)
    is_main = int(os.environ.get("RANK", "0")) == 0
    handler = _add_run_log(run_dir) if is_main else None

    def build_task(cfg: TrainConfig, device: torch.device) -> WDMTask:
        task = WDMTask(cfg.model, gradient_checkpointing=cfg.loop.gradient_checkpointing)
        if cfg.init_from and resume_ckpt is None:
            init_from_checkpoint(task.model, cfg.init_from)
        return task

    try:
        summary = launch(config, run_dir, build_task, build_datasets, resume_ckpt)
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            handler.close()
    if is_main:
        loss = summary.last_terms.get("loss")
        print(f"run folder:      {run_dir}")
        print(f"steps:           {summary.start_step} -> {summary.final_step}")
        if loss is not None:
            print(f"last loss:       {loss:.6g}")
        if summary.last_checkpoint is not None:
            print(f"last checkpoint: {summary.last_checkpoint}")
        if summary.best_metric is not None:
            print(f"best {config.validation.metric}: {summary.best_metric:.6g}")
    return 0
