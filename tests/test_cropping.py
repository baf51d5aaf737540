"""Crop boxes: one per group of far-apart components, disjoint, never larger than the single box; and their use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from _inference_helpers import brain_volume
from wdm_inpaint.checkpoint import save_checkpoint
from wdm_inpaint.config import ModeConfig, PreprocessConfig, UNetConfig, WDMConfig
from wdm_inpaint.data.cropping import (
    MAX_SPLIT_COMPONENTS,
    WAVELET_BLOCK,
    CropBox,
    box_around,
    mask_crop_box,
    mask_crop_boxes,
)
from wdm_inpaint.inference.inpainter import Inpainter
from wdm_inpaint.inference.options import InferenceOptions
from wdm_inpaint.models.unet import WDMUNet

MULTIPLE = 8
MARGIN = 4


def ball(grid: tuple[int, int, int], centre: tuple[int, int, int], radius: float) -> np.ndarray:
    idx = np.indices(grid)
    c = np.asarray(centre).reshape(3, 1, 1, 1)
    return np.sqrt(((idx - c) ** 2).sum(0)) <= radius


def covered_once(mask: np.ndarray, boxes: list[CropBox]) -> bool:
    count = np.zeros(mask.shape, dtype=int)
    for box in boxes:
        count[box.slices] += 1
    return bool((count[mask] == 1).all())


def test_far_apart_components_get_one_box_each() -> None:
    grid = (96, 48, 40)
    a, b = ball(grid, (10, 20, 20), 4), ball(grid, (84, 24, 18), 5)
    boxes = mask_crop_boxes(a | b, MARGIN, MULTIPLE)
    single = mask_crop_box(a | b, MARGIN, MULTIPLE)
    assert len(boxes) == 2
    assert not boxes[0].overlaps(boxes[1])
    assert boxes[0] == mask_crop_box(a, MARGIN, MULTIPLE) and boxes[1] == mask_crop_box(b, MARGIN, MULTIPLE)
    assert sum(box.volume for box in boxes) < single.volume
    assert all(n % MULTIPLE == 0 for box in boxes for n in box.size)


def test_close_components_share_one_box() -> None:
    grid = (64, 48, 40)
    a, b = ball(grid, (20, 20, 20), 4), ball(grid, (32, 22, 20), 4)  # 3 voxels of gap
    assert not (a & b).any()
    boxes = mask_crop_boxes(a | b, MARGIN, MULTIPLE)
    assert boxes == [mask_crop_box(a | b, MARGIN, MULTIPLE)]


def test_boxes_are_disjoint_cover_the_mask_and_never_cost_more_than_one_box() -> None:
    rng = np.random.default_rng(5)
    grid = (64, 56, 48)
    for _ in range(25):
        mask = np.zeros(grid, dtype=bool)
        for _ in range(rng.integers(1, 6)):
            centre = tuple(int(rng.integers(0, s)) for s in grid)
            mask |= ball(grid, centre, float(rng.uniform(1, 6)))  # type: ignore[arg-type]
        boxes = mask_crop_boxes(mask, MARGIN, MULTIPLE)
        assert covered_once(mask, boxes)
        assert all(not p.overlaps(q) for i, p in enumerate(boxes) for q in boxes[i + 1:])
        assert sum(box.volume for box in boxes) <= mask_crop_box(mask, MARGIN, MULTIPLE).volume
        assert all(start % WAVELET_BLOCK == 0 for box in boxes for start in box.start)  # grid-aligned


def test_many_components_and_empty_masks_give_one_box() -> None:
    grid = (40, 40, 40)
    specks = np.zeros(grid, dtype=bool)
    specks[::3, ::3, ::3] = True  # far more isolated voxels than MAX_SPLIT_COMPONENTS
    assert specks.sum() > MAX_SPLIT_COMPONENTS
    assert mask_crop_boxes(specks, MARGIN, MULTIPLE) == [mask_crop_box(specks, MARGIN, MULTIPLE)]
    assert mask_crop_boxes(np.zeros(grid), MARGIN, MULTIPLE)[0].size == grid
    with pytest.raises(ValueError, match="margin"):
        mask_crop_boxes(specks, -1, MULTIPLE)


def test_diagonal_neighbours_are_one_component() -> None:
    grid = (48, 48, 48)
    mask = np.zeros(grid, dtype=bool)
    mask[10, 10, 10] = mask[11, 11, 11] = True  # touch by a corner only: one component (26-neighbourhood)
    assert len(mask_crop_boxes(mask, 0, 1)) == 1


# --------------------------------------------------------------------------- use in inference

GRID = (64, 40, 32)
"""Native shape of the split-crop cases: long along axis 0 so that two regions can be far apart."""


def split_checkpoint(path: Path, crop_split: bool = True) -> Path:
    """Tiny random AKH model that crops; ``percentile`` restore, so the output does not depend on the mask."""
    torch.manual_seed(1)
    config = WDMConfig(
        unet=UNetConfig(in_channels=16, model_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, num_groups=4),
        mode=ModeConfig(name="akh"),
        preprocess=PreprocessConfig(spatial_size=None, crop=True, crop_split=crop_split, crop_margin=MARGIN,
                                    intensity_restore="percentile"),
    )
    model = WDMUNet(config.unet)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().sum() == 0 and p.dim() > 1:
                p.normal_(0, 0.02)
    return save_checkpoint(path, model, config)


def test_inference_samples_each_far_apart_region_on_its_own(tmp_path: Path) -> None:
    ckpt = split_checkpoint(tmp_path / "split.pt")
    t1n = brain_volume(GRID, seed=3).astype(np.float32)
    a, b = ball(GRID, (14, 20, 16), 4), ball(GRID, (50, 20, 16), 4)
    voided = np.where(a | b, 0.0, t1n).astype(np.float32)
    inpainter = Inpainter.from_checkpoint(ckpt, device="cpu", steps=3)
    both = inpainter.inpaint_array(voided, a | b, seed=7)
    assert len(inpainter.last_crop_boxes) == 2
    assert np.array_equal(both[~(a | b)], voided[~(a | b)])
    assert (both[a] > 0).any() and (both[b] > 0).any()  # both regions were filled
    # the first box is sampled with the case seed, exactly as if its region were the only one
    only_a = inpainter.inpaint_array(voided, a, seed=7)
    assert len(inpainter.last_crop_boxes) == 1
    assert np.array_equal(both[a], only_a[a])
    # one box around both regions: same known voxels, a different (but valid) sample
    single = Inpainter.from_checkpoint(split_checkpoint(tmp_path / "one.pt", crop_split=False), device="cpu", steps=3)
    one_box = single.inpaint_array(voided, a | b, seed=7)
    assert len(single.last_crop_boxes) == 1
    assert np.array_equal(one_box[~(a | b)], voided[~(a | b)])
    assert not np.array_equal(one_box[a | b], both[a | b])


def test_box_start_is_aligned_even_when_centring_gives_an_odd_start() -> None:
    grid = (64, 64, 64)
    box = box_around((21, 10, 10), (30, 19, 19), grid, margin=0, multiple=8)  # centred start would be 21
    assert box.start[0] % WAVELET_BLOCK == 0
    assert box.start[0] <= 21 and box.start[0] + box.size[0] >= 30
    tight = box_around((21, 0, 0), (37, 8, 8), grid, margin=0, multiple=8)  # 16 voxels from an odd start
    assert (tight.start[0], tight.size[0]) == (16, 24)  # grown by one multiple to keep the extent inside


class LocalNet(nn.Module):
    """x0 = an affine function of the encoded mask, wavelet by wavelet: no context, no dependence on x_t."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.4))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.scale * x[:, 8:16] - 0.3


def test_crop_inference_equals_whole_volume_inference_for_a_local_network() -> None:
    """With a network that sees only its own Haar block, sampling a box must give the whole-volume result."""
    config = WDMConfig(
        unet=UNetConfig(in_channels=16, model_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, num_groups=4),
        mode=ModeConfig(name="akh"),
        preprocess=PreprocessConfig(spatial_size=None, crop_margin=0),
    )
    t1n = brain_volume(GRID, seed=4).astype(np.float32)
    region = ball(GRID, (22, 18, 14), 5)  # starts at odd voxels: an unaligned box would cut other Haar blocks
    voided = np.where(region, 0.0, t1n).astype(np.float32)
    outputs = {}
    for crop in (True, False):
        options = InferenceOptions(sampler="dpmpp_2m", steps=3, crop=crop, precision="float32")
        inpainter = Inpainter(LocalNet(), config, options, torch.device("cpu"))
        outputs[crop] = inpainter.inpaint_array(voided, region, seed=2)
        if crop:
            assert inpainter.last_crop_boxes and inpainter.last_crop_boxes[0].volume < np.prod(GRID)
    assert np.array_equal(outputs[True][~region], voided[~region])
    np.testing.assert_allclose(outputs[True], outputs[False], rtol=1e-5, atol=1e-4)
