"""Synthetic healthy masks: place new regions in each training case and write augmented samples.

For every case and every sample index ``i < per_case`` the placer

1. draws the number of regions (``region_counts`` with ``region_count_weights``);
2. for each region draws a shape, from the label generator (whole-tumour channel at real scale, see
   :mod:`wdm_inpaint.masks.shapes`) or from another case's ``mask-healthy`` with random flips and rotation, and
   places it with :func:`~wdm_inpaint.masks.placement.place_shape` (inside the brain ``t1n > brain_threshold``,
   away from the tumour ``mask-unhealthy`` and from the regions placed before, inside the volume). A region
   that cannot be placed after ``max_shape_draws`` shapes is given up;
3. writes, in the case's geometry, ``<CASE>-mask-healthy-augNN.nii.gz`` (the new regions),
   ``<CASE>-mask-augNN.nii.gz`` (new regions OR tumour) and ``<CASE>-t1n-voided-augNN.nii.gz`` (t1n with both
   set to 0, as the challenge's inputs look), then the metadata ``<CASE>-augNN.json`` last, which marks the
   sample as complete. A sample where no region could be placed writes only its metadata.

Every sample draws from its own generator seeded by ``(seed, case id, i)``, so results do not depend on the
number of workers or on which samples were already done. The process pool over cases and the split file
that lists the samples live in :mod:`wdm_inpaint.masks.make_masks`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from wdm_inpaint.config import to_dict
from wdm_inpaint.data import cases as data_cases
from wdm_inpaint.data.split import AUGMENTED_METADATA_FORMAT
from wdm_inpaint.io.atomic import atomic_write_text
from wdm_inpaint.io.nifti import read_nifti, write_like
from wdm_inpaint.seeding import keyed_seed_sequence
from wdm_inpaint.masks.placement import PlacementRules, add_forbidden_region, forbidden_distance, place_shape
from wdm_inpaint.masks.shapes import (
    GAN_CROP_SIZE,
    GAN_THRESHOLD,
    ShapeAugmentConfig,
    augment_real_shape,
    crop_foreground,
    gan_shape,
)

logger = logging.getLogger(__name__)

METADATA_FORMAT = AUGMENTED_METADATA_FORMAT
"""Format marker of the per-sample metadata JSON (read by :func:`wdm_inpaint.data.split.load_augmented_entries`)."""

SAMPLE_TAG = "aug{index:02d}"
"""Suffix that names the files of augmented sample ``index``."""

ShapeSourceName = Literal["gan", "real"]


@dataclass(frozen=True)
class MaskAugmentConfig:
    """Settings of the synthetic-mask placer.

    Attributes:
        per_case: augmented samples per case.
        region_counts: possible numbers of new regions per sample.
        region_count_weights: probabilities of ``region_counts`` (normalised).
        source: ``mixed`` (GAN with probability ``gan_probability``, else real), ``gan`` or ``real`` only.
        gan_probability: probability of a GAN shape in ``mixed`` mode.
        gan_crop_size: edge length the generator's 64^3 output is resized to (the real crop scale).
        gan_threshold: foreground threshold of the resized whole-tumour channel.
        max_shape_draws: shapes drawn for one region before giving that region up.
        brain_threshold: brain voxels are ``t1n > brain_threshold``.
        placement: placement rules of every region.
        augment: random transforms of real shapes.
    """

    per_case: int = 5
    region_counts: tuple[int, ...] = (1, 2, 3)
    region_count_weights: tuple[float, ...] = (0.45, 0.45, 0.1)
    source: Literal["mixed", "gan", "real"] = "mixed"
    gan_probability: float = 0.5
    gan_crop_size: int = GAN_CROP_SIZE
    gan_threshold: float = GAN_THRESHOLD
    max_shape_draws: int = 20
    brain_threshold: float = 0.0
    placement: PlacementRules = field(default_factory=PlacementRules)
    augment: ShapeAugmentConfig = field(default_factory=ShapeAugmentConfig)

    def __post_init__(self) -> None:
        if self.per_case < 1:
            raise ValueError(f"per_case must be >= 1, got {self.per_case}")
        if len(self.region_counts) != len(self.region_count_weights) or not self.region_counts:
            raise ValueError(
                f"region_counts {self.region_counts} and region_count_weights {self.region_count_weights} must be "
                "non-empty and of equal length"
            )
        if any(c < 1 for c in self.region_counts):
            raise ValueError(f"region_counts must be >= 1, got {self.region_counts}")
        if any(w < 0 for w in self.region_count_weights) or sum(self.region_count_weights) <= 0:
            raise ValueError(f"region_count_weights must be >= 0 with a positive sum, got {self.region_count_weights}")
        if self.source not in ("mixed", "gan", "real"):
            raise ValueError(f"source must be 'mixed', 'gan' or 'real', got {self.source!r}")
        if not 0.0 <= self.gan_probability <= 1.0:
            raise ValueError(f"gan_probability must be in [0, 1], got {self.gan_probability}")
        if self.gan_crop_size < 1 or self.max_shape_draws < 1:
            raise ValueError("gan_crop_size and max_shape_draws must be >= 1")

    @property
    def needs_gan(self) -> bool:
        """Whether any shape can come from the label generator."""
        return self.source == "gan" or (self.source == "mixed" and self.gan_probability > 0)

    @property
    def needs_real(self) -> bool:
        """Whether any shape can come from another case's mask."""
        return self.source == "real" or (self.source == "mixed" and self.gan_probability < 1)


@dataclass(frozen=True)
class CaseFiles:
    """The files of one training case used by the placer."""

    case_id: str
    t1n: Path
    mask_unhealthy: Path
    mask_healthy: Path | None = None


REQUIRED_KEYS: tuple[str, ...] = ("t1n", "mask_unhealthy")
"""Case files the placer needs (``mask_healthy`` is optional; it feeds the pool of real shapes)."""


def discover_cases(root: str | os.PathLike[str]) -> list[CaseFiles]:
    """The cases of a data folder (challenge layout) that hold ``t1n`` and ``mask-unhealthy``, sorted by ID.

    Cases lacking one of them are skipped with a warning.

    Raises:
        FileNotFoundError: if ``root`` does not exist or holds no usable case.
    """
    scan = data_cases.discover_cases(root, expected=REQUIRED_KEYS)
    for error in scan.errors(REQUIRED_KEYS):
        logger.warning("skipping %s", error)
    usable = scan.usable(REQUIRED_KEYS)
    if not usable:
        raise FileNotFoundError(
            f"{root}: no usable case folders (each needs <ID>/<ID>-t1n.nii.gz and <ID>-mask-unhealthy.nii.gz)"
        )
    return [
        CaseFiles(c.id, c.paths["t1n"], c.paths["mask_unhealthy"], c.paths.get("mask_healthy"))
        for c in sorted(usable, key=lambda c: c.id)
    ]


def sample_paths(out_dir: Path, case_id: str, index: int) -> dict[str, Path]:
    """Output files of one augmented sample: ``mask_healthy``, ``mask``, ``t1n_voided`` and ``metadata``."""
    tag = SAMPLE_TAG.format(index=index)
    folder = out_dir / case_id
    return {
        "mask_healthy": folder / data_cases.case_file_name(case_id, "mask_healthy", tag),
        "mask": folder / data_cases.case_file_name(case_id, "mask", tag),
        "t1n_voided": folder / data_cases.case_file_name(case_id, "t1n_voided", tag),
        "metadata": folder / f"{case_id}-{tag}.json",
    }


# --------------------------------------------------------------------------------------------- shape pool
def load_shape(case: CaseFiles) -> tuple[str, np.ndarray | None]:
    """(case id, the case's ``mask-healthy`` cropped to its foreground, or None without one)."""
    if case.mask_healthy is None:
        return case.case_id, None
    mask = read_nifti(case.mask_healthy).data > 0
    shape = crop_foreground(mask)
    if shape.size == 0:
        logger.warning("%s is empty; not used as a shape", case.mask_healthy)
        return case.case_id, None
    return case.case_id, shape


# --------------------------------------------------------------------------------------------- one case
@dataclass
class CaseContext:
    """Everything one case's samples share."""

    config: MaskAugmentConfig
    seed: int
    out_dir: Path
    shape_pool: dict[str, np.ndarray]
    gan_path: str | None
    generator: Any = None

    @property
    def generator_needed(self) -> bool:
        """Whether shapes will be drawn from the label generator."""
        return self.gan_path is not None and self.config.needs_gan


def config_digest(config: MaskAugmentConfig, seed: int, gan_path: str | None) -> str:
    """Short digest of the settings a sample was made with (a resumed run must use the same)."""
    payload = json.dumps({"config": to_dict(config), "seed": int(seed), "gan": gan_path}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _is_complete(paths: dict[str, Path], digest: str) -> bool:
    meta_path = paths["metadata"]
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError:
        logger.warning("%s is unreadable; the sample is made again", meta_path)
        return False
    if meta.get("settings_digest") != digest:
        raise ValueError(
            f"{meta_path} was made with other settings (seed, config or GAN); use a new output folder or delete "
            "the old samples"
        )
    return all(paths[k].is_file() for k in ("mask_healthy", "mask", "t1n_voided")) if meta.get("written") else True


def _draw_shape(
    source: ShapeSourceName, case_id: str, rng: np.random.Generator, context: CaseContext
) -> tuple[np.ndarray, dict[str, Any]]:
    if source == "gan":
        shape = gan_shape(context.generator, rng, context.config.gan_crop_size, context.config.gan_threshold)
        return shape, {"source": "gan"}
    donors = [k for k in sorted(context.shape_pool) if k != case_id]
    donor = donors[int(rng.integers(len(donors)))]
    shape = augment_real_shape(context.shape_pool[donor], rng, context.config.augment)
    return shape, {"source": "real", "source_case": donor}


def _choose_source(case_id: str, rng: np.random.Generator, context: CaseContext) -> ShapeSourceName:
    cfg = context.config
    has_donor = any(k != case_id for k in context.shape_pool)
    if cfg.source == "gan":
        return "gan"
    if cfg.source == "real" or context.generator is None:
        if not has_donor:
            raise ValueError(f"no other case with a non-empty mask-healthy to take a real shape from (case {case_id})")
        return "real"
    if not has_donor:
        return "gan"
    return "gan" if rng.random() < cfg.gan_probability else "real"


def augment_sample(
    case: CaseFiles,
    index: int,
    t1n_volume: Any,
    brain: np.ndarray,
    tumour: np.ndarray,
    tumour_distance: np.ndarray,
    context: CaseContext,
) -> dict[str, Any]:
    """Make one augmented sample of ``case`` and write its files; returns its metadata.

    Args:
        case: the case.
        index: sample index (selects the file names and the random stream).
        t1n_volume: the case's t1n :class:`~wdm_inpaint.io.nifti.Volume` (its image gives the output geometry).
        brain: (D, H, W) bool brain mask.
        tumour: (D, H, W) bool ``mask-unhealthy``.
        tumour_distance: ``forbidden_distance(tumour, margin=min_distance_voxels)`` (not modified).
        context: shared settings, shape pool and generator.
    """
    cfg = context.config
    rng = np.random.default_rng(keyed_seed_sequence(context.seed, case.case_id, index))
    weights = np.asarray(cfg.region_count_weights, float)
    n_regions = int(rng.choice(np.asarray(cfg.region_counts), p=weights / weights.sum()))
    distance = tumour_distance.copy()
    forbidden = tumour.copy()
    new_mask = np.zeros_like(tumour)
    regions: list[dict[str, Any]] = []
    for r in range(n_regions):
        record: dict[str, Any] = {"index": r, "placed": False, "draws": 0, "tries": 0, "shapes": []}
        for _ in range(cfg.max_shape_draws):
            record["draws"] += 1
            source = _choose_source(case.case_id, rng, context)
            shape, info = _draw_shape(source, case.case_id, rng, context)
            if shape.size == 0:
                record["shapes"].append({**info, "empty": True})
                continue
            result = place_shape(shape, brain, forbidden, cfg.placement, rng, distance=distance)
            record["tries"] += result.tries
            record["shapes"].append({**info, "size": list(shape.shape), "tries": result.tries})
            if result.success:
                record.update(
                    placed=True,
                    **info,
                    offset=list(result.offset),
                    voxels=int(result.mask.sum()),
                    inside_brain_fraction=round(result.inside_brain_fraction, 6),
                    min_distance=None if np.isinf(result.min_distance) else float(result.min_distance),
                )
                new_mask |= result.mask
                forbidden |= result.mask
                add_forbidden_region(distance, result.mask, cfg.placement.min_distance_voxels)
                break
        regions.append(record)
    n_placed = sum(r["placed"] for r in regions)
    paths = sample_paths(context.out_dir, case.case_id, index)
    written = n_placed > 0
    if written:
        combined = new_mask | tumour
        voided = np.where(combined, 0.0, t1n_volume.data)
        write_like(paths["mask_healthy"], new_mask.astype(np.float32), t1n_volume.image)
        write_like(paths["mask"], combined.astype(np.float32), t1n_volume.image)
        write_like(paths["t1n_voided"], voided, t1n_volume.image)
    meta = {
        "format": METADATA_FORMAT,
        "case_id": case.case_id,
        "index": index,
        "seed": context.seed,
        "settings_digest": config_digest(cfg, context.seed, context.gan_path),
        "t1n": str(Path(case.t1n).resolve()),
        "mask_unhealthy": str(Path(case.mask_unhealthy).resolve()),
        "gan_checkpoint": context.gan_path,
        "n_regions": n_regions,
        "n_placed": n_placed,
        "gave_up": n_placed < n_regions,
        "written": written,
        "new_mask_voxels": int(new_mask.sum()),
        "regions": regions,
        "files": {k: paths[k].name for k in ("mask_healthy", "mask", "t1n_voided")} if written else {},
    }
    atomic_write_text(paths["metadata"], json.dumps(meta, indent=1))
    return meta


def augment_case(case: CaseFiles, context: CaseContext) -> list[dict[str, Any]]:
    """Make (or find already made) all samples of one case; returns their metadata in index order."""
    digest = config_digest(context.config, context.seed, context.gan_path)
    todo = [
        i
        for i in range(context.config.per_case)
        if not _is_complete(sample_paths(context.out_dir, case.case_id, i), digest)
    ]
    metas: dict[int, dict[str, Any]] = {}
    if todo:
        t1n = read_nifti(case.t1n)
        tumour_vol = read_nifti(case.mask_unhealthy)
        if tumour_vol.data.shape != t1n.data.shape:
            raise ValueError(
                f"{case.mask_unhealthy}: shape {tumour_vol.data.shape} differs from {case.t1n} {t1n.data.shape}"
            )
        tumour = tumour_vol.data > 0
        brain = t1n.data > context.config.brain_threshold
        tumour_distance = forbidden_distance(tumour, margin=context.config.placement.min_distance_voxels)
        for i in todo:
            metas[i] = augment_sample(case, i, t1n, brain, tumour, tumour_distance, context)
    for i in range(context.config.per_case):
        if i not in metas:
            metas[i] = json.loads(sample_paths(context.out_dir, case.case_id, i)["metadata"].read_text())
            metas[i]["skipped"] = True
    return [metas[i] for i in range(context.config.per_case)]


__all__ = [
    "METADATA_FORMAT",
    "CaseFiles",
    "MaskAugmentConfig",
    "augment_case",
    "augment_sample",
    "config_digest",
    "discover_cases",
    "load_shape",
    "sample_paths",
]
