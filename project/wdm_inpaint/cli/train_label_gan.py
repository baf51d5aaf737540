"""``wdm-inpaint train-label-gan``: train the label-generator GAN with the generic trainer."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from wdm_inpaint.cli.training_command import add_training_arguments, print_run, run_training

logger = logging.getLogger(__name__)

GENERATOR_EXPORT = "generator.pt"
"""Generator checkpoint written into the run folder at the end of training (EMA weights when EMA is on)."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``train-label-gan``."""
    p = subparsers.add_parser(
        "train-label-gan",
        help="train the 3-D label-generator GAN on tumour label shapes",
        description=(
            "Train the label generator (noise -> TC/WT/ET label volume, 64^3) on tumour-centred crops of BraTS "
            "segmentations or mask-unhealthy files (data.root, data.pattern in the YAML config). Checkpoints, "
            "metrics.jsonl and TensorBoard events go to <output_dir>/<name>/; --resume continues a run exactly. "
            f"At the end, <run>/{GENERATOR_EXPORT} holds the generator for sample-labels and make-masks --gan."
        ),
    )
    add_training_arguments(
        p,
        config_help="YAML config (LabelGANTrainConfig); required unless --resume",
        overrides_help="config overrides such as data.root=labels or loop.max_steps=100 (values parsed as YAML)",
    )
    p.set_defaults(func=run)
    return p


def export_generator(checkpoint: Path, destination: Path) -> Path:
    """Write the generator embedded in a label-GAN training checkpoint as a generator checkpoint (atomically)."""
    import torch

    from wdm_inpaint.io.atomic import atomic_path

    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "generator" not in payload:
        raise ValueError(f"{checkpoint}: not a label-GAN training checkpoint (no embedded generator)")
    with atomic_path(destination) as tmp:
        torch.save(payload["generator"], tmp)
    return destination


def run(args: argparse.Namespace) -> int:
    """Train; returns the exit code."""
    from wdm_inpaint.masks.label_data import LabelShapeDataset
    from wdm_inpaint.masks.label_gan_task import LabelGANTask, LabelGANTrainConfig
    from wdm_inpaint.training.checkpointing import latest_checkpoint

    def build_data(cfg: LabelGANTrainConfig) -> tuple[LabelShapeDataset, None]:
        dataset = LabelShapeDataset(cfg.data, progress=cfg.logging.progress)
        lo, hi = dataset.volume_range()
        logger.info("%d training shapes; whole-tumour volume %d..%d voxels at 64^3", len(dataset), lo, hi)
        return dataset, None

    result = run_training(args, LabelGANTrainConfig, lambda cfg, device, resume: LabelGANTask(cfg), build_data)
    if isinstance(result, int):
        return result
    summary = result.summary
    last = summary.last_checkpoint or latest_checkpoint(result.run_dir)
    print_run(result, ", ".join(f"{k}={v:.4g}" for k, v in sorted(summary.last_terms.items())))
    if last is not None:
        export = export_generator(last, result.run_dir / GENERATOR_EXPORT)
        print(f"last checkpoint: {last}")
        print(f"generator:       {export}")
    return 0
