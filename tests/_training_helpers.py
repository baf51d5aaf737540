"""Tiny synthetic data and configs shared by the training tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny networks run fastest single-threaded on a shared 2-core machine (import into a test module to use)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


MODE_IN_CHANNELS = {"default": 8, "akh": 16, "akh_context": 24}
"""U-Net input channels of each mode (8 noisy wavelet channels + conditioning)."""

CASE_KEYS = ("t1n", "mask_healthy", "mask_unhealthy")


def synthetic_volumes(size: int, seed: int) -> dict[str, np.ndarray]:
    """A smooth 'head' (ellipsoid with a shading gradient), a healthy box mask and an adjacent tumour box."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, size)] * 3, indexing="ij"))
    radius = np.sqrt((grid[0] / 0.8) ** 2 + (grid[1] / 0.9) ** 2 + (grid[2] / 0.7) ** 2)
    head = (radius < 1).astype(np.float32)
    t1n = head * (600 + 250 * grid[0] + 150 * np.cos(3 * grid[1] + rng.uniform(0, 3)))
    t1n = (t1n + rng.normal(0, 20, t1n.shape) * head).clip(0).astype(np.float32)
    q = size // 4
    lo = rng.integers(q, 2 * q, size=3)
    healthy = np.zeros((size,) * 3, np.float32)
    healthy[lo[0] : lo[0] + q, lo[1] : lo[1] + q, lo[2] : lo[2] + q] = 1
    tumour = np.zeros_like(healthy)
    tumour[lo[0] + q : lo[0] + q + q // 2, lo[1] : lo[1] + q, lo[2] : lo[2] + q] = 1
    return {"t1n": t1n, "mask_healthy": healthy, "mask_unhealthy": tumour}


def write_dataset(root: Path, n_train: int = 3, n_val: int = 1, size: int = 32) -> Path:
    """Write ``n_train + n_val`` NIfTI cases and a decathlon split file; returns the split file."""
    entries = []
    for i in range(n_train + n_val):
        case = f"CASE-{i:03d}"
        (root / case).mkdir(parents=True, exist_ok=True)
        entry: dict[str, Any] = {"case_id": case}
        for key, arr in synthetic_volumes(size, seed=i).items():
            rel = f"{case}/{case}-{key.replace('_', '-')}.nii.gz"
            nib.save(nib.Nifti1Image(arr, np.eye(4)), root / rel)
            entry[key] = rel
        entries.append(entry)
    split = root / "split.json"
    split.write_text(json.dumps({"training": entries[:n_train], "validation": entries[n_train:]}))
    return split


def tiny_model(mode: str, size: int = 32) -> dict[str, Any]:
    """Model section of a tiny CPU config for ``mode``."""
    return {
        "unet": {"in_channels": MODE_IN_CHANNELS[mode], "model_channels": 8, "channel_mult": [1, 2], "num_groups": 4},
        "schedule": {"num_timesteps": 100},
        "mode": {"name": mode},
        "preprocess": {"spatial_size": [size, size, size]},
    }


def tiny_config(mode: str, split_json: Path | None, output_dir: Path, name: str, **sections: Any) -> dict[str, Any]:
    """A complete training config as a mapping; ``sections`` update the top-level sections."""
    config: dict[str, Any] = {
        "name": name,
        "output_dir": str(output_dir),
        "model": tiny_model(mode),
        "data": {"split_json": str(split_json) if split_json else None, "val_key": None},
        "loop": {"max_steps": 6, "device": "cpu", "seed": 3},
        "optim": {"lr": 2e-3},
        "checkpoint": {"every": 2, "keep_last": 2},
        "logging": {"log_every": 1, "image_every": 0, "progress": False},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def write_yaml(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def cli_env() -> dict[str, str]:
    """Environment of CLI subprocesses: one thread each (the test machine has two shared cores)."""
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"})
    return env


def wdm_cli(*args: str) -> list[str]:
    """Command line running ``wdm-inpaint`` with this interpreter."""
    return [sys.executable, "-m", "wdm_inpaint.cli.main", *args]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(wdm_cli(*args), env=cli_env(), capture_output=True, text=True, timeout=timeout)


def synthetic_batches(
    mode: str, n: int, batch_size: int = 1, size: int = 16, seed: int = 0
) -> list[dict[str, torch.Tensor]]:
    """In-memory batches in model space ([-1, 1] images, {0, 1} masks)."""
    batches = []
    for i in range(n):
        samples = [synthetic_volumes(size, seed * 1000 + i * batch_size + j) for j in range(batch_size)]
        batch = {}
        for key in CASE_KEYS:
            arr = np.stack([s[key] for s in samples])[:, None]
            if key == "t1n":
                arr = arr / arr.max() * 2 - 1
            batch[key] = torch.from_numpy(arr.astype(np.float32))
        batches.append(batch)
    return batches
