"""Synthetic BraTS local-synthesis cases built from real brain templates.

Each case takes a template brain on the BraTS grid (:mod:`wdm_inpaint.synthesis.templates`), optionally mirrors it
left-right and scales its intensities, and adds:

* ``mask-unhealthy``: a smooth random blob (a sphere with anisotropic axes whose surface is perturbed by
  smoothed noise) inside the brain, the "tumour", dilated by ``tumour_dilation`` voxels as the organisers do;
* ``mask-healthy``: another blob placed by the organisers' rules with
  :func:`wdm_inpaint.masks.placement.place_shape`: at least ``min_inside_brain_fraction`` inside the brain and
  at least ``min_distance_voxels`` from ``mask-unhealthy``;
* ``mask`` = healthy OR unhealthy, and ``t1n-voided`` = ``t1n`` with ``mask`` voxels set to 0.

Files are written in the challenge layout with the challenge's geometry (240x240x155, 1 mm,
:data:`~wdm_inpaint.synthesis.templates.BRATS_AFFINE`); intensities are int16, masks uint8. Every case draws from
its own generator seeded by ``(seed, case index)``, so a case does not depend on how many others are made.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from scipy import ndimage

from wdm_inpaint.config import to_dict
from wdm_inpaint.data.cases import case_file_name
from wdm_inpaint.synthesis.blobs import BlobConfig, dilate, local_edt, paste_centred, random_blob
from wdm_inpaint.synthesis.templates import (
    BRATS_AFFINE,
    TEMPLATES,
    TemplateBrain,
    licence_text,
    load_template,
)
from wdm_inpaint.io.atomic import atomic_path, atomic_write_text
from wdm_inpaint.masks.placement import PlacementRules, add_forbidden_region, place_shape
from wdm_inpaint.masks.shapes import ShapeAugmentConfig, augment_real_shape
from wdm_inpaint.seeding import index_seed_sequence
from wdm_inpaint.synthesis.subjects import SubjectConfig, vary_subject

logger = logging.getLogger(__name__)

DEMO_COHORT = "GLI"
"""Cohort part of the generated case IDs (``BraTS-GLI-...``)."""

DEFAULT_FIRST_CASE_NUMBER = 90000
"""Case number of the first generated case (IDs ``BraTS-GLI-90000-000``, ...), far from real BraTS numbers."""

DEMO_TIMEPOINT = 0
"""Time-point part of the generated case IDs."""

NIFTI_XFORM_SCANNER = 1
"""qform/sform code written into the demo files (scanner-anatomical coordinates)."""

INTENSITY_DTYPE = np.int16
"""On-disk dtype of ``t1n`` and ``t1n-voided``."""

MASK_DTYPE = np.uint8
"""On-disk dtype of the masks."""

MIN_BRAIN_INTENSITY = 1
"""Brain voxels get at least this intensity, so ``t1n > 0`` is exactly the brain mask."""

GZIP_LEVEL = 9
"""gzip level of the written files (small files for the committed demo case)."""

METADATA_FILE = "demo_cases.json"
"""File in the output folder describing every generated case."""

LICENCE_FILE = "LICENSES.md"
"""File in the output folder holding the licence notices of the templates used."""


class DemoError(RuntimeError):
    """A demo case could not be generated."""


@dataclass(frozen=True)
class DemoConfig:
    """Settings of the demo-case generator.

    Attributes:
        tumour: blob of the tumour core (before dilation).
        healthy: blob of the healthy region.
        tumour_dilation: ``mask-unhealthy`` is the tumour core dilated by this many voxels (organisers: 5).
        tumour_depth_fraction: the tumour centre lies at least this fraction of its radius inside the brain.
        placement: rules of the healthy region (>= 75 % inside the brain, >= 5 voxels from the tumour).
        intensity_reference: the brain's ``intensity_percentile`` is scaled to this value (before the gain).
        intensity_percentile: percentile of brain intensities used for the scaling.
        gain_range: random global intensity gain per case.
        mirror_probability: probability of mirroring the brain left-right.
        max_attempts: tumour/healthy draws before giving up on a case.
        subject: how the template is turned into a new subject first (deformation, scanner changes; see
            :mod:`wdm_inpaint.synthesis.subjects`); ``kind='none'`` keeps the template as it is.
        real_shape_probability: probability that the healthy region is a randomly rotated and flipped copy of
            the case's tumour core (a real lesion shape, as the organisers draw healthy masks) instead of a blob.
    """

    tumour: BlobConfig = field(default_factory=lambda: BlobConfig(radius_range=(10.0, 18.0)))
    healthy: BlobConfig = field(default_factory=lambda: BlobConfig(radius_range=(7.0, 13.0)))
    tumour_dilation: float = 5.0
    tumour_depth_fraction: float = 1.0
    placement: PlacementRules = field(default_factory=PlacementRules)
    intensity_reference: float = 1000.0
    intensity_percentile: float = 99.0
    gain_range: tuple[float, float] = (0.8, 1.25)
    mirror_probability: float = 0.5
    max_attempts: int = 20
    subject: SubjectConfig = field(default_factory=lambda: SubjectConfig(kind="none"))
    real_shape_probability: float = 0.0


@dataclass
class DemoCase:
    """The five volumes of one case (arrays on the BraTS grid) and how they were made."""

    t1n: np.ndarray
    t1n_voided: np.ndarray
    mask: np.ndarray
    mask_healthy: np.ndarray
    mask_unhealthy: np.ndarray
    info: dict[str, Any]


def case_id(number: int, cohort: str = DEMO_COHORT, timepoint: int = DEMO_TIMEPOINT) -> str:
    """Challenge-style case ID, e.g. ``BraTS-GLI-90000-000``."""
    return f"BraTS-{cohort}-{number:05d}-{timepoint:03d}"


def make_tumour(brain: np.ndarray, rng: np.random.Generator, config: DemoConfig) -> tuple[np.ndarray, np.ndarray]:
    """A tumour core inside the brain and its dilation (``mask-unhealthy``).

    Returns:
        ``(core, mask_unhealthy)`` bool arrays.

    Raises:
        DemoError: if no tumour fits after ``config.max_attempts`` draws.
    """
    depth = local_edt(brain, brain)
    for _ in range(config.max_attempts):
        blob = random_blob(rng, config.tumour)
        radius = min(blob.shape) / 2.0
        candidates = np.flatnonzero(depth >= radius * config.tumour_depth_fraction)
        if candidates.size == 0:
            continue
        centre = np.unravel_index(candidates[rng.integers(candidates.size)], brain.shape)
        core = paste_centred(blob, centre, brain.shape) & brain
        if not core.any():
            continue
        unhealthy = dilate(core, config.tumour_dilation)
        return core, unhealthy
    raise DemoError(f"no tumour fits into the brain after {config.max_attempts} draws")


def make_healthy(
    brain: np.ndarray,
    unhealthy: np.ndarray,
    rng: np.random.Generator,
    config: DemoConfig,
    lesion: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A healthy region placed by the organisers' rules (see :class:`DemoConfig.placement`).

    With ``lesion`` (a lesion mask) the shape is, with probability ``config.real_shape_probability``, a random
    flip/rotation of that lesion's shape instead of a random blob.

    Returns:
        ``(mask_healthy, placement info)``.

    Raises:
        DemoError: if no shape could be placed after ``config.max_attempts`` shapes.
    """
    # Distances below the rule's minimum are exact; larger ones are only known to be larger (enough here).
    distance = np.full(brain.shape, np.inf)
    add_forbidden_region(distance, unhealthy, config.placement.min_distance_voxels)
    for attempt in range(1, config.max_attempts + 1):
        real = lesion is not None and config.real_shape_probability > 0 and (
            rng.random() < config.real_shape_probability
        )
        shape = augment_real_shape(lesion, rng, ShapeAugmentConfig()) if real else random_blob(rng, config.healthy)
        if not shape.any():
            continue
        result = place_shape(shape, brain, unhealthy, config.placement, rng, distance=distance)
        if result.success and result.mask is not None:
            return result.mask, {
                "shape_draws": attempt,
                "healthy_shape": "lesion" if real else "blob",
                "placement_tries": result.tries,
                "inside_brain_fraction": round(result.inside_brain_fraction, 6),
                "min_distance_to_unhealthy_at_least": config.placement.min_distance_voxels,
            }
        logger.debug("healthy shape %d not placed: %s", attempt, result.reason)
    raise DemoError(f"no healthy region could be placed after {config.max_attempts} shapes")


def make_demo_case(template: TemplateBrain, rng: np.random.Generator, config: DemoConfig) -> DemoCase:
    """Build one case from a template brain.

    Args:
        template: a brain on the BraTS grid.
        rng: the case's random generator.
        config: generator settings.
    """
    image, brain, subject_info = vary_subject(template.image, template.brain, rng, config.subject)
    mirrored = bool(rng.random() < config.mirror_probability)
    if mirrored:
        # Axis 0 is left-right in the BraTS orientation (derived from the affine by load_template).
        image, brain = image[::-1], brain[::-1]
    gain = float(rng.uniform(*config.gain_range))
    scale = config.intensity_reference / float(np.percentile(image[brain], config.intensity_percentile)) * gain
    info_max = np.iinfo(INTENSITY_DTYPE).max
    t1n = np.clip(np.rint(image * scale), 0, info_max)
    t1n = np.where(brain, np.maximum(t1n, MIN_BRAIN_INTENSITY), 0).astype(INTENSITY_DTYPE)
    core, unhealthy = make_tumour(brain, rng, config)
    healthy, placement_info = make_healthy(brain, unhealthy, rng, config, lesion=core)
    mask = healthy | unhealthy
    t1n_voided = np.where(mask, 0, t1n).astype(INTENSITY_DTYPE)
    info = {
        "template": template.name,
        "mirrored": mirrored,
        "intensity_scale": scale,
        "gain": gain,
        "tumour_core_voxels": int(core.sum()),
        "mask_unhealthy_voxels": int(unhealthy.sum()),
        "mask_healthy_voxels": int(healthy.sum()),
        "mask_voxels": int(mask.sum()),
        **placement_info,
    }
    if config.subject.kind != "none":
        info["subject"] = subject_info
    return DemoCase(t1n, t1n_voided, mask, healthy, unhealthy, info)


def _write_volume(path: Path, data: np.ndarray) -> None:
    """Write a ``.nii.gz`` with the BraTS geometry; the bytes depend only on the data (no time stamp)."""
    image = nib.Nifti1Image(data, BRATS_AFFINE)
    image.set_qform(BRATS_AFFINE, code=NIFTI_XFORM_SCANNER)
    image.set_sform(BRATS_AFFINE, code=NIFTI_XFORM_SCANNER)
    image.header.set_xyzt_units("mm", "sec")
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0) as gz:
            holder = nib.FileHolder(fileobj=gz)
            image.to_file_map({"image": holder, "header": holder})


def write_demo_case(out_dir: str | os.PathLike[str], cid: str, case: DemoCase) -> Path:
    """Write the five files of ``case`` into ``out_dir/<cid>/``; returns the case folder."""
    folder = Path(out_dir) / cid
    folder.mkdir(parents=True, exist_ok=True)
    volumes = {
        "t1n": case.t1n,
        "t1n_voided": case.t1n_voided,
        "mask": case.mask.astype(MASK_DTYPE),
        "mask_healthy": case.mask_healthy.astype(MASK_DTYPE),
        "mask_unhealthy": case.mask_unhealthy.astype(MASK_DTYPE),
    }
    for key, data in volumes.items():
        _write_volume(folder / case_file_name(cid, key), data)
    return folder


def make_demo_data(
    out_dir: str | os.PathLike[str],
    n_cases: int,
    seed: int = 0,
    templates: Sequence[str] = tuple(TEMPLATES),
    config: DemoConfig | None = None,
    first_number: int = DEFAULT_FIRST_CASE_NUMBER,
) -> list[Path]:
    """Generate ``n_cases`` cases, cycling through ``templates``, and write them with their licence notices.

    Also writes ``out_dir/demo_cases.json`` (how each case was made) and ``out_dir/LICENSES.md``.

    Args:
        out_dir: output folder (created).
        n_cases: number of cases (>= 1).
        seed: base seed.
        templates: template names, used in turn.
        config: generator settings (default ``DemoConfig()``).
        first_number: case number of the first case.

    Returns:
        The case folders.

    Raises:
        TemplateError: if a template package is not installed.
        DemoError: if a case cannot be generated.
        ValueError: for ``n_cases`` < 1, no templates or unknown templates.
    """
    if n_cases < 1:
        raise ValueError(f"n_cases must be >= 1, got {n_cases}")
    templates = list(templates)
    if not templates:
        raise ValueError("no templates given")
    unknown = [t for t in templates if t not in TEMPLATES]
    if unknown:
        raise ValueError(f"unknown template(s) {unknown}; known templates are {sorted(TEMPLATES)}")
    config = config or DemoConfig()
    out_dir = Path(out_dir)
    loaded: dict[str, TemplateBrain] = {}
    folders: list[Path] = []
    records: list[dict[str, Any]] = []
    for index in range(n_cases):
        name = templates[index % len(templates)]
        if name not in loaded:
            loaded[name] = load_template(name)
        rng = np.random.default_rng(index_seed_sequence(seed, index))
        case = make_demo_case(loaded[name], rng, config)
        cid = case_id(first_number + index)
        folders.append(write_demo_case(out_dir, cid, case))
        records.append({"case_id": cid, "index": index, **case.info})
        logger.info("demo case %s from %s", cid, name)
    used = sorted(set(templates[: max(n_cases, 1)]))
    meta = {"seed": seed, "config": to_dict(config), "cases": records}
    atomic_write_text(out_dir / METADATA_FILE, json.dumps(meta, indent=1) + "\n")
    atomic_write_text(out_dir / LICENCE_FILE, licences_markdown(used))
    return folders


def licences_markdown(templates: Sequence[str]) -> str:
    """Markdown with the licence notice of every template in ``templates``."""
    parts = [
        "# Licences of the brain templates in these cases\n",
        "The T1 volumes in these folders are derived from the brain templates below "
        "(resampled onto the BraTS grid, intensity-scaled, with synthetic masks). Each template's notice is kept "
        "as its terms require.\n",
    ]
    for name in templates:
        parts.append(f"## {name}\n\n```\n{licence_text(name).strip()}\n```\n")
    return "\n".join(parts)


__all__ = [
    "BlobConfig",
    "DEFAULT_FIRST_CASE_NUMBER",
    "DemoCase",
    "DemoConfig",
    "DemoError",
    "case_id",
    "licences_markdown",
    "make_demo_case",
    "make_demo_data",
    "make_healthy",
    "make_tumour",
    "paste_centred",
    "random_blob",
    "write_demo_case",
]
