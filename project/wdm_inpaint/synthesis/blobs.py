"""Random smooth blobs (tumour and healthy-region shapes) and the mask operations the demo cases need.

Shapes are boolean arrays; every function that draws takes a ``numpy.random.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

BLOB_PAD = 3
"""Extra voxels around a blob's nominal extent in the window it is drawn in."""


@dataclass(frozen=True)
class BlobConfig:
    """A random smooth blob: a perturbed ellipsoid.

    Attributes:
        radius_range: range of the mean radius, voxels.
        aspect_range: range of the per-axis scale factors (anisotropy).
        roughness: weight of the surface perturbation (0 = ellipsoid).
        noise_sigma: smoothing sigma of the perturbation noise, voxels.
    """

    radius_range: tuple[float, float]
    aspect_range: tuple[float, float] = (0.75, 1.3)
    roughness: float = 0.5
    noise_sigma: float = 3.0

    def __post_init__(self) -> None:
        if not 0 < self.radius_range[0] <= self.radius_range[1]:
            raise ValueError(f"BlobConfig.radius_range must be 0 < low <= high, got {self.radius_range}")
        if not 0 < self.aspect_range[0] <= self.aspect_range[1]:
            raise ValueError(f"BlobConfig.aspect_range must be 0 < low <= high, got {self.aspect_range}")
        if self.roughness < 0 or self.noise_sigma <= 0:
            raise ValueError("BlobConfig.roughness must be >= 0 and noise_sigma > 0")


def random_blob(rng: np.random.Generator, config: BlobConfig) -> np.ndarray:
    """A random smooth, connected, hole-free blob cropped to its foreground.

    Returns:
        (d, h, w) bool array.
    """
    radius = float(rng.uniform(*config.radius_range))
    aspect = rng.uniform(*config.aspect_range, size=3)
    half = int(np.ceil(radius * float(aspect.max()) * (1.0 + config.roughness))) + BLOB_PAD
    size = 2 * half + 1
    coords = np.indices((size, size, size), dtype=np.float64) - half
    r = np.sqrt(sum((coords[i] / aspect[i]) ** 2 for i in range(3))) / radius
    noise = ndimage.gaussian_filter(rng.standard_normal((size, size, size)), config.noise_sigma)
    noise /= max(float(noise.std()), np.finfo(float).eps)
    blob = (1.0 - r + config.roughness * noise) > 0
    labels, _ = ndimage.label(blob)
    centre_label = labels[half, half, half]
    if centre_label == 0:
        blob = r <= 1.0  # the perturbation emptied the centre: fall back to the ellipsoid
    else:
        blob = labels == centre_label
    blob = ndimage.binary_fill_holes(blob)
    idx = np.nonzero(blob)
    return blob[tuple(slice(int(i.min()), int(i.max()) + 1) for i in idx)]


def paste_centred(shape: np.ndarray, centre: Sequence[int], volume_shape: tuple[int, ...]) -> np.ndarray:
    """A volume-sized bool array with ``shape`` centred on ``centre`` (clipped at the volume border)."""
    out = np.zeros(volume_shape, dtype=bool)
    src, dst = [], []
    for c, s, n in zip(centre, shape.shape, volume_shape):
        start = int(c) - s // 2
        lo, hi = max(start, 0), min(start + s, n)
        if hi <= lo:
            return out
        dst.append(slice(lo, hi))
        src.append(slice(lo - start, hi - start))
    out[tuple(dst)] = shape[tuple(src)]
    return out


def bounding_box(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    idx = np.nonzero(mask)
    return tuple(slice(max(int(i.min()) - pad, 0), min(int(i.max()) + 1 + pad, n)) for i, n in zip(idx, mask.shape))


def local_edt(inside: np.ndarray, region: np.ndarray, pad: int = 1) -> np.ndarray:
    """Euclidean distance of ``inside`` voxels to the nearest non-``inside`` voxel, computed in the bounding box
    of ``region`` grown by ``pad`` (exact when ``inside`` lies within ``region``; 0 elsewhere)."""
    out = np.zeros(inside.shape)
    box = bounding_box(region, pad)
    out[box] = ndimage.distance_transform_edt(inside[box])
    return out


def dilate(mask: np.ndarray, radius: float) -> np.ndarray:
    """Voxels within Euclidean distance ``radius`` of ``mask`` (a distance-transform dilation)."""
    out = np.zeros(mask.shape, dtype=bool)
    if not mask.any():
        return out
    box = bounding_box(mask, int(np.ceil(radius)) + 1)
    out[box] = ndimage.distance_transform_edt(~mask[box]) <= radius
    return out


__all__ = ["BLOB_PAD", "BlobConfig", "bounding_box", "dilate", "local_edt", "paste_centred", "random_blob"]
