"""``wdm-inpaint sample-labels``: generate tumour label shapes with a trained label generator."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

VOXEL_SIZE_MM = 1.0
"""Voxel size written into the generated files (the generator has no physical geometry)."""

SUMMARY_FILE = "shapes_summary.json"
"""Per-shape figures (volume, components) and their aggregate, written next to the shapes."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``sample-labels``."""
    p = subparsers.add_parser(
        "sample-labels",
        help="generate tumour label shapes (NIfTI) with a label generator",
        description=(
            "Draw N latent vectors and write each generated label volume (64^3) as shape_NNNN.nii.gz with "
            "integer labels (0 background, 1 TC, 2 WT-only, 3 ET, i.e. BraTS-style: WT = 1|2|3, TC = 1|3, ET = 3; "
            "channels thresholded at --threshold). Accepts our generator or training checkpoints and published "
            "LabelGenerator.pth files. Also writes shapes_summary.json (volume, connected components)."
        ),
    )
    p.add_argument("-m", "--model", required=True, type=Path, help="generator checkpoint")
    p.add_argument("-n", "--num", type=int, required=True, help="number of shapes")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="seed of the latent vectors (default %(default)s)")
    p.add_argument("--threshold", type=float, default=0.0, help="tanh output above this is foreground (default 0)")
    p.add_argument("--device", default="cpu", help="torch device (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
    return p


def channels_to_labels(channels: np.ndarray, threshold: float) -> np.ndarray:
    """(3, D, H, W) generator output (TC, WT, ET) -> (D, H, W) uint8 BraTS-style labels.

    ET (3) where ET is on; else necrotic core (1) where TC is on; else oedema (2) where WT is on; else 0.
    """
    tc, wt, et = (channels[i] > threshold for i in range(3))
    labels = np.zeros(wt.shape, dtype=np.uint8)
    labels[wt] = 2
    labels[tc] = 1
    labels[et] = 3
    return labels


def run(args: argparse.Namespace) -> int:
    """Generate and write the shapes; returns the exit code."""
    import nibabel as nib
    import torch
    from tqdm.auto import tqdm

    from wdm_inpaint.io.atomic import atomic_path, atomic_write_text
    from wdm_inpaint.masks.label_generator import load_label_generator
    from wdm_inpaint.masks.shape_stats import shape_statistics, summarize

    if args.num < 1:
        raise ValueError(f"-n must be >= 1, got {args.num}")
    model, config = load_label_generator(args.model, map_location=args.device)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    rng = torch.Generator(device="cpu").manual_seed(args.seed)
    affine = np.diag([VOXEL_SIZE_MM] * 3 + [1.0])
    per_shape = []
    for i in tqdm(range(args.num), desc="sample-labels", unit="shape", disable=args.no_progress):
        z = torch.randn(1, config.noise_dim, generator=rng).to(args.device)
        with torch.no_grad():
            channels = model(z)[0].float().cpu().numpy()
        labels = channels_to_labels(channels, args.threshold)
        path = out / f"shape_{i:04d}.nii.gz"
        image = nib.Nifti1Image(labels, affine)
        image.header.set_data_dtype(np.uint8)
        with atomic_path(path) as tmp:
            nib.save(image, tmp)
        per_shape.append({"file": path.name, **shape_statistics(labels > 0)})
    summary = summarize(per_shape)
    record = {"model": str(args.model), "seed": args.seed, "threshold": args.threshold, "summary": summary}
    atomic_write_text(out / SUMMARY_FILE, json.dumps({**record, "shapes": per_shape}, indent=1))
    print(
        f"wrote {args.num} shapes to {out}: {summary['empty']} empty, "
        f"{100 * summary['single_component_fraction']:.0f}% one component, whole-tumour volume "
        f"{summary['voxels_min']}..{summary['voxels_max']} voxels (median {summary['voxels_median']:.0f})"
    )
    return 0
