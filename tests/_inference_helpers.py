"""Builders for inference tests: a tiny random-weight checkpoint and synthetic challenge-layout cases."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from wdm_inpaint.checkpoint import save_checkpoint
from wdm_inpaint.config import ModeConfig, PreprocessConfig, UNetConfig, WDMConfig
from wdm_inpaint.models.unet import WDMUNet

TINY_SHAPE = (30, 34, 26)
"""Native shape of the synthetic cases (not a multiple of anything, so padding is exercised)."""

LPS_AFFINE = np.array([[-1.0, 0, 0, 120.0], [0, -1.0, 0, 120.0], [0, 0, 1.0, -70.0], [0, 0, 0, 1]])
"""A BraTS-like (LPS-ish) affine: the model reorients to RAS and back."""


def tiny_config(mode: str = "akh", crop: bool = False) -> WDMConfig:
    """A small model on a grid padded to multiples of 8 (no fixed spatial size); ``crop`` samples around the mask."""
    in_ch = {"default": 8, "akh": 16, "akh_context": 24}[mode]
    return WDMConfig(
        unet=UNetConfig(in_channels=in_ch, model_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, num_groups=4),
        mode=ModeConfig(name=mode),
        preprocess=PreprocessConfig(spatial_size=None, crop=crop),
    )


def make_tiny_checkpoint(path: Path, mode: str = "akh", seed: int = 0, crop: bool = False) -> Path:
    """Save a random-weight tiny model whose output layer is NOT zero (so the model visibly acts)."""
    torch.manual_seed(seed)
    config = tiny_config(mode, crop)
    model = WDMUNet(config.unet)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0 and p.dim() > 1:
                p.normal_(0, 0.02)
    return save_checkpoint(path, model, config, metadata={"purpose": "tests"})


def brain_volume(shape: tuple[int, int, int] = TINY_SHAPE, seed: int = 0) -> np.ndarray:
    """A smooth ellipsoidal 'brain' with intensities roughly 100..900 and zero background."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    r = np.sqrt(((grid / 0.85) ** 2).sum(0))
    tissue = r < 1
    texture = 500 + 300 * np.sin(4 * grid[0]) * np.cos(3 * grid[1]) + 20 * rng.standard_normal(shape)
    return np.where(tissue, texture, 0.0)


def region_mask(shape: tuple[int, int, int] = TINY_SHAPE, centre: tuple[float, ...] = (0.2, -0.1, 0.0),
                radius: float = 0.3) -> np.ndarray:
    """A ball-shaped region inside the brain."""
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    c = np.asarray(centre).reshape(3, 1, 1, 1)
    return (np.sqrt(((grid - c) ** 2).sum(0)) < radius).astype(np.uint8)


def write_case(root: Path, case_id: str, seed: int = 0, affine: np.ndarray = LPS_AFFINE,
               dtype: type = np.float32, with_truth: bool = False) -> Path:
    """Write ``root/<case_id>/`` with ``t1n-voided`` and ``mask`` (and the truth files if asked)."""
    folder = root / case_id
    folder.mkdir(parents=True, exist_ok=True)
    t1n = brain_volume(seed=seed)
    mask = region_mask()
    voided = np.where(mask > 0, 0.0, t1n)
    nib.save(nib.Nifti1Image(voided.astype(dtype), affine), folder / f"{case_id}-t1n-voided.nii.gz")
    nib.save(nib.Nifti1Image(mask, affine), folder / f"{case_id}-mask.nii.gz")
    if with_truth:
        nib.save(nib.Nifti1Image(t1n.astype(np.float32), affine), folder / f"{case_id}-t1n.nii.gz")
        nib.save(nib.Nifti1Image(mask, affine), folder / f"{case_id}-mask-healthy.nii.gz")
        nib.save(nib.Nifti1Image(np.zeros_like(mask), affine), folder / f"{case_id}-mask-unhealthy.nii.gz")
    return folder
