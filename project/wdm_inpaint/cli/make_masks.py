"""``wdm-inpaint make-masks``: synthetic healthy masks placed in training cases (training-set augmentation)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from wdm_inpaint.config import to_dict
from wdm_inpaint.io.atomic import atomic_write_text
from wdm_inpaint.masks.make_masks import make_masks
from wdm_inpaint.masks.placer import MaskAugmentConfig, discover_cases

RUN_RECORD = "make_masks_run.json"
"""File in the output folder recording the arguments and settings of the last run."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``make-masks``."""
    defaults = MaskAugmentConfig()
    p = subparsers.add_parser(
        "make-masks",
        help="place synthetic healthy masks in training cases (augmentation)",
        description=(
            "For every case of DATA, write --per-case samples with 1-3 new regions (from the label-generator GAN "
            "or other cases' mask-healthy) placed inside the brain and away from the tumour: a new mask-healthy, "
            "the combined mask and the voided t1n, plus a metadata JSON per sample. The samples are added to "
            "OUT/augmented_split.json (paths relative to OUT). Re-running skips finished samples."
        ),
    )
    p.add_argument("-i", "--input", required=True, type=Path, help="data folder of <ID>/ case folders")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    p.add_argument("--per-case", type=int, default=defaults.per_case, help="samples per case (default %(default)s)")
    p.add_argument("--gan", type=Path, default=None, help="label-generator checkpoint (ours or LabelGenerator.pth)")
    only = p.add_mutually_exclusive_group()
    only.add_argument("--only-real", action="store_true", help="shapes only from other cases' mask-healthy")
    only.add_argument("--only-gan", action="store_true", help="shapes only from the GAN (needs --gan)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default %(default)s)")
    p.add_argument("--workers", type=int, default=1, help="processes (default %(default)s: no pool)")
    p.add_argument(
        "--gan-crop-size",
        type=int,
        default=defaults.gan_crop_size,
        help="edge length the 64^3 GAN output is resized to, the real crop scale (default %(default)s)",
    )
    p.add_argument(
        "--max-tries",
        type=int,
        default=defaults.placement.max_tries,
        help="placement positions tried per shape (default %(default)s)",
    )
    p.add_argument(
        "--max-shape-draws",
        type=int,
        default=defaults.max_shape_draws,
        help="shapes drawn per region before giving it up (default %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``make-masks``; returns the exit code."""
    source = "real" if args.only_real else "gan" if args.only_gan else "mixed"
    defaults = MaskAugmentConfig()
    config = MaskAugmentConfig(
        per_case=args.per_case,
        source=source,
        gan_crop_size=args.gan_crop_size,
        max_shape_draws=args.max_shape_draws,
        placement=dataclasses.replace(defaults.placement, max_tries=args.max_tries),
    )
    cases = discover_cases(args.input)
    report = make_masks(
        cases,
        args.output,
        config,
        seed=args.seed,
        gan_path=args.gan,
        workers=args.workers,
        progress=not args.no_progress,
    )
    record = {
        "input": str(args.input),
        "seed": args.seed,
        "gan": str(args.gan) if args.gan else None,
        "config": to_dict(config),
        "cases": len(cases),
        "samples": len(report.samples),
        "written": report.written,
        "gave_up": report.gave_up,
    }
    atomic_write_text(Path(args.output) / RUN_RECORD, json.dumps(record, indent=1))
    print(
        f"{len(cases)} cases, {len(report.samples)} samples: {report.written} written, {report.gave_up} with a "
        f"region given up, {report.skipped} already done; split file {report.split_path}"
    )
    return 0
