"""``make-masks`` at scale: augment every case in a process pool and merge the samples into a split file.

The per-case placement algorithm is :mod:`wdm_inpaint.masks.placer`. The written samples are merged into
``OUT/augmented_split.json`` (``{"training": [entries]}``; entry paths relative to OUT, originals included as
``t1n`` and ``mask_unhealthy``), which :func:`wdm_inpaint.data.split.load_augmented_entries` reads.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wdm_inpaint.data.split import AUGMENTED_SPLIT_FILE
from wdm_inpaint.io.atomic import atomic_write_text
from wdm_inpaint.masks.placer import CaseContext, CaseFiles, MaskAugmentConfig, augment_case, load_shape, sample_paths

logger = logging.getLogger(__name__)

SPLIT_FILE_NAME = AUGMENTED_SPLIT_FILE
"""Split file written into the output folder (paths inside are relative to that folder)."""

GAN_TORCH_THREADS = 1
"""Torch threads of every process that runs the label generator: the same count in serial and parallel runs
keeps the floating-point results, hence the thresholded shapes, independent of ``--workers``."""

SPLIT_KEY = "training"
"""List of the split file that holds the augmented samples."""

_WORKER: dict[str, Any] = {}
"""Per-process state of the worker pool (set by :func:`_init_worker`)."""


def _init_worker(context: CaseContext, torch_threads: int | None) -> None:
    """Set this process' torch threads and case context (loading the label generator when needed)."""
    if torch_threads is not None:
        torch.set_num_threads(torch_threads)
    if context.generator_needed:
        from wdm_inpaint.masks.label_generator import load_label_generator

        context.generator, _ = load_label_generator(context.gan_path)
    _WORKER["context"] = context


def _augment_in_worker(case: CaseFiles) -> list[dict[str, Any]]:
    """:func:`augment_case` with this process' context (set by :func:`_init_worker`)."""
    return augment_case(case, _WORKER["context"])



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

    context = CaseContext(
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
                results[case.case_id] = _augment_in_worker(case)
                bar.update()
                if on_case:
                    on_case(case.case_id)
        else:
            init_args = (context, GAN_TORCH_THREADS if context.generator_needed else 1)
            with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=init_args) as ex:
                futures = {ex.submit(_augment_in_worker, case): case.case_id for case in cases}
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


__all__ = ["SPLIT_FILE_NAME", "MakeMasksReport", "make_masks", "split_entries", "write_split"]
