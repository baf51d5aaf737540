"""Datasets of the diffusion-model training run, built from a decathlon-style split file.

Each sample is a dict of plain ``(1, D, H, W)`` float tensors ``t1n`` (in [-1, 1]), ``mask_healthy`` and
``mask_unhealthy`` (in {0, 1}) on the model grid, produced by the chain of :mod:`wdm_inpaint.data.transforms`.
Metadata and non-tensor entries (e.g. a crop box) are dropped so that batches collate with torch's default.
"""

from __future__ import annotations

import logging
from pathlib import Path
import torch
from torch.utils.data import Dataset

from wdm_inpaint.config import ConfigError
from wdm_inpaint.data.datasets import build_dataset
from wdm_inpaint.data.transforms import TRAINING_IMAGE_KEYS, TRAINING_MASK_KEYS
from wdm_inpaint.training.config import TrainConfig

logger = logging.getLogger(__name__)

SAMPLE_KEYS: tuple[str, ...] = TRAINING_IMAGE_KEYS + TRAINING_MASK_KEYS
"""Keys of every training sample."""


class PlainTensorDataset(Dataset):
    """Wraps a dataset of MONAI dicts: keeps :data:`SAMPLE_KEYS` as plain (meta-free) float tensors.

    Forwards ``set_random_state`` to the wrapped dataset's transform, so the trainer can seed augmentation.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.transform = getattr(dataset, "transform", None)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.dataset[index]
        out = {}
        for key in SAMPLE_KEYS:
            value = sample[key]
            value = value.as_tensor() if hasattr(value, "as_tensor") else torch.as_tensor(value)
            out[key] = value.float().contiguous()
        return out


def build_datasets(config: TrainConfig) -> tuple[Dataset, Dataset | None]:
    """Training (cached, augmented) and validation (cached, not augmented) datasets.

    Raises:
        ConfigError: ``data.split_json`` is not set.
        ValueError: the split file or a case entry is malformed (the message names it).
        FileNotFoundError: the split file or an image it names is missing.
    """
    if config.data.split_json is None:
        raise ConfigError("data.split_json is not set: name the split file listing the training cases")
    split_json = Path(config.data.split_json)
    root = Path(config.data.data_root) if config.data.data_root else split_json.parent
    common = {"config": config.model.preprocess, "multiple": config.model.unet.image_multiple, "seed": config.loop.seed}
    train = build_dataset(split_json, root, config.data.train_key, cache_rate=config.data.cache_rate,
                          augment=config.data.augment, patch_size=config.data.patch_size, **common)
    val = None
    if config.data.val_key is not None and config.validation.every > 0:
        val = PlainTensorDataset(build_dataset(split_json, root, config.data.val_key, cache_rate=1.0, **common))
    logger.info("data: %d training cases%s", len(train), f", {len(val)} validation cases" if val else "")
    return PlainTensorDataset(train), val


__all__ = ["PlainTensorDataset", "SAMPLE_KEYS", "build_datasets"]
