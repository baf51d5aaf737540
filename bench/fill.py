"""Time the classical fills on a full BraTS-sized volume (240 x 240 x 155) with tumour-sized masks.

The volume is a synthetic brain: an ellipsoid of smoothly varying intensity with noise, background 0. The masks
are ellipsoids of about 50k and 200k voxels inside it (a typical and a large inpainting region). Prints the
seconds per fill and the mask size; run with ``python bench/fill.py [--repeats N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import ndimage

from wdm_inpaint.fill import classical_fill

SHAPE = (240, 240, 155)
"""BraTS volume shape."""

BRAIN_RADII = (70.0, 90.0, 65.0)
"""Semi-axes of the synthetic brain ellipsoid, in voxels."""

MASK_RADII = {"typical (~50k voxels)": (25.0, 22.0, 22.0), "large (~200k voxels)": (40.0, 36.0, 34.0)}
"""Semi-axes of the ellipsoidal masks."""

MASK_CENTRE_OFFSET = (20, -15, 10)
"""Offset of the mask centre from the volume centre, in voxels."""


def ellipsoid(shape: tuple[int, ...], centre: np.ndarray, radii: tuple[float, ...]) -> np.ndarray:
    """Boolean ellipsoid."""
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True)) <= 1.0


def synthetic_brain(rng: np.random.Generator) -> np.ndarray:
    """Smooth-textured ellipsoid with noise, float32, background 0."""
    centre = np.array(SHAPE) / 2
    texture = ndimage.gaussian_filter(rng.normal(size=SHAPE), sigma=4.0)
    texture = 600.0 + 2000.0 * texture + rng.normal(0.0, 20.0, SHAPE)
    return np.where(ellipsoid(SHAPE, centre, BRAIN_RADII), texture, 0.0).astype(np.float32)


def main() -> None:
    """Print the timing table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    image = synthetic_brain(rng)
    centre = np.array(SHAPE) / 2 + np.array(MASK_CENTRE_OFFSET)
    print(f"volume {SHAPE}, best of {args.repeats} runs")
    for label, radii in MASK_RADII.items():
        mask = ellipsoid(SHAPE, centre, radii)
        for name in ("harmonic", "mean"):
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                classical_fill(name, image, mask)
                times.append(time.perf_counter() - start)
            print(f"{name:9s} {label:22s} mask {int(mask.sum()):7d} voxels: {min(times):6.2f} s")


if __name__ == "__main__":
    main()
