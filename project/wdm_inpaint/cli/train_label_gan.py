"""``wdm-inpaint train-label-gan``: train the label-generator GAN with the generic trainer."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

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
    p.add_argument(
        "-c", "--config", type=Path, default=None, help="YAML config (LabelGANTrainConfig); required unless --resume"
    )
    p.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR|CHECKPOINT",
        help="continue a run from its newest checkpoint (or the given one) with its stored config",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides such as data.root=labels or loop.max_steps=100 (values parsed as YAML)",
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
    from wdm_inpaint.cli.train import configure_determinism
    from wdm_inpaint.masks.label_data import LabelShapeDataset
    from wdm_inpaint.masks.label_gan_task import LabelGANTask, LabelGANTrainConfig
    from wdm_inpaint.training.checkpointing import latest_checkpoint
    from wdm_inpaint.training.launch import launch, resolve_run

    try:
        config, run_dir, resume_ckpt = resolve_run(LabelGANTrainConfig, args.config, list(args.overrides), args.resume)
    except FileExistsError as exc:
        logging.getLogger("wdm_inpaint").error("%s", exc)
        return 1
    configure_determinism(config.loop.deterministic)

    def build_data(cfg: LabelGANTrainConfig) -> tuple[LabelShapeDataset, None]:
        dataset = LabelShapeDataset(cfg.data, progress=cfg.logging.progress)
        lo, hi = dataset.volume_range()
        logger.info("%d training shapes; whole-tumour volume %d..%d voxels at 64^3", len(dataset), lo, hi)
        return dataset, None

    summary = launch(config, run_dir, lambda cfg, device: LabelGANTask(cfg), build_data, resume_ckpt)
    last = summary.last_checkpoint or latest_checkpoint(run_dir)
    terms = ", ".join(f"{k}={v:.4g}" for k, v in sorted(summary.last_terms.items()))
    print(f"run folder:      {run_dir}")
    print(f"steps:           {summary.start_step} -> {summary.final_step}" + (f" ({terms})" if terms else ""))
    if last is not None:
        export = export_generator(last, run_dir / GENERATOR_EXPORT)
        print(f"last checkpoint: {last}")
        print(f"generator:       {export}")
    return 0
