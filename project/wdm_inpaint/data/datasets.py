"""Datasets and data loaders built from a split file.

Worker processes of a PyTorch ``DataLoader`` hand batches to the main process through shared memory
(``/dev/shm``). Docker gives a container only 64 MB there by default, less than one 256^3 float32 volume, and
a worker then dies with "bus error" or "unable to write to file </torch_...>". The loaders therefore default
to :data:`DEFAULT_LOADER_WORKERS` = 0 (loading in the main process), and :func:`safe_num_workers` lowers a
requested worker count to 0 (with a warning) when ``/dev/shm`` cannot hold the batches in flight. Run the
container with ``--shm-size=4g`` (or ``--ipc=host``) to use workers.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.data import CacheDataset, DataLoader, load_decathlon_datalist
from monai.transforms import Compose

from wdm_inpaint.config import PreprocessConfig, UNetConfig
from wdm_inpaint.data.augment import AugmentConfig
from wdm_inpaint.data.split import SPLIT_LISTS, read_split
from wdm_inpaint.data.transforms import (
    INFERENCE_IMAGE_KEYS,
    INFERENCE_MASK_KEYS,
    TRAINING_IMAGE_KEYS,
    TRAINING_MASK_KEYS,
    build_transforms,
)

logger = logging.getLogger(__name__)

DEFAULT_LOADER_WORKERS = 0
"""Data-loader worker processes by default: 0 survives Docker's 64 MB ``/dev/shm``."""

DEFAULT_CACHE_WORKERS = 1
"""Threads ``CacheDataset`` uses to fill its cache (threads share memory, no ``/dev/shm`` needed)."""

SHM_PATH = Path("/dev/shm")
"""Shared-memory mount used by worker processes to pass tensors."""

SHM_SAFETY_FACTOR = 2.0
"""Shared memory must exceed the bytes in flight by this factor for workers to be kept."""

DEFAULT_PREFETCH_FACTOR = 2
"""Batches each worker prepares ahead (PyTorch's default)."""


def list_keys(list_key: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(image keys, mask keys) loaded for a split list: training/validation use the ground truth, testing
    the challenge inputs."""
    if list_key not in SPLIT_LISTS:
        raise ValueError(f"unknown split list {list_key!r}; use one of {SPLIT_LISTS}")
    if list_key == "testing":
        return INFERENCE_IMAGE_KEYS, INFERENCE_MASK_KEYS
    return TRAINING_IMAGE_KEYS, TRAINING_MASK_KEYS


def build_dataset(
    split_json: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    key: str = "training",
    config: PreprocessConfig | None = None,
    cache_rate: float = 0.0,
    num_workers: int = DEFAULT_CACHE_WORKERS,
    *,
    multiple: int | None = None,
    augment: AugmentConfig | None = None,
    image_keys: Sequence[str] | None = None,
    mask_keys: Sequence[str] | None = None,
    seed: int = 0,
    transforms: Compose | None = None,
    patch_size: Sequence[int] | None = None,
) -> CacheDataset:
    """A MONAI ``CacheDataset`` of one list of a split file.

    Deterministic transforms up to the first random one are cached for ``cache_rate`` of the items; the
    augmentation (only when ``augment`` is given) runs on every access.

    Args:
        split_json: split file (decathlon format, paths relative to ``data_root``).
        data_root: the data folder the paths are relative to.
        key: ``training``, ``validation`` or ``testing``.
        config: preprocessing settings (default ``PreprocessConfig()``).
        cache_rate: fraction of items whose deterministic transforms are cached in RAM (0 = none).
        num_workers: threads filling the cache.
        multiple: grid multiple (default: the default U-Net's ``image_multiple``).
        augment: training augmentation, or None.
        image_keys: override the image keys of ``key`` (e.g. ``("t1n", "t1n_voided")``); ignored with
            ``transforms`` except for the file check.
        mask_keys: override the mask keys of ``key``.
        seed: seed of the augmentation's random state.
        transforms: a ready transform chain instead of building one from the arguments above.
        patch_size: train on random fixed-size patches centred in the first mask (see
            :class:`~wdm_inpaint.data.transforms.RandPatchAroundMaskd`).

    Raises:
        FileNotFoundError: if the split file or a listed file is missing (naming it).
        ValueError: if ``key`` is not a split list, the list is empty or an entry lacks a key.
    """
    split = read_split(split_json)  # validates the file and gives a clear error
    if key not in SPLIT_LISTS:
        raise ValueError(f"unknown split list {key!r}; use one of {SPLIT_LISTS}")
    if not split.get(key):
        raise ValueError(f"{split_json}: the '{key}' list is empty")
    items = load_decathlon_datalist(split_json, is_segmentation=False, data_list_key=key, base_dir=data_root)
    for item, raw in zip(items, split[key]):
        # MONAI joins any value naming an existing path with the root; the case ID names the case folder.
        if "case_id" in raw:
            item["case_id"] = raw["case_id"]
    default_images, default_masks = list_keys(key)
    image_keys = tuple(image_keys if image_keys is not None else default_images)
    mask_keys = tuple(mask_keys if mask_keys is not None else default_masks)
    for item in items:
        for file_key in image_keys + mask_keys:
            if file_key not in item:
                raise ValueError(f"{split_json}: a '{key}' entry ({item.get('case_id', item)}) lacks '{file_key}'")
            if not Path(item[file_key]).is_file():
                raise FileNotFoundError(
                    f"{split_json}: '{key}' entry {item.get('case_id', '')}: {file_key} file not found under "
                    f"{data_root}: {item[file_key]}"
                )
    if transforms is None:
        transforms = build_transforms(
            image_keys,
            mask_keys,
            config or PreprocessConfig(),
            multiple if multiple is not None else UNetConfig().image_multiple,
            augment=augment,
            patch_size=patch_size,
        )
    transforms.set_random_state(seed=seed)
    return CacheDataset(items, transform=transforms, cache_rate=cache_rate, num_workers=num_workers, progress=False)


def shm_bytes(path: Path = SHM_PATH) -> int | None:
    """Size of the shared-memory mount in bytes, or None where there is none (e.g. not Linux)."""
    try:
        return shutil.disk_usage(path).total
    except OSError:
        return None


def safe_num_workers(requested: int, batch_bytes: int, prefetch_factor: int = DEFAULT_PREFETCH_FACTOR) -> int:
    """``requested`` worker processes, or 0 where ``/dev/shm`` cannot hold the batches in flight.

    Args:
        requested: worker processes asked for.
        batch_bytes: bytes of one collated batch.
        prefetch_factor: batches each worker prepares ahead.
    """
    if requested <= 0:
        return 0
    available = shm_bytes()
    if available is None:
        return requested
    needed = SHM_SAFETY_FACTOR * batch_bytes * prefetch_factor * requested
    if needed > available:
        logger.warning(
            "%s holds %.0f MB, but %d loader workers need about %.0f MB of shared memory; loading in the main "
            "process instead (run Docker with --shm-size=4g or --ipc=host to use workers)",
            SHM_PATH,
            available / 2**20,
            requested,
            needed / 2**20,
        )
        return 0
    return requested


def make_dataloader(
    dataset: torch.utils.data.Dataset,
    batch_size: int = 1,
    shuffle: bool = False,
    num_workers: int = DEFAULT_LOADER_WORKERS,
    seed: int = 0,
    batch_bytes: int | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A MONAI ``DataLoader`` with seeded shuffling and a worker count that fits ``/dev/shm``.

    Args:
        dataset: the dataset.
        batch_size: samples per batch.
        shuffle: shuffle every epoch (with a generator seeded by ``seed``).
        num_workers: requested worker processes (lowered to 0 if ``/dev/shm`` is too small for
            ``batch_bytes``; workers are kept alive between epochs).
        seed: seed of the shuffling generator (MONAI seeds each worker from it).
        batch_bytes: bytes of one collated batch (for the shared-memory check; None skips the check).
        pin_memory: page-locked host memory for faster GPU copies.
    """
    workers = num_workers if batch_bytes is None else safe_num_workers(num_workers, batch_bytes)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        generator=generator,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
    )


__all__ = [
    "DEFAULT_CACHE_WORKERS",
    "DEFAULT_LOADER_WORKERS",
    "build_dataset",
    "list_keys",
    "make_dataloader",
    "safe_num_workers",
    "shm_bytes",
]
