"""``wdm-inpaint convert-checkpoint``: turn an upstream WDM / Faking_it state dict into a wdm-inpaint checkpoint."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from wdm_inpaint.config import ScheduleConfig

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``convert-checkpoint`` command."""
    parser = subparsers.add_parser(
        "convert-checkpoint",
        help="convert an upstream U-Net state dict (wdm-3d, Faking_it) into a wdm-inpaint checkpoint",
        description=(
            "Read an upstream guided-diffusion U-Net state dict (plain, or nested under 'state_dict'/'model'), "
            "infer its architecture from the tensor shapes, and write a self-describing wdm-inpaint checkpoint. "
            "The file is read with weights_only=True: no pickled code runs."
        ),
    )
    parser.add_argument("source", type=Path, help="upstream checkpoint, e.g. c_brats_3000000.pt")
    parser.add_argument("destination", type=Path, help="wdm-inpaint checkpoint to write")
    parser.add_argument(
        "--mode",
        choices=["default", "akh", "akh_context", "prior"],
        default=None,
        help="training mode of the model (default: inferred from the input channels: "
        "8 default, 16 akh, 24 akh_context; 'prior' has no upstream counterpart and is refused)",
    )
    parser.add_argument(
        "--num-timesteps",
        type=int,
        default=1000,
        help="number of diffusion steps the model was trained with (default 1000)",
    )
    parser.add_argument(
        "--schedule", choices=["linear", "cosine"], default="linear", help="training noise schedule (default linear)"
    )
    parser.add_argument(
        "--num-groups", type=int, default=32, help="GroupNorm groups of the upstream model (default 32, as published)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite DESTINATION if it exists")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Convert ``args.source`` into ``args.destination``; returns the exit code."""
    import torch

    from wdm_inpaint.convert import convert_checkpoint
    from wdm_inpaint.models.unet import WDMUNet, count_parameters

    if args.destination.exists() and not args.force:
        logger.error("%s exists; pass --force to overwrite it", args.destination)
        return 1
    schedule = ScheduleConfig(kind=args.schedule, num_timesteps=args.num_timesteps)
    config = convert_checkpoint(
        args.source, args.destination, mode=args.mode, schedule=schedule, num_groups=args.num_groups
    )
    unet = config.unet
    with torch.device("meta"):
        parameters = count_parameters(WDMUNet(unet))
    print(
        f"wrote {args.destination}: mode {config.mode.name}, {parameters:,} parameters, "
        f"{unet.in_channels} -> {unet.out_channels} channels, base {unet.model_channels}, "
        f"channel_mult {list(unet.channel_mult)}, {unet.num_res_blocks} res blocks per level, "
        f"schedule {schedule.kind} T={schedule.num_timesteps}"
    )
    return 0
