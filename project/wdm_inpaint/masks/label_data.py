"""Training data of the label GAN: tumour-centred crops of label volumes, resized to the generator's 64^3.

Each file is either a BraTS segmentation (labels 1 = necrotic core, 2 = oedema, 3 = enhancing tumour; 4 is
accepted as enhancing tumour of older releases) converted to the channels (TC, WT, ET), or a binary mask such as
``mask-unhealthy`` copied into all three channels. A cube of ``crop_size`` voxels centred on the whole-tumour
bounding box is cut out (zero-padded at the volume border) and resized with nearest-neighbour sampling to 64^3.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from wdm_inpaint.io.nifti import read_nifti
from wdm_inpaint.masks.label_generator import OUTPUT_SIZE
from wdm_inpaint.masks.shapes import GAN_CROP_SIZE, resize_nearest

logger = logging.getLogger(__name__)

TC_LABELS = (1, 3, 4)
"""BraTS labels forming the tumour core."""
WT_LABELS = (1, 2, 3, 4)
"""BraTS labels forming the whole tumour."""
ET_LABELS = (3, 4)
"""BraTS labels forming the enhancing tumour."""

LabelMode = Literal["auto", "brats", "binary"]


@dataclass(frozen=True)
class LabelDataConfig:
    """Where the label GAN's training shapes come from.

    Attributes:
        root: folder searched (recursively) for label files.
        pattern: glob pattern of the label files below ``root`` (e.g. ``*-seg.nii.gz`` or
            ``*-mask-unhealthy.nii.gz``).
        label_mode: ``brats`` (segmentation labels), ``binary`` (any nonzero voxel, copied into all channels) or
            ``auto`` (``brats`` when a file holds a label > 1, else ``binary``).
        crop_size: edge length of the tumour-centred crop before resizing to 64^3.
        flip_probability: probability of flipping each axis of a training sample.
        max_files: use at most this many files (sorted by path; ``None`` = all).
    """

    root: str | None = None
    pattern: str = "*-seg.nii.gz"
    label_mode: LabelMode = "auto"
    crop_size: int = GAN_CROP_SIZE
    flip_probability: float = 0.5
    max_files: int | None = None

    def __post_init__(self) -> None:
        if self.crop_size < 1:
            raise ValueError(f"data.crop_size must be >= 1, got {self.crop_size}")
        if not 0.0 <= self.flip_probability <= 1.0:
            raise ValueError(f"data.flip_probability must be in [0, 1], got {self.flip_probability}")


def labels_to_channels(labels: np.ndarray, mode: LabelMode, source: str = "labels") -> np.ndarray:
    """Convert a label volume to binary (TC, WT, ET) channels.

    Args:
        labels: (D, H, W) integer-valued label volume.
        mode: see :class:`LabelDataConfig`.
        source: name used in error messages.

    Returns:
        (3, D, H, W) bool array.
    """
    values = np.rint(labels).astype(np.int64)
    if mode == "auto":
        mode = "brats" if values.max(initial=0) > 1 else "binary"
    if mode == "binary":
        fg = values != 0
        return np.stack([fg, fg, fg])
    unknown = sorted(set(np.unique(values).tolist()) - {0, *WT_LABELS})
    if unknown:
        raise ValueError(f"{source}: unexpected BraTS labels {unknown} (expected 0, 1, 2, 3 or 4)")
    return np.stack([np.isin(values, TC_LABELS), np.isin(values, WT_LABELS), np.isin(values, ET_LABELS)])


def centred_crop(channels: np.ndarray, crop_size: int) -> np.ndarray:
    """Cube of ``crop_size`` voxels centred on the whole-tumour (channel 1) bounding box, zero-padded.

    Args:
        channels: (C, D, H, W) array.
        crop_size: edge length of the crop.

    Returns:
        (C, crop_size, crop_size, crop_size) array.
    """
    wt = channels[1]
    idx = np.nonzero(wt)
    if not idx[0].size:
        raise ValueError("label volume has no tumour voxel")
    centre = [(int(i.min()) + int(i.max()) + 1) // 2 for i in idx]
    out = np.zeros((channels.shape[0], crop_size, crop_size, crop_size), dtype=channels.dtype)
    src, dst = [], []
    for c, n in zip(centre, wt.shape):
        lo = c - crop_size // 2
        s0, s1 = max(lo, 0), min(lo + crop_size, n)
        src.append(slice(s0, s1))
        dst.append(slice(s0 - lo, s1 - lo))
    out[(slice(None), *dst)] = channels[(slice(None), *src)]
    return out


def prepare_label_file(path: str | os.PathLike[str], mode: LabelMode, crop_size: int) -> np.ndarray:
    """Read one label file and return its (3, 64, 64, 64) uint8 training sample (values 0/1)."""
    volume = read_nifti(path).data
    channels = labels_to_channels(volume, mode, str(path))
    if not channels[1].any():
        raise ValueError(f"{path}: no tumour voxel")
    crop = centred_crop(channels, crop_size)
    return np.stack([resize_nearest(c, (OUTPUT_SIZE,) * 3) for c in crop]).astype(np.uint8)


def find_label_files(config: LabelDataConfig) -> list[Path]:
    """Label files of ``config`` (sorted; at most ``max_files``).

    Raises:
        FileNotFoundError: if ``root`` is unset, missing, or holds no matching file.
    """
    if config.root is None:
        raise FileNotFoundError("data.root is not set: give the folder of label files")
    root = Path(config.root)
    if not root.is_dir():
        raise FileNotFoundError(f"data.root {root} is not a folder")
    files = sorted(p for p in root.rglob(config.pattern) if p.is_file())
    if config.max_files is not None:
        files = files[: config.max_files]
    if not files:
        raise FileNotFoundError(f"no files matching {config.pattern!r} under {root}")
    return files


class LabelShapeDataset(Dataset):
    """Tumour label shapes as ``{"label": uint8 (3, 64, 64, 64)}`` samples with random flips.

    All files are prepared once at construction (about 0.8 MB of memory per file). Empty label files are
    skipped with a warning. The flips are drawn from a generator seeded through :meth:`set_random_state` (the
    trainer calls it with a per-sample seed), so a sample's augmentation depends only on that seed.

    Args:
        config: data settings.
        progress: show a progress bar while preparing.
    """

    def __init__(self, config: LabelDataConfig, progress: bool = False) -> None:
        from tqdm.auto import tqdm

        self.config = config
        self.files: list[Path] = []
        samples = []
        for path in tqdm(find_label_files(config), desc="label shapes", unit="file", disable=not progress):
            try:
                samples.append(prepare_label_file(path, config.label_mode, config.crop_size))
            except ValueError as exc:
                if "no tumour voxel" not in str(exc):
                    raise
                logger.warning("skipping %s: no tumour voxel", path)
                continue
            self.files.append(path)
        if not samples:
            raise FileNotFoundError(f"no label file with a tumour under {config.root}")
        self.samples = torch.from_numpy(np.stack(samples))
        self._rng = np.random.default_rng(0)

    def set_random_state(self, seed: int) -> None:
        """Seed the flips of the next sample."""
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return int(self.samples.shape[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        label = self.samples[index]
        axes = [a + 1 for a in np.flatnonzero(self._rng.random(3) < self.config.flip_probability)]
        if axes:
            label = torch.flip(label, dims=axes)
        return {"label": label}

    def volume_range(self) -> tuple[int, int]:
        """Smallest and largest whole-tumour volume (voxels at 64^3) of the training shapes."""
        volumes = self.samples[:, 1].flatten(1).sum(1)
        return int(volumes.min()), int(volumes.max())


__all__ = [
    "LabelDataConfig",
    "LabelShapeDataset",
    "centred_crop",
    "find_label_files",
    "labels_to_channels",
    "prepare_label_file",
]
