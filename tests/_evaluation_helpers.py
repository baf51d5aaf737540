"""Tiny case folders in the challenge layout for the evaluation and submission tests."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

LPS_AFFINE = np.array([[-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 15.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
"""Affine of the tiny test volumes (BraTS-like LPS orientation)."""

SHAPE = (16, 16, 12)
"""Shape of the tiny test volumes (each side exceeds the SSIM window radius)."""


def make_case_arrays(seed: int) -> dict[str, np.ndarray]:
    """Ground truth, masks and voided image of one synthetic case (integers, like BraTS t1n)."""
    rng = np.random.default_rng(seed)
    t1n = np.zeros(SHAPE, dtype=np.int16)
    t1n[2:14, 2:14, 1:11] = rng.integers(100, 1000, size=(12, 12, 10))
    healthy = np.zeros(SHAPE, dtype=np.uint8)
    healthy[4:8, 4:9, 3:7] = 1
    unhealthy = np.zeros(SHAPE, dtype=np.uint8)
    unhealthy[9:13, 9:13, 5:9] = 1
    mask = healthy | unhealthy
    voided = (t1n * (1 - mask)).astype(np.int16)
    return {"t1n": t1n, "mask-healthy": healthy, "mask-unhealthy": unhealthy, "mask": mask, "t1n-voided": voided}


def save(path: Path, data: np.ndarray, affine: np.ndarray = LPS_AFFINE) -> Path:
    """Save ``data`` as NIfTI with ``affine`` (dtype kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def write_case(root: Path, case_id: str, seed: int, ground_truth: bool = True) -> dict[str, np.ndarray]:
    """Write one case folder ``root/case_id``; without ``ground_truth`` only the inference inputs are written."""
    arrays = make_case_arrays(seed)
    keys = list(arrays) if ground_truth else ["t1n-voided", "mask"]
    for key in keys:
        save(root / case_id / f"{case_id}-{key}.nii.gz", arrays[key])
    return arrays


def write_prediction(pred_dir: Path, case_id: str, data: np.ndarray, affine: np.ndarray = LPS_AFFINE) -> Path:
    """Write ``data`` as float32 ``<case_id>-t1n-inference.nii.gz``."""
    return save(pred_dir / f"{case_id}-t1n-inference.nii.gz", np.asarray(data, dtype=np.float32), affine)
