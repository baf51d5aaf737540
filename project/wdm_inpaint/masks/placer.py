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
number of workers or on which samples were already done. The written samples are merged into
``OUT/augmented_split.json`` (``{"training": [entries]}``; entry paths relative to OUT, originals included as
``t1n`` and ``mask_unhealthy``), which :func:`wdm_inpaint.data.split.load_augmented_entries` reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from wdm_inpaint.config import to_dict
from wdm_inpaint.data import cases as data_cases
from wdm_inpaint.data.split import AUGMENTED_METADATA_FORMAT, AUGMENTED_SPLIT_FILE
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

SPLIT_FILE_NAME = AUGMENTED_SPLIT_FILE
"""Split file written into the output folder (paths inside are relative to that folder)."""

GAN_TORCH_THREADS = 1
"""Torch threads of every process that runs the label generator: the same count in serial and parallel runs
keeps the floating-point results, hence the thresholded shapes, independent of ``--workers``."""

SPLIT_KEY = "training"
"""List of the split file that holds the augmented samples."""

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
class _CaseContext:
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


_WORKER: dict[str, Any] = {}
"""Per-process state of the worker pool (set by :func:`_init_worker`)."""


def _init_worker(context: _CaseContext, torch_threads: int | None) -> None:
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    if context.generator_needed:
        from wdm_inpaint.masks.label_generator import load_label_generator

        context.generator, _ = load_label_generator(context.gan_path)
    _WORKER["context"] = context


def _config_digest(config: MaskAugmentConfig, seed: int, gan_path: str | None) -> str:
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
    source: ShapeSourceName, case_id: str, rng: np.random.Generator, context: _CaseContext
) -> tuple[np.ndarray, dict[str, Any]]:
    if source == "gan":
        shape = gan_shape(context.generator, rng, context.config.gan_crop_size, context.config.gan_threshold)
        return shape, {"source": "gan"}
    donors = [k for k in sorted(context.shape_pool) if k != case_id]
    donor = donors[int(rng.integers(len(donors)))]
    shape = augment_real_shape(context.shape_pool[donor], rng, context.config.augment)
    return shape, {"source": "real", "source_case": donor}


def _choose_source(case_id: str, rng: np.random.Generator, context: _CaseContext) -> ShapeSourceName:
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
    context: _CaseContext,
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
        "settings_digest": _config_digest(cfg, context.seed, context.gan_path),
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


def augment_case(case: CaseFiles, context: _CaseContext | None = None) -> list[dict[str, Any]]:
    """Make (or find already made) all samples of one case; returns their metadata in index order."""
    context = context or _WORKER["context"]
    digest = _config_digest(context.config, context.seed, context.gan_path)
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


# --------------------------------------------------------------------------------------------- split file
def split_entries(metas: Sequence[dict[str, Any]], out_dir: Path, cases: dict[str, CaseFiles]) -> list[dict[str, Any]]:
    """Decathlon-style entries (paths relative to ``out_dir``) of the written samples, in case/index order."""
    entries = []
    for meta in sorted(metas, key=lambda m: (m["case_id"], m["index"])):
        if not meta.get("written"):
            continue
        case = cases[meta["case_id"]]
        paths = sample_paths(out_dir, case.case_id, meta["index"])

        def rel(p: Path) -> str:
            return Path(os.path.relpath(Path(p).resolve(), out_dir.resolve())).as_posix()

        entries.append(
            {
                "case_id": case.case_id,
                "t1n": rel(case.t1n),
                "mask_unhealthy": rel(case.mask_unhealthy),
                "mask_healthy": rel(paths["mask_healthy"]),
                "mask": rel(paths["mask"]),
                "t1n_voided": rel(paths["t1n_voided"]),
                "augmented": True,
            }
        )
    return entries


def write_split(out_dir: Path, entries: list[dict[str, Any]]) -> Path:
    """Merge ``entries`` into ``<out_dir>/augmented_split.json`` (by ``mask_healthy`` path), atomically."""
    path = out_dir / SPLIT_FILE_NAME
    existing: list[dict[str, Any]] = []
    if path.is_file():
        try:
            existing = json.loads(path.read_text()).get(SPLIT_KEY, [])
        except (json.JSONDecodeError, AttributeError) as exc:
            raise ValueError(f"{path}: not a valid split file ({exc}); delete it to rebuild it") from exc
    merged = {e["mask_healthy"]: e for e in existing}
    merged.update({e["mask_healthy"]: e for e in entries})
    ordered = sorted(merged.values(), key=lambda e: e["mask_healthy"])
    atomic_write_text(path, json.dumps({SPLIT_KEY: ordered}, indent=1))
    return path


# --------------------------------------------------------------------------------------------- driver
@dataclass
class MakeMasksReport:
    """Summary of a :func:`make_masks` run."""

    samples: list[dict[str, Any]]
    split_path: Path

    @property
    def written(self) -> int:
        """Samples with files."""
        return sum(bool(m.get("written")) for m in self.samples)

    @property
    def gave_up(self) -> int:
        """Samples where at least one region could not be placed."""
        return sum(bool(m.get("gave_up")) for m in self.samples)

    @property
    def skipped(self) -> int:
        """Samples found complete from an earlier run."""
        return sum(bool(m.get("skipped")) for m in self.samples)


def make_masks(
    cases: Sequence[CaseFiles],
    out_dir: str | os.PathLike[str],
    config: MaskAugmentConfig,
    seed: int = 0,
    gan_path: str | os.PathLike[str] | None = None,
    workers: int = 1,
    progress: bool = True,
    on_case: Callable[[str], None] | None = None,
) -> MakeMasksReport:
    """Augment every case with ``config.per_case`` synthetic-mask samples and update the split file.

    Args:
        cases: the cases (from :func:`discover_cases`); they are also the pool of real shapes.
        out_dir: output folder (one sub-folder per case, plus ``augmented_split.json``).
        config: placer settings.
        seed: base seed.
        gan_path: label-generator checkpoint; required unless ``config.source == "real"``.
        workers: processes (1 = everything in this process).
        progress: show a progress bar over cases.
        on_case: called with each finished case id (in completion order).

    Returns:
        A :class:`MakeMasksReport` with every sample's metadata (case/index order).
    """
    from tqdm.auto import tqdm

    if not cases:
        raise ValueError("no cases to augment")
    if config.source == "gan" and gan_path is None:
        raise ValueError("GAN shapes requested (--only-gan) but no label-generator checkpoint given (--gan)")
    if gan_path is not None and not Path(gan_path).is_file():
        raise FileNotFoundError(f"label-generator checkpoint not found: {gan_path}")
    if gan_path is None and config.source == "mixed":
        logger.warning("no label-generator checkpoint given: every shape comes from other cases' masks")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    workers = max(1, int(workers))

    pool: dict[str, np.ndarray] = {}
    if config.needs_real:
        if workers == 1:
            loaded = [load_shape(case) for case in cases]
        else:
            with ProcessPoolExecutor(max_workers=workers) as ex:
                loaded = list(ex.map(load_shape, cases, chunksize=4))
        pool = {cid: shape for cid, shape in loaded if shape is not None}
        logger.info("real-shape pool: %d masks", len(pool))
        if config.source == "real" and len(pool) < 2:
            raise ValueError(
                f"real shapes requested but only {len(pool)} case(s) have a non-empty mask-healthy; at least two are "
                "needed (a case never takes its own mask)"
            )

    context = _CaseContext(
        config=config,
        seed=int(seed),
        out_dir=out,
        shape_pool=pool,
        gan_path=str(Path(gan_path).resolve()) if gan_path else None,
    )
    results: dict[str, list[dict[str, Any]]] = {}
    torch_threads_before = torch.get_num_threads()
    bar = tqdm(total=len(cases), desc="make-masks", unit="case", disable=not progress)
    try:
        if workers == 1:
            _init_worker(context, GAN_TORCH_THREADS if context.generator_needed else None)
            for case in cases:
                results[case.case_id] = augment_case(case)
                bar.update()
                if on_case:
                    on_case(case.case_id)
        else:
            init_args = (context, GAN_TORCH_THREADS if context.generator_needed else 1)
            with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=init_args) as ex:
                futures = {ex.submit(augment_case, case): case.case_id for case in cases}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update()
                    if on_case:
                        on_case(futures[fut])
    finally:
        bar.close()
        _WORKER.pop("context", None)
        if workers == 1 and context.generator_needed:
            torch.set_num_threads(torch_threads_before)
    samples = [m for case in cases for m in results[case.case_id]]
    by_id = {c.case_id: c for c in cases}
    split_path = write_split(out, split_entries(samples, out, by_id))
    return MakeMasksReport(samples=samples, split_path=split_path)


__all__ = [
    "METADATA_FORMAT",
    "SPLIT_FILE_NAME",
    "CaseFiles",
    "MakeMasksReport",
    "MaskAugmentConfig",
    "augment_case",
    "discover_cases",
    "make_masks",
    "sample_paths",
    "split_entries",
    "write_split",
]
