"""Challenge metrics: hand-computed values, a direct SSIM evaluation, and optional cross-checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wdm_inpaint.evaluation.metrics import (
    case_metrics,
    package_metrics,
    percentile_window,
    synapse_metrics,
)
from wdm_inpaint.evaluation.ssim import ssim_map

RADIUS = 5
SIGMA = 1.5


def gaussian_taps() -> np.ndarray:
    g = np.exp(-0.5 * (np.arange(-RADIUS, RADIUS + 1) / SIGMA) ** 2)
    return g / g.sum()


def direct_ssim(p: np.ndarray, t: np.ndarray, voxels: np.ndarray, dims: int, data_range: float, clamp: bool = False):
    """SSIM at each voxel from the textbook formula: explicit windows of the reflect-padded volumes."""
    g = gaussian_taps()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    out = []
    for i, j, k in voxels:
        if dims == 3:
            w = g[:, None, None] * g[None, :, None] * g[None, None, :]
            pw = np.pad(p, RADIUS, mode="reflect")[i : i + 11, j : j + 11, k : k + 11]
            tw = np.pad(t, RADIUS, mode="reflect")[i : i + 11, j : j + 11, k : k + 11]
        else:
            w = g[:, None] * g[None, :]
            pw = np.pad(p[i], RADIUS, mode="reflect")[j : j + 11, k : k + 11]
            tw = np.pad(t[i], RADIUS, mode="reflect")[j : j + 11, k : k + 11]
        mp, mt = (w * pw).sum(), (w * tw).sum()
        vp, vt = (w * pw * pw).sum() - mp**2, (w * tw * tw).sum() - mt**2
        if clamp:
            vp, vt = max(vp, 0.0), max(vt, 0.0)
        cov = (w * pw * tw).sum() - mp * mt
        out.append((2 * mp * mt + c1) * (2 * cov + c2) / ((mp**2 + mt**2 + c1) * (vp + vt + c2)))
    return np.array(out)


def checker_case(with_bright_tumour: bool = False):
    """12^3 case: brain of 100s, healthy 4^3 block of alternating 50/100, optional 3^3 tumour of 200s."""
    gt = np.zeros((12, 12, 12))
    gt[1:11, 1:11, 1:11] = 100.0
    healthy = np.zeros(gt.shape, dtype=bool)
    healthy[3:7, 3:7, 3:7] = True
    parity = np.indices(gt.shape).sum(axis=0) % 2
    gt[healthy] = np.where(parity[healthy] == 0, 50.0, 100.0)
    tumour = np.zeros(gt.shape, dtype=bool)
    if with_bright_tumour:
        tumour[7:10, 7:10, 7:10] = True
        gt[tumour] = 200.0
    voided = gt * ~(healthy | tumour)
    return gt, healthy, voided


# --------------------------------------------------------------------------------------------- SSIM map


@pytest.mark.parametrize("dims", [3, 2])
def test_ssim_map_matches_direct_formula(dims):
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, (9, 10, 8))
    t = np.clip(p + rng.normal(0, 0.2, p.shape), 0, 1)
    voxels = np.argwhere(np.ones(p.shape, dtype=bool))[::7]
    data_range = 1.3
    expected = direct_ssim(p, t, voxels, dims, data_range)
    pt, tt = torch.from_numpy(p), torch.from_numpy(t)
    if dims == 3:
        got = ssim_map(pt[None], tt[None], spatial_dims=3, data_range=data_range)[0]
    else:
        got = ssim_map(pt, tt, spatial_dims=2, data_range=data_range)
    np.testing.assert_allclose(got.numpy()[tuple(voxels.T)], expected, rtol=1e-10, atol=1e-12)


def test_ssim_map_roi_equals_crop_of_full_map():
    rng = np.random.default_rng(2)
    p = torch.from_numpy(rng.uniform(0, 1, (1, 14, 12, 10)))
    t = torch.from_numpy(rng.uniform(0, 1, (1, 14, 12, 10)))
    full = ssim_map(p, t, spatial_dims=3, data_range=1.0)
    roi = (slice(0, 1), slice(0, 4), slice(5, 12), slice(3, 7))
    part = ssim_map(p, t, spatial_dims=3, data_range=1.0, roi=roi)
    assert part.shape == (1, 4, 7, 4)
    torch.testing.assert_close(part, full[roi], rtol=0, atol=1e-13)


def test_ssim_map_clamped_variance_matches_direct_formula():
    p = np.zeros((8, 8, 8))
    p[2:5, 3:6, 1:7] = 0.7
    t = p * 0.5
    voxels = np.argwhere(np.ones(p.shape, dtype=bool))[::5]
    got = ssim_map(
        torch.from_numpy(p)[None], torch.from_numpy(t)[None], spatial_dims=3, data_range=1.0, clamp_variance=True
    )
    expected = direct_ssim(p, t, voxels, 3, 1.0, clamp=True)
    np.testing.assert_allclose(got[0].numpy()[tuple(voxels.T)], expected, rtol=1e-9, atol=1e-12)


def test_ssim_map_rejects_sides_too_short_to_reflect():
    x = torch.zeros(1, 5, 12, 12)
    with pytest.raises(ValueError, match="window radius"):
        ssim_map(x, x, spatial_dims=3, data_range=1.0)


# --------------------------------------------------------------------------------------------- formulas


def test_exact_copy_scores_perfect_for_both_formulas():
    gt, healthy, voided = checker_case(with_bright_tumour=True)
    scores = case_metrics(gt.copy(), gt, voided, healthy)
    for formula in (scores.synapse, scores.package):
        assert formula.ssim == pytest.approx(1.0, abs=1e-12)
        assert formula.mse == 0.0
        assert math.isinf(formula.psnr) and formula.psnr > 0
    assert math.isinf(scores.package.psnr_01) and math.isinf(scores.synapse.psnr_auto)
    assert scores.package.mae == 0.0


def test_percentile_window_hand_values():
    gt, healthy, _ = checker_case()
    # 792 zeros (background + healthy block) and 936 voxels of 100: p0.5 = 0, p99.5 = 100
    assert percentile_window(gt * ~healthy) == (0.0, 100.0)
    values = np.arange(201, dtype=float)  # p0.5 = 1.0, p99.5 = 199.0 by linear interpolation
    assert percentile_window(values) == pytest.approx((1.0, 199.0))
    assert percentile_window(values - 50.0)[0] == 0.0  # negative lower percentile is clamped to 0


def test_zero_fill_scores_hand_computed_values():
    gt, healthy, voided = checker_case()
    scores = case_metrics(voided, gt, voided, healthy)
    # window [0, 100]; normalised truth in the mask: 32 x 0.5 and 32 x 1.0; prediction 0
    mse = (32 * 0.5**2 + 32 * 1.0**2) / 64  # 0.625
    for formula in (scores.synapse, scores.package):
        assert formula.mse == pytest.approx(mse, rel=1e-12)
    assert scores.synapse.psnr == pytest.approx(10 * math.log10(1 / mse), rel=1e-12)
    assert scores.synapse.psnr_auto == pytest.approx(10 * math.log10(1 / mse), rel=1e-12)
    assert scores.package.psnr_01 == pytest.approx(10 * math.log10(1 / mse), rel=1e-12)
    # package PSNR: range 1.0 - 0.5; prediction clamped to 0.5, so only the 1.0 voxels err by 0.5
    assert scores.package.psnr == pytest.approx(10 * math.log10(0.5**2 / (0.5 * 0.5**2)), rel=1e-12)
    assert scores.package.mae == pytest.approx(0.75, rel=1e-12)
    assert scores.package.rmse == pytest.approx(math.sqrt(mse), rel=1e-12)
    # SSIM of the zero-masked volumes, averaged over the mask, from the direct formula
    truth = gt * healthy / 100.0
    voxels = np.argwhere(healthy)
    expected_3d = direct_ssim(np.zeros_like(truth), truth, voxels, 3, data_range=1.0).mean()
    expected_2d = direct_ssim(np.zeros_like(truth), truth, voxels, 2, data_range=1.0, clamp=True).mean()
    assert scores.synapse.ssim == pytest.approx(expected_3d, rel=1e-10)
    assert scores.package.ssim == pytest.approx(expected_2d, rel=1e-10)
    assert scores.synapse.ssim != pytest.approx(scores.package.ssim, rel=1e-3)


def test_formulas_take_their_windows_from_different_references():
    gt, healthy, voided = checker_case(with_bright_tumour=True)
    # Synapse keeps the 200-valued tumour in its reference (window [0, 200]); the package uses t1n-voided ([0, 100])
    scores = case_metrics(voided, gt, voided, healthy)
    assert scores.synapse.mse == pytest.approx((32 * 0.25**2 + 32 * 0.5**2) / 64, rel=1e-12)
    assert scores.package.mse == pytest.approx((32 * 0.5**2 + 32 * 1.0**2) / 64, rel=1e-12)


def test_constant_offset_gives_the_analytic_mse():
    gt, healthy, voided = checker_case()
    rng = np.random.default_rng(3)
    gt[healthy] = rng.integers(20, 61, size=int(healthy.sum()))
    offset = 10.0
    prediction = voided + healthy * (gt + offset)
    scores = case_metrics(prediction, gt, voided, healthy)
    expected = (offset / 100.0) ** 2
    assert scores.synapse.mse == pytest.approx(expected, rel=1e-12)
    assert scores.package.mse == pytest.approx(expected, rel=1e-12)
    assert scores.synapse.psnr == pytest.approx(20.0, rel=1e-12)
    assert scores.package.mae == pytest.approx(0.1, rel=1e-12)


def test_prediction_outside_the_healthy_mask_is_ignored():
    gt, healthy, voided = checker_case(with_bright_tumour=True)
    rng = np.random.default_rng(4)
    prediction = gt + rng.normal(0, 30, gt.shape)
    other = np.where(healthy, prediction, rng.uniform(0, 5000, gt.shape))
    a, b = case_metrics(prediction, gt, voided, healthy), case_metrics(other, gt, voided, healthy)
    assert a == b


def test_values_above_the_window_saturate():
    gt, healthy, voided = checker_case()
    scores_at_top = synapse_metrics(voided + healthy * 100.0, gt, healthy)
    scores_beyond = synapse_metrics(voided + healthy * 1e6, gt, healthy)
    assert scores_beyond.mse == scores_at_top.mse == pytest.approx(32 * 0.5**2 / 64)


@pytest.mark.parametrize(
    "change, message",
    [
        ("empty", "healthy mask is empty"),
        ("shape", "shape"),
        ("constant", "empty window"),
    ],
)
def test_invalid_inputs_raise(change, message):
    gt, healthy, voided = checker_case()
    if change == "empty":
        healthy = np.zeros_like(healthy)
    elif change == "shape":
        gt = gt[:-1]
    else:
        voided = np.zeros_like(voided)
    with pytest.raises(ValueError, match=message):
        package_metrics(voided, gt, voided, healthy)


# --------------------------------------------------------------------------------------------- cross-checks


def _random_case(seed: int = 5):
    rng = np.random.default_rng(seed)
    shape = (22, 20, 18)
    gt = np.zeros(shape)
    gt[2:20, 2:18, 2:16] = rng.uniform(100, 1000, (18, 16, 14))
    healthy = np.zeros(shape, dtype=bool)
    healthy[5:11, 4:12, 3:10] = True
    tumour = np.zeros(shape, dtype=bool)
    tumour[12:18, 10:16, 8:14] = True
    voided = gt * ~(healthy | tumour)
    prediction = voided + (healthy | tumour) * (gt + rng.normal(0, 80, shape))
    return prediction, gt, voided, healthy


def test_synapse_formula_matches_the_scorer_steps_with_torchmetrics():
    tm_image = pytest.importorskip("torchmetrics.image")
    prediction, gt, _, healthy = _random_case()
    to5d = lambda a: torch.tensor(a, dtype=torch.float64)[None, None]  # noqa: E731
    pred, truth, mask = to5d(prediction), to5d(gt), to5d(healthy).bool()
    v_min, v_max = np.percentile((truth * ~mask).numpy(), [0.5, 99.5])
    v_min = max(v_min, 0.0)
    norm = lambda x: (x.clamp(v_min, v_max) - v_min) / (v_max - v_min)  # noqa: E731
    p_in, t_in = norm(pred * mask), norm(truth * mask)
    _, full = tm_image.StructuralSimilarityIndexMeasure(return_full_image=True)(p_in, t_in)
    mse = float(((p_in[mask] - t_in[mask]) ** 2).mean())
    ours = synapse_metrics(prediction, gt, healthy)
    assert ours.ssim == pytest.approx(float(full[mask].mean()), rel=1e-6)
    assert ours.mse == pytest.approx(mse, rel=1e-9)
    assert ours.psnr == pytest.approx(10 * math.log10(1 / mse), rel=1e-9)


def test_package_formula_matches_the_inpainting_package():
    package = pytest.importorskip("inpainting.challenge_metrics_2023")
    prediction, gt, voided, healthy = _random_case()
    to4d = lambda a: torch.Tensor(a)[None]  # noqa: E731
    reference = package.generate_metrics(
        prediction=to4d(prediction), target=to4d(gt), normalization_tensor=to4d(voided), mask=to4d(healthy).bool()
    )
    ours = package_metrics(prediction, gt, voided, healthy)
    for key in ("ssim", "mse", "mae", "psnr_01", "psnr"):
        assert getattr(ours, key) == pytest.approx(reference[key], rel=1e-5), key
