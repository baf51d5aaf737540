"""``wdm-inpaint make-split``: a MONAI decathlon split file of a data folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from wdm_inpaint.data.split import (
    DEFAULT_VAL_FRACTION,
    append_augmented,
    build_split,
    load_augmented_entries,
    write_split,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``make-split``."""
    p = subparsers.add_parser(
        "make-split",
        help="write a MONAI decathlon split file (training/validation/testing) of a data folder",
        description=(
            "Cases of DATA with t1n, mask-healthy and mask-unhealthy are shuffled with --seed and split into "
            "'training' and 'validation' (--val-fraction), or all put in 'training' with a 'fold' number "
            "(--folds). Cases with only t1n-voided and mask go to 'testing'. Paths are relative to DATA; read "
            "the file with monai.data.load_decathlon_datalist(OUT, data_list_key=..., base_dir=DATA)."
        ),
    )
    p.add_argument("-i", "--input", required=True, type=Path, help="data folder of <ID>/ case folders")
    p.add_argument("-o", "--output", required=True, type=Path, help="split JSON file to write")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help=f"fraction of training cases held out for validation (default {DEFAULT_VAL_FRACTION})",
    )
    group.add_argument("--folds", type=int, default=None, help="k-fold cross-validation: a 'fold' key per entry")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default %(default)s)")
    p.add_argument(
        "--augmented",
        type=Path,
        action="append",
        default=[],
        help="augmented samples to append to 'training': a make-masks output folder, its augmented_split.json "
        "or a per-sample metadata JSON (repeatable)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``make-split``; returns the exit code."""
    val_fraction = DEFAULT_VAL_FRACTION if args.val_fraction is None else args.val_fraction
    split = build_split(args.input, val_fraction=val_fraction, folds=args.folds, seed=args.seed)
    n_augmented = 0
    for source in args.augmented:
        entries = load_augmented_entries(source, args.input)
        split = append_augmented(split, entries)
        n_augmented += len(entries)
    write_split(split, args.output)
    print(
        f"{args.output}: {len(split['training'])} training ({n_augmented} augmented), "
        f"{len(split['validation'])} validation, {len(split['testing'])} testing"
    )
    return 0
