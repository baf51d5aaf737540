"""Invertible preprocessing: geometry round trips, known voxels, intensity restoration and the mask crop."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import ResizeWithPadOrCrop
from wdm_inpaint.config import PreprocessConfig
from wdm_inpaint.data.cropping import crop, mask_crop_box, uncrop
from wdm_inpaint.data.grid import grid_placement, model_grid_shape, place_in_grid, take_from_grid
from wdm_inpaint.data.intensity import MODEL_MAX, MODEL_MIN, lstsq_gain
from wdm_inpaint.data.preprocess import postprocess, preprocess, to_model_grid, to_native_grid
from wdm_inpaint.io.nifti import read_nifti, write_like

MULTIPLE = 8
AXIS_OF = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}


def affine_for(axcodes: str, zooms: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Affine whose voxel axes point along ``axcodes`` (e.g. "LPS"), with a non-trivial origin."""
    affine = np.eye(4)
    affine[:3, :3] = 0
    for i, code in enumerate(axcodes):
        world, sign = AXIS_OF[code]
        affine[world, i] = sign * zooms[i]
    affine[:3, 3] = (12.5, -7.0, 3.0)
    return affine


def case_arrays(shape: tuple[int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t1n, voided, mask): a positive 'brain' with zero background and a box mask away from the borders."""
    rng = np.random.default_rng(seed)
    t1n = rng.gamma(4.0, 100.0, size=shape)
    t1n[:2] = 0.0
    t1n[:, -3:] = 0.0
    mask = np.zeros(shape, dtype=np.uint8)
    c = [s // 2 for s in shape]
    mask[c[0] - 4 : c[0] + 3, c[1] - 5 : c[1] + 2, c[2] - 3 : c[2] + 4] = 1
    voided = np.where(mask > 0, 0.0, t1n)
    return t1n, voided, mask


def save(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, path)
    return path


@pytest.mark.parametrize("axcodes", ["LPS", "RAS", "LAS", "PIR"])
@pytest.mark.parametrize(
    ("shape", "spatial_size"),
    [((37, 41, 29), None), ((37, 41, 29), (48, 40, 32)), ((16, 24, 8), None)],
)
def test_round_trip_geometry_and_known_voxels(
    tmp_path: Path, axcodes: str, shape: tuple[int, int, int], spatial_size: tuple[int, int, int] | None
) -> None:
    _, voided, mask = case_arrays(shape)
    src = save(tmp_path / "in.nii.gz", voided, affine_for(axcodes))
    vol = read_nifti(src)
    config = PreprocessConfig(spatial_size=spatial_size)
    image_t, mask_t, state = preprocess(vol.data, mask, vol.affine, config, MULTIPLE)
    grid = model_grid_shape(state.oriented_shape, spatial_size, MULTIPLE)
    assert image_t.shape == mask_t.shape == (1, 1, *grid)
    assert all(g % MULTIPLE == 0 for g in grid)
    assert image_t.dtype == torch.float32
    assert float(image_t.min()) == MODEL_MIN and float(image_t.max()) == MODEL_MAX
    assert set(torch.unique(mask_t).tolist()) == {0.0, 1.0}
    assert int(mask_t.sum()) == int(mask.sum())  # the mask survives reorientation and padding/cropping

    for method in ("lstsq", "percentile"):
        out = postprocess(image_t, state, vol.data, mask, intensity_restore=method)  # identity "model"
        assert out.shape == shape
        outside = mask == 0
        # Known voxels are returned bit for bit.
        assert np.array_equal(out[outside].view(np.uint64), vol.data[outside].view(np.uint64))
        assert np.all(out[~outside] >= 0)

    dst = write_like(tmp_path / "out.nii.gz", out, vol.image)
    back, ref = nib.load(dst), nib.load(src)
    assert back.shape == ref.shape
    np.testing.assert_array_equal(back.affine, ref.affine)
    np.testing.assert_array_equal(back.get_qform(), ref.get_qform())
    np.testing.assert_array_equal(back.get_sform(), ref.get_sform())
    assert int(back.header["qform_code"]) == int(ref.header["qform_code"])
    np.testing.assert_array_equal(back.get_fdata()[mask == 0], ref.get_fdata()[mask == 0])


@pytest.mark.parametrize("axcodes", ["LPS", "LAS", "PIR", "ILA"])
def test_geometry_inverse_is_exact(axcodes: str) -> None:
    x = np.random.default_rng(3).normal(size=(13, 10, 7))
    _, _, state = preprocess(np.abs(x), np.zeros(x.shape), affine_for(axcodes), PreprocessConfig(spatial_size=None), 4)
    y = to_model_grid(x, state)
    assert y.shape == state.model_shape
    np.testing.assert_array_equal(to_native_grid(y, state), x)


def test_lps_input_is_flipped_on_the_first_two_axes() -> None:
    """For an LPS affine the model (RAS) array is the input flipped on axes 0 and 1 (no padding needed)."""
    x = np.random.default_rng(4).normal(size=(16, 24, 8))
    _, _, state = preprocess(np.abs(x), np.zeros(x.shape), affine_for("LPS"), PreprocessConfig(spatial_size=None), 8)
    np.testing.assert_array_equal(to_model_grid(x, state), x[::-1, ::-1, :])


def test_orientation_follows_the_affine_not_the_array() -> None:
    """The same physical image stored LPS and RAS gives the same model input."""
    t1n, voided, mask = case_arrays((21, 18, 11), seed=5)
    lps = nib.Nifti1Image(voided, affine_for("LPS"))
    mask_lps = nib.Nifti1Image(mask, affine_for("LPS"))
    to_ras = nib.orientations.ornt_transform(
        nib.io_orientation(lps.affine), nib.orientations.axcodes2ornt(("R", "A", "S"))
    )
    ras, mask_ras = lps.as_reoriented(to_ras), mask_lps.as_reoriented(to_ras)
    assert not np.array_equal(np.asarray(ras.dataobj), voided)
    cfg = PreprocessConfig(spatial_size=None)
    a_img, a_mask, _ = preprocess(voided, mask, lps.affine, cfg, MULTIPLE)
    b_img, b_mask, _ = preprocess(np.asarray(ras.dataobj), np.asarray(mask_ras.dataobj), ras.affine, cfg, MULTIPLE)
    assert torch.equal(a_img, b_img) and torch.equal(a_mask, b_mask)


@pytest.mark.parametrize(
    ("source", "target"), [((37, 41, 29), (40, 48, 32)), ((37, 41, 29), (32, 40, 30)), ((33, 30, 9), (30, 31, 16))]
)
def test_pad_crop_matches_monai_and_inverts(source: tuple[int, ...], target: tuple[int, ...]) -> None:
    x = np.random.default_rng(6).normal(size=source).astype(np.float32)
    placement = grid_placement(source, target)
    y = place_in_grid(x, placement)
    expected = ResizeWithPadOrCrop(spatial_size=target, mode="constant", value=0.0)(torch.from_numpy(x)[None])[0]
    np.testing.assert_array_equal(y, np.asarray(expected))
    back = take_from_grid(y, placement)
    kept = place_in_grid(np.ones(source, bool), placement)
    assert back.shape == source
    src, _ = placement.slices()
    np.testing.assert_array_equal(back[src], x[src])
    assert int(kept.sum()) == int(np.prod([s.stop - s.start for s in src]))


def test_brats_offsets_match_the_known_padding() -> None:
    """240x240x155 into 256^3: 8 voxels before on x/y, 50 before / 51 after on z."""
    placement = grid_placement((240, 240, 155), (256, 256, 256))
    assert placement.offset == (8, 8, 50)


@pytest.mark.parametrize("spatial_size", [None, (16, 24, 16)])
def test_lstsq_restores_a_perfect_prediction_with_unknown_gain(spatial_size: tuple[int, int, int] | None) -> None:
    """A prediction that is any affine function of the truth comes back exactly (the gain differs from 1),
    also when the model grid crops part of the input."""
    t1n, voided, mask = case_arrays((21, 18, 11), seed=7)
    t1n[10, 9, 5] = t1n.max() * 1.5  # the brightest voxel lies inside the mask: gain = max(t1n) / max(voided)
    assert mask[10, 9, 5] == 1
    affine = affine_for("LAS")
    cfg = PreprocessConfig(spatial_size=spatial_size, intensity_restore="lstsq")
    _, _, state = preprocess(voided, mask, affine, cfg, MULTIPLE)
    assert state.placement.crops == (spatial_size is not None)
    prediction_native = 0.37 * t1n / t1n.max() - 0.8  # arbitrary positive gain and offset
    model_output = to_model_grid(prediction_native, state, fill=MODEL_MIN)
    out = postprocess(torch.from_numpy(model_output)[None, None], state, voided, mask)
    inside = mask > 0
    np.testing.assert_allclose(out[inside], t1n[inside], rtol=1e-10, atol=1e-9)
    assert np.array_equal(out[~inside], voided[~inside])


def test_lstsq_gain_known_value() -> None:
    rng = np.random.default_rng(8)
    p = rng.uniform(0, 1, size=5000)
    known = rng.random(5000) > 0.2
    assert lstsq_gain(p, 2.5 * p, known) == pytest.approx(2.5, rel=1e-12)
    noisy = 2.5 * p + rng.normal(scale=0.01, size=p.shape)
    assert lstsq_gain(p, noisy, known) == pytest.approx(2.5, rel=1e-2)
    assert lstsq_gain(np.zeros(10), np.ones(10), np.ones(10, bool)) == 1.0


def test_percentile_restore_inverts_the_quantile_scaling() -> None:
    t1n, voided, mask = case_arrays((21, 18, 11), seed=9)
    cfg = PreprocessConfig(spatial_size=None, lower_quantile=0.0, upper_quantile=1.0, intensity_restore="percentile")
    _, _, state = preprocess(voided, mask, affine_for("RAS"), cfg, MULTIPLE)
    assert state.intensity_low == 0.0 and state.intensity_high == voided.max()
    inside = mask > 0
    truth = np.where(inside, np.minimum(t1n, voided.max()), voided)  # within the recorded range
    model = (truth - state.intensity_low) / (state.intensity_high - state.intensity_low) * 2.0 - 1.0
    out = postprocess(to_model_grid(model, state, fill=MODEL_MIN), state, voided, mask)
    np.testing.assert_allclose(out[inside], truth[inside], rtol=1e-12, atol=1e-9)


def test_restored_intensities_are_clamped_at_zero() -> None:
    _, voided, mask = case_arrays((21, 18, 11), seed=10)
    voided = voided - 50.0 * (mask == 0)  # negative values outside the mask pull the lower quantile below 0
    cfg = PreprocessConfig(spatial_size=None, intensity_restore="percentile")
    _, _, state = preprocess(voided, mask, affine_for("RAS"), cfg, MULTIPLE)
    assert state.intensity_low < 0
    out = postprocess(np.full(state.model_shape, MODEL_MIN), state, voided, mask)
    assert np.all(out[mask > 0] == 0.0)


def test_mask_voxels_outside_a_smaller_grid_keep_their_input() -> None:
    shape = (20, 20, 20)
    voided = np.random.default_rng(11).uniform(1, 2, size=shape)
    mask = np.zeros(shape)
    mask[0:3, 8:12, 8:12] = 1  # first slices of axis 0 are cropped away by a 16-voxel grid
    _, _, state = preprocess(voided, mask, affine_for("RAS"), PreprocessConfig(spatial_size=(16, 24, 24)), 8)
    out = postprocess(np.full(state.model_shape, MODEL_MAX), state, voided, mask, intensity_restore="percentile")
    np.testing.assert_array_equal(out[0:2], voided[0:2])  # never seen by the model
    assert np.all(out[2, 8:12, 8:12] != voided[2, 8:12, 8:12])  # inside the grid: inpainted


def test_grid_must_be_divisible() -> None:
    with pytest.raises(ValueError, match="divisible by 16"):
        preprocess(np.ones((8, 8, 8)), np.zeros((8, 8, 8)), np.eye(4), PreprocessConfig(spatial_size=(24, 32, 32)), 16)
    with pytest.raises(ValueError, match="mask shape"):
        preprocess(np.ones((8, 8, 8)), np.zeros((8, 8, 7)), np.eye(4), PreprocessConfig(), 8)


def test_crop_box_rounds_to_grid_and_inverts() -> None:
    grid = (64, 48, 32)
    mask = np.zeros(grid)
    mask[30:37, 5:9, 20:29] = 1  # near the low border of axis 1
    box = mask_crop_box(mask, margin=4, multiple=8)
    assert all(n % 8 == 0 for n in box.size)
    for axis, (lo, hi) in enumerate([(30, 37), (5, 9), (20, 29)]):
        start, n = box.start[axis], box.size[axis]
        assert 0 <= start and start + n <= grid[axis]
        assert start <= max(lo - 4, 0) and start + n >= min(hi + 4, grid[axis])
    assert box.size[2] == 24 and box.start[2] == 8  # 17 voxels round up to 24 and are shifted inside the grid
    x = np.random.default_rng(12).normal(size=(2, *grid))
    c = crop(x, box)
    assert c.shape == (2, *box.size)
    np.testing.assert_array_equal(uncrop(c, box, x), x)
    base = np.zeros_like(x)
    pasted = uncrop(c, box, base)
    np.testing.assert_array_equal(pasted[(..., *box.slices)], x[(..., *box.slices)])
    assert pasted.sum() == pytest.approx(x[(..., *box.slices)].sum())
    t = torch.from_numpy(x)
    assert torch.equal(uncrop(crop(t, box), box, torch.zeros_like(t)), torch.from_numpy(pasted))


def test_crop_box_edge_cases() -> None:
    grid = (16, 16, 16)
    assert mask_crop_box(np.zeros(grid), margin=2, multiple=8).size == grid  # empty mask: whole volume
    big = np.zeros(grid)
    big[1:15, 0:16, 3:4] = 1
    box = mask_crop_box(big, margin=2, multiple=8)
    assert box.size == (16, 16, 8)  # 18 and 20 voxels are capped at the grid; 5 round up to 8
    assert box.start == (0, 0, 0)
    with pytest.raises(ValueError, match="margin"):
        mask_crop_box(big, margin=-1, multiple=8)
