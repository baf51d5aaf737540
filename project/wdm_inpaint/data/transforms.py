"""MONAI transform chains for training and batch inference.

Both chains load NIfTI files, make them channel-first float32, reorient to the model orientation, pad/crop to
the model grid and scale the image to [-1, 1] with the same quantile clipping as
:func:`wdm_inpaint.data.preprocess.preprocess` (the numpy path used for single-case inference; a test checks
that both give the same tensors). Masks are binarised, never scaled.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import (
    AsDiscreted,
    Compose,
    DivisiblePadd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    Orientationd,
    Randomizable,
    ResizeWithPadOrCropd,
)
from monai.utils import convert_to_dst_type

from wdm_inpaint.config import PreprocessConfig
from wdm_inpaint.data.augment import AugmentConfig, build_augmentation
from wdm_inpaint.data.cropping import CropBox, crop, mask_crop_box
from wdm_inpaint.data.grid import PAD_VALUE
from wdm_inpaint.data.intensity import quantile_range, scale_to_model
from wdm_inpaint.data.preprocess import MASK_THRESHOLD

TRAINING_IMAGE_KEYS: tuple[str, ...] = ("t1n",)
"""Intensity images of a training sample."""

TRAINING_MASK_KEYS: tuple[str, ...] = ("mask_healthy", "mask_unhealthy")
"""Masks of a training sample."""

INFERENCE_IMAGE_KEYS: tuple[str, ...] = ("t1n_voided",)
"""Intensity images of an inference sample."""

INFERENCE_MASK_KEYS: tuple[str, ...] = ("mask",)
"""Masks of an inference sample."""

NIFTI_READER = "NibabelReader"
"""MONAI reader for NIfTI files (its affines follow nibabel's RAS+ world convention, like preprocess)."""

AXIS_LABELS: tuple[tuple[str, str], ...] = (("L", "R"), ("P", "A"), ("I", "S"))
"""Axis-code letters (negative, positive direction) of nibabel's RAS+ world, used by ``Orientationd``."""


class QuantileClipScaled(MapTransform):
    """Clip each image to its lower/upper quantile and scale min-max to [-1, 1].

    The quantiles are computed over the whole volume given (after padding, zeros included), as in
    :func:`wdm_inpaint.data.preprocess.preprocess`.
    """

    def __init__(
        self, keys: KeysCollection, lower_quantile: float, upper_quantile: float, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if not 0.0 <= lower_quantile < upper_quantile <= 1.0:
            raise ValueError(f"need 0 <= lower_quantile < upper_quantile <= 1, got {lower_quantile}, {upper_quantile}")
        self.lower_quantile = lower_quantile
        self.upper_quantile = upper_quantile

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            arr = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
            low, high = quantile_range(arr, self.lower_quantile, self.upper_quantile)
            scaled = scale_to_model(arr, low, high).astype(np.float32)
            d[key] = convert_to_dst_type(scaled, dst=img, dtype=torch.float32)[0]
        return d


class CropAroundMaskd(MapTransform):
    """Crop every key to a box around the union of ``source_keys`` masks (margin, sizes rounded to a multiple).

    The box is stored under ``box_key`` (a :class:`~wdm_inpaint.data.cropping.CropBox`) so the crop can be
    undone with :func:`~wdm_inpaint.data.cropping.uncrop`.
    """

    def __init__(
        self,
        keys: KeysCollection,
        source_keys: Sequence[str],
        margin: int,
        multiple: int,
        box_key: str = "crop_box",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_keys = list(source_keys)
        self.margin = margin
        self.multiple = multiple
        self.box_key = box_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        masks = [torch.as_tensor(d[k]) for k in self.source_keys if k in d]
        if not masks:
            raise KeyError(f"none of the crop source keys {self.source_keys} is in the sample")
        union = torch.stack([m >= MASK_THRESHOLD for m in masks]).any(dim=0)
        box = mask_crop_box(union, self.margin, self.multiple)
        for key in self.key_iterator(d):
            d[key] = crop(d[key], box)
        d[self.box_key] = box
        return d


class RandPatchAroundMaskd(Randomizable, MapTransform):
    """Crop every key to a fixed-size patch centred on a random voxel of ``label_key`` (shifted to fit the volume).

    Training on small patches around the region that carries the loss makes each step cheap; the U-Net is fully
    convolutional, so it then runs on larger crops or whole volumes at inference. A sample whose label is empty
    gets a patch centred on the volume.
    """

    def __init__(self, keys: KeysCollection, label_key: str, patch_size: Sequence[int],
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if len(patch_size) != 3 or any(int(p) < 1 for p in patch_size):
            raise ValueError(f"patch_size must be three positive sizes, got {tuple(patch_size)}")
        self.label_key = label_key
        self.patch_size = tuple(int(p) for p in patch_size)
        self._u = 0.0

    def randomize(self, data: Any = None) -> None:
        self._u = float(self.R.random_sample())

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        label = torch.as_tensor(d[self.label_key])
        grid = tuple(int(s) for s in label.shape[-3:])
        inside = torch.nonzero(label.reshape(-1, *grid).amax(0) >= MASK_THRESHOLD)
        if len(inside):
            centre = inside[min(int(self._u * len(inside)), len(inside) - 1)].tolist()
        else:
            centre = [g // 2 for g in grid]
        size = tuple(min(p, g) for p, g in zip(self.patch_size, grid))
        start = tuple(min(max(c - n // 2, 0), g - n) for c, n, g in zip(centre, size, grid))
        box = CropBox(start, size, grid)  # type: ignore[arg-type]
        for key in self.key_iterator(d):
            d[key] = crop(d[key], box)
        return d


def _pad_or_crop(keys: list[str], config: PreprocessConfig, multiple: int) -> MapTransform:
    if config.spatial_size is None:
        return DivisiblePadd(keys=keys, k=multiple, mode="constant", value=PAD_VALUE, method="symmetric")
    bad = [s for s in config.spatial_size if s % multiple]
    if bad:
        raise ValueError(
            f"PreprocessConfig.spatial_size {tuple(config.spatial_size)} must be divisible by {multiple} on every axis"
        )
    return ResizeWithPadOrCropd(keys=keys, spatial_size=config.spatial_size, mode="constant", value=PAD_VALUE)


def build_transforms(
    image_keys: Sequence[str],
    mask_keys: Sequence[str],
    config: PreprocessConfig,
    multiple: int,
    augment: AugmentConfig | None = None,
    load: bool = True,
    patch_size: Sequence[int] | None = None,
) -> Compose:
    """A load -> reorient -> [augment] -> pad/crop -> normalise -> [crop around mask] -> [random patch] chain.

    With ``patch_size`` the augmentation moves after the random patch (it then acts on the small normalised
    patch, and every deterministic step before it is cached).

    Args:
        image_keys: keys of intensity images (quantile-scaled to [-1, 1]).
        mask_keys: keys of binary masks (binarised at :data:`MASK_THRESHOLD`).
        config: orientation, grid, quantiles and the optional crop around the masks (``config.crop``).
        multiple: grid sizes must be multiples of this (``UNetConfig.image_multiple``).
        augment: training augmentation (None: none).
        load: start with ``LoadImaged`` (False when the dictionaries already hold arrays with metadata).

    Returns:
        A MONAI ``Compose``; call ``set_random_state(seed)`` for reproducible augmentation.
    """
    image_keys = list(image_keys)
    mask_keys = list(mask_keys)
    keys = image_keys + mask_keys
    chain: list = []
    if load:
        chain.append(LoadImaged(keys=keys, reader=NIFTI_READER, image_only=True))
    chain += [
        EnsureChannelFirstd(keys=keys),
        EnsureTyped(keys=keys, dtype=torch.float32, track_meta=True),
        Orientationd(keys=keys, axcodes=config.orientation, labels=AXIS_LABELS),
    ]
    if augment is not None and patch_size is None:
        chain.append(build_augmentation(image_keys, mask_keys, augment))
    chain.append(_pad_or_crop(keys, config, multiple))
    if image_keys:
        chain.append(QuantileClipScaled(image_keys, config.lower_quantile, config.upper_quantile))
    if mask_keys:
        chain.append(AsDiscreted(keys=mask_keys, threshold=MASK_THRESHOLD))
    if config.crop and mask_keys:
        chain.append(CropAroundMaskd(keys=keys, source_keys=mask_keys, margin=config.crop_margin, multiple=multiple))
    if patch_size is not None:
        bad = [p for p in patch_size if p % multiple]
        if bad or not mask_keys:
            raise ValueError(f"patch_size {tuple(patch_size)} needs mask keys and sizes divisible by {multiple}")
        chain.append(RandPatchAroundMaskd(keys=keys, label_key=mask_keys[0], patch_size=patch_size))
        if augment is not None:
            chain.append(build_augmentation(image_keys, mask_keys, augment))
    return Compose(chain)


def build_training_transforms(
    config: PreprocessConfig,
    multiple: int,
    augment: AugmentConfig | None = None,
    image_keys: Sequence[str] = TRAINING_IMAGE_KEYS,
    mask_keys: Sequence[str] = TRAINING_MASK_KEYS,
) -> Compose:
    """The training chain (keys ``t1n``, ``mask_healthy``, ``mask_unhealthy`` by default)."""
    return build_transforms(image_keys, mask_keys, config, multiple, augment=augment)


def build_inference_transforms(config: PreprocessConfig, multiple: int) -> Compose:
    """The batch-inference chain (keys ``t1n_voided`` and ``mask``), no augmentation."""
    return build_transforms(INFERENCE_IMAGE_KEYS, INFERENCE_MASK_KEYS, config, multiple)


__all__ = [
    "CropAroundMaskd",
    "RandPatchAroundMaskd",
    "INFERENCE_IMAGE_KEYS",
    "INFERENCE_MASK_KEYS",
    "QuantileClipScaled",
    "TRAINING_IMAGE_KEYS",
    "TRAINING_MASK_KEYS",
    "build_inference_transforms",
    "build_training_transforms",
    "build_transforms",
]
