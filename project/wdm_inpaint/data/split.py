"""Split files in the MONAI decathlon format.

A split file is a JSON object with the lists ``training``, ``validation`` and ``testing``; each entry maps
case-file keys (``t1n``, ``mask_healthy``, ``mask_unhealthy``, ``t1n_voided``, ``mask``) to paths relative to
the data root, plus ``case_id`` and optionally ``fold`` (k-fold cross-validation) and ``augmented`` (a
synthetic sample). ``monai.data.load_decathlon_datalist(path, data_list_key=..., base_dir=DATA_ROOT)`` reads
it.

* Cases with the training files (``t1n``, ``mask_healthy``, ``mask_unhealthy``) are shuffled with the seed and
  split into ``training``/``validation`` by ``val_fraction``, or, with ``folds``, all go to ``training`` with a
  ``fold`` number (round robin over the shuffled order) and ``validation`` stays empty.
* Cases with only the inference files (``t1n_voided``, ``mask``) go to ``testing``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wdm_inpaint.data.cases import ALL_KEYS, INFERENCE_KEYS, TRAINING_KEYS, Case, discover_cases
from wdm_inpaint.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

SPLIT_LISTS: tuple[str, ...] = ("training", "validation", "testing")
"""Lists of a split file."""

DEFAULT_VAL_FRACTION = 0.1
"""Fraction of the training-capable cases held out for validation when no folds are asked for."""

AUGMENTED_REQUIRED_KEYS: tuple[str, ...] = TRAINING_KEYS
"""Files an augmented sample must name (``t1n_voided`` and ``mask`` are kept when present)."""

AUGMENTED_SPLIT_FILE = "augmented_split.json"
"""Split file a mask-augmentation output folder holds (``{"training": [entries]}``, paths relative to it)."""

AUGMENTED_METADATA_FORMAT = "wdm-inpaint/augmented-sample"
"""``format`` marker of a per-sample metadata JSON of the mask augmentation."""


class SplitError(ValueError):
    """A split cannot be built or read; the message says why."""


def _relative(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()


def case_entry(case: Case, root: Path, keys: Iterable[str] = ALL_KEYS) -> dict[str, Any]:
    """Split entry of a case: ``case_id`` and the present files of ``keys``, relative to ``root``."""
    entry: dict[str, Any] = {"case_id": case.id}
    for key in keys:
        if key in case.paths:
            entry[key] = _relative(case.paths[key], root)
    return entry


def build_split(
    root: str | os.PathLike[str],
    val_fraction: float | None = DEFAULT_VAL_FRACTION,
    folds: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Build a split of the cases of a data folder.

    Args:
        root: folder of case folders (challenge layout).
        val_fraction: fraction in [0, 1) of training-capable cases for ``validation`` (ignored with ``folds``).
        folds: number of cross-validation folds (>= 2), or None.
        seed: seed of the case shuffle.

    Returns:
        The split as a JSON-ready dictionary (also holding ``seed``, ``val_fraction``, ``folds``).

    Raises:
        SplitError: for invalid fractions/folds or a folder without usable cases.
    """
    root = Path(root)
    if folds is not None:
        if folds < 2:
            raise SplitError(f"folds must be >= 2, got {folds}")
        val_fraction = None
    elif val_fraction is None or not 0.0 <= val_fraction < 1.0:
        raise SplitError(f"val_fraction must be in [0, 1), got {val_fraction}")
    scan = discover_cases(root, expected=())
    trainable = [c for c in scan.cases if c.has(TRAINING_KEYS)]
    testing = [c for c in scan.cases if not c.has(TRAINING_KEYS) and c.has(INFERENCE_KEYS)]
    skipped = [c.id for c in scan.cases if c not in trainable and c not in testing]
    if skipped:
        logger.warning("%d case(s) lack both the training and the inference files, skipped: %s", len(skipped), skipped)
    if not trainable and not testing:
        raise SplitError(f"{root}: no usable case folders found")
    order = np.random.default_rng(seed).permutation(len(trainable))
    shuffled = [trainable[i] for i in order]
    split: dict[str, Any] = {
        "name": "wdm-inpaint",
        "description": "BraTS local-synthesis split; paths are relative to the data root",
        "seed": int(seed),
        "val_fraction": val_fraction,
        "folds": folds,
    }
    if folds is not None:
        if folds > len(shuffled):
            raise SplitError(f"folds={folds} exceeds the {len(shuffled)} training case(s) in {root}")
        training = [{**case_entry(c, root), "fold": i % folds} for i, c in enumerate(shuffled)]
        validation: list[dict[str, Any]] = []
    else:
        n_val = int(round(len(shuffled) * float(val_fraction or 0.0)))
        n_val = min(n_val, max(len(shuffled) - 1, 0))
        validation = [case_entry(c, root) for c in shuffled[:n_val]]
        training = [case_entry(c, root) for c in shuffled[n_val:]]
    split["training"] = sorted(training, key=lambda e: e["case_id"])
    split["validation"] = sorted(validation, key=lambda e: e["case_id"])
    split["testing"] = [case_entry(c, root, INFERENCE_KEYS) for c in testing]
    split["numTraining"] = len(split["training"])
    split["numTest"] = len(split["testing"])
    return split


def append_augmented(
    split: Mapping[str, Any], entries: Sequence[Mapping[str, Any]], list_key: str = "training"
) -> dict[str, Any]:
    """A copy of ``split`` with augmented entries appended to ``list_key`` (marked ``augmented: true``).

    Args:
        split: a split dictionary.
        entries: dictionaries naming at least ``t1n``, ``mask_healthy`` and ``mask_unhealthy`` (paths already
            relative to the split's data root); ``t1n_voided``, ``mask``, ``case_id`` and ``fold`` are kept.
        list_key: the list to extend.

    Raises:
        SplitError: if an entry lacks a required key or ``list_key`` is not a split list.
    """
    if list_key not in SPLIT_LISTS:
        raise SplitError(f"list_key must be one of {SPLIT_LISTS}, got {list_key!r}")
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in split.items()}
    target = out.setdefault(list_key, [])
    kept = set(ALL_KEYS) | {"case_id", "fold"}
    for i, entry in enumerate(entries):
        missing = [k for k in AUGMENTED_REQUIRED_KEYS if k not in entry]
        if missing:
            raise SplitError(f"augmented entry {i} lacks {missing}: {dict(entry)}")
        target.append({**{k: v for k, v in entry.items() if k in kept}, "augmented": True})
    if list_key == "training":
        out["numTraining"] = len(target)
    return out


def _entries_from_split_file(path: Path, root: Path) -> list[dict[str, Any]]:
    data = _read_json(path)
    items = data.get("training") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise SplitError(f"{path}: expected a list of entries or a 'training' list")
    entries = []
    for item in items:
        if not isinstance(item, dict):
            raise SplitError(f"{path}: entries must be objects, got {item!r}")
        entry = dict(item)
        for key in ALL_KEYS:
            if key in entry:
                entry[key] = _relative(path.parent / entry[key], root)
        entries.append(entry)
    return entries


def _entry_from_metadata(path: Path, meta: Mapping[str, Any], root: Path) -> dict[str, Any] | None:
    if not meta.get("written"):
        return None
    entry: dict[str, Any] = {"case_id": meta.get("case_id")}
    for key in ("t1n", "mask_unhealthy"):
        entry[key] = _relative(path.parent / meta[key], root)
    for key, name in meta.get("files", {}).items():
        if key in ALL_KEYS:
            entry[key] = _relative(path.parent / name, root)
    return entry


def load_augmented_entries(source: str | os.PathLike[str], root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read augmented-sample entries and make their paths relative to the data root ``root``.

    ``source`` may be: a split-style JSON (``{"training": [...]}`` or a list; paths relative to its folder),
    a per-sample metadata JSON (``format`` :data:`AUGMENTED_METADATA_FORMAT`), or a folder holding
    :data:`AUGMENTED_SPLIT_FILE` or, failing that, per-sample metadata JSON files.

    Raises:
        FileNotFoundError: if ``source`` does not exist.
        SplitError: if nothing usable is found or a file is malformed.
    """
    source = Path(source)
    root = Path(root)
    if not source.exists():
        raise FileNotFoundError(f"{source}: augmented samples not found")
    if source.is_dir():
        split_file = source / AUGMENTED_SPLIT_FILE
        if split_file.is_file():
            return _entries_from_split_file(split_file, root)
        entries = []
        for meta_path in sorted(source.rglob("*.json")):
            data = _read_json(meta_path)
            if isinstance(data, dict) and data.get("format") == AUGMENTED_METADATA_FORMAT:
                entry = _entry_from_metadata(meta_path, data, root)
                if entry is not None:
                    entries.append(entry)
        if not entries:
            raise SplitError(f"{source}: no {AUGMENTED_SPLIT_FILE} and no written augmented-sample metadata")
        return entries
    data = _read_json(source)
    if isinstance(data, dict) and data.get("format") == AUGMENTED_METADATA_FORMAT:
        entry = _entry_from_metadata(source, data, root)
        return [] if entry is None else [entry]
    return _entries_from_split_file(source, root)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise SplitError(f"{path}: not valid JSON ({exc})") from exc


def write_split(split: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a split as indented JSON, atomically."""
    path = Path(path)
    atomic_write_text(path, json.dumps(split, indent=1) + "\n")
    return path


def read_split(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a split file and check its lists.

    Raises:
        FileNotFoundError: if the file does not exist.
        SplitError: if it is not JSON or a list is not a list of objects.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: split file not found")
    data = _read_json(path)
    if not isinstance(data, dict):
        raise SplitError(f"{path}: expected a JSON object with {list(SPLIT_LISTS)} lists")
    for key in SPLIT_LISTS:
        items = data.get(key, [])
        if not isinstance(items, list) or not all(isinstance(e, dict) for e in items):
            raise SplitError(f"{path}: '{key}' must be a list of objects")
    return data


__all__ = [
    "AUGMENTED_METADATA_FORMAT",
    "AUGMENTED_REQUIRED_KEYS",
    "AUGMENTED_SPLIT_FILE",
    "DEFAULT_VAL_FRACTION",
    "SPLIT_LISTS",
    "SplitError",
    "append_augmented",
    "build_split",
    "case_entry",
    "load_augmented_entries",
    "read_split",
    "write_split",
]
