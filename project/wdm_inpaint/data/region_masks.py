"""Random inpainting regions drawn on the fly: a training patch gets a new healthy mask anywhere in its brain.

A few template brains give few distinct anatomies, so the variety of training examples comes mostly from where
the hole is. :class:`RandRegionMaskd` replaces the healthy mask of a sample, with some probability, by a random
smooth blob (an ellipsoid with random axes whose surface is perturbed by a smooth random field), centred on a
random brain voxel at least the blob's radius from the patch border, at least ``min_inside_brain`` inside the
brain and outside the other masks (the tumour).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.transforms import MapTransform, Randomizable
from monai.utils import convert_to_dst_type

BRAIN_LEVEL = -1.0
"""Normalised intensity of background voxels: a voxel is brain when its intensity lies above this level."""

BRAIN_EPSILON = 1e-3
"""Tolerance above :data:`BRAIN_LEVEL` for a voxel to count as brain."""

COARSE_NOISE_SIZE = 4
"""Edge of the coarse random field that perturbs the blob's surface (upsampled trilinearly)."""

MAX_TRIES = 10
"""Blob placements tried before the sample keeps its own healthy mask."""


class RandRegionMaskd(Randomizable, MapTransform):
    """With probability ``prob``, replace ``healthy_key`` by a random blob inside the brain of ``image_key``.

    Args:
        healthy_key: the mask to replace (``(1, D, H, W)``, values in {0, 1}).
        image_key: the normalised image whose voxels above :data:`BRAIN_LEVEL` are brain.
        avoid_keys: masks the blob must not overlap (it is cut out of them).
        prob: probability of drawing a new region.
        radius_range: mean blob radius range, voxels.
        aspect_range: per-axis scale range of the radius.
        roughness: amplitude of the surface perturbation (fraction of the radius).
        min_inside_brain: fraction of the blob that must lie in the brain.
    """

    def __init__(
        self,
        healthy_key: str,
        image_key: str,
        avoid_keys: Sequence[str] = (),
        prob: float = 0.5,
        radius_range: tuple[float, float] = (5.0, 14.0),
        aspect_range: tuple[float, float] = (0.7, 1.4),
        roughness: float = 0.3,
        min_inside_brain: float = 0.75,
    ) -> None:
        MapTransform.__init__(self, [healthy_key])
        self.healthy_key = healthy_key
        self.image_key = image_key
        self.avoid_keys = list(avoid_keys)
        self.prob = prob
        self.radius_range = radius_range
        self.aspect_range = aspect_range
        self.roughness = roughness
        self.min_inside_brain = min_inside_brain

    def randomize(self, data: Any = None) -> None:  # noqa: D102 - drawn inside __call__
        pass

    def _blob(self, grid: tuple[int, int, int]) -> np.ndarray | None:
        radius = float(self.R.uniform(*self.radius_range))
        radii = radius * self.R.uniform(*self.aspect_range, size=3)
        reach = np.ceil(radii * (1 + self.roughness)).astype(int)
        if any(2 * r + 1 > g for r, g in zip(reach, grid)):
            return None
        centre = [int(self.R.randint(r, g - r)) for r, g in zip(reach, grid)]
        coords = np.meshgrid(*[np.arange(g, dtype=np.float32) for g in grid], indexing="ij")
        distance = np.sqrt(sum(((c - m) / r) ** 2 for c, m, r in zip(coords, centre, radii)))
        coarse = torch.from_numpy(self.R.standard_normal((1, 1) + (COARSE_NOISE_SIZE,) * 3).astype(np.float32))
        field = F.interpolate(coarse, size=grid, mode="trilinear", align_corners=False)[0, 0].numpy()
        return (distance - self.roughness * field) <= 1.0

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        if self.R.random_sample() >= self.prob:
            return d
        image = torch.as_tensor(d[self.image_key])
        brain = (image[0] > BRAIN_LEVEL + BRAIN_EPSILON).cpu().numpy()
        avoid = np.zeros(brain.shape, dtype=bool)
        for key in self.avoid_keys:
            avoid |= torch.as_tensor(d[key])[0].cpu().numpy() > 0
        grid = tuple(int(s) for s in brain.shape)
        for _ in range(MAX_TRIES):
            blob = self._blob(grid)  # type: ignore[arg-type]
            if blob is None or not blob.any():
                continue
            blob &= ~avoid
            if blob.sum() == 0 or (blob & brain).sum() < self.min_inside_brain * blob.sum():
                continue
            new = blob[None].astype(np.float32)
            d[self.healthy_key] = convert_to_dst_type(new, dst=d[self.healthy_key], dtype=torch.float32)[0]
            return d
        return d


__all__ = ["RandRegionMaskd"]
