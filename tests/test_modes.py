"""Training modes and the forward process: where noise goes, what the model sees, and the exact losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from wdm_inpaint.config import ModeConfig, ScheduleConfig, UNetConfig
from wdm_inpaint.diffusion.losses import ssim3d
from wdm_inpaint.diffusion.registry import build_mode, mode_for_in_channels
from wdm_inpaint.diffusion.forward import training_inputs, training_loss
from wdm_inpaint.diffusion.modes import AKHContextMode, AKHMode, DefaultMode
from wdm_inpaint.diffusion.noise import randn_like
from wdm_inpaint.diffusion.schedule import NoiseSchedule
from wdm_inpaint.models.unet import WDMUNet
from wdm_inpaint.wavelet import WaveletCodec, dwt3d, idwt3d

SHAPE = (2, 1, 8, 8, 8)
CODEC = WaveletCodec()
SCHEDULE = NoiseSchedule(ScheduleConfig(num_timesteps=1000))


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    t1n = torch.rand(SHAPE, generator=gen) * 2 - 1
    healthy = torch.zeros(SHAPE)
    healthy[:, :, 1:4, 2:6, 3:6] = 1  # straddles 2x2x2 block borders
    unhealthy = torch.zeros(SHAPE)
    unhealthy[:, :, 4:8, 4:8, 6:8] = 1  # aligned to whole blocks, disjoint from healthy
    return {"t1n": t1n, "mask_healthy": healthy, "mask_unhealthy": unhealthy}


def _touched_blocks(region: torch.Tensor) -> torch.Tensor:
    """``(B, 1, D/2, H/2, W/2)`` True where a 2x2x2 image block contains a region voxel."""
    return F.max_pool3d(region, 2) > 0


def _decode_by_hand(prediction: torch.Tensor) -> torch.Tensor:
    scaled = prediction.clone()
    scaled[:, 0] = scaled[:, 0] * 3.0
    return idwt3d(scaled)


def test_akh_known_voxels_are_scaled_clean_coefficients_and_noise_is_confined():
    mode = AKHMode()
    example = mode.prepare(_batch())
    t = torch.tensor([999, 250])
    model_input, x0_w = training_inputs(mode, CODEC, SCHEDULE, example, t, torch.Generator().manual_seed(1))
    assert model_input.shape == (2, 16, 4, 4, 4) and x0_w.shape == (2, 8, 4, 4, 4)
    x_t = model_input[:, :8]
    touched = _touched_blocks(example.region).expand_as(x_t)
    for i, ti in enumerate(t.tolist()):
        sqrt_ab = torch.tensor(SCHEDULE.alphas_cumprod[ti].item() ** 0.5, dtype=torch.float32)
        known = ~touched[i]
        assert torch.equal(x_t[i][known], sqrt_ab * x0_w[i][known])  # bit for bit, no noise at all
        assert torch.all(x_t[i][touched[i]] != sqrt_ab * x0_w[i][touched[i]])  # noisy in every touched block
    # the condition channels are the packed DWT of the healthy mask
    assert torch.equal(model_input[:, 8:], CODEC.encode(example.region))


def test_akh_noise_is_masked_in_image_space_before_the_dwt():
    mode = AKHMode()
    example = mode.prepare(_batch())
    noise = mode.noise(CODEC, example, torch.Generator().manual_seed(3))
    eps = randn_like(example.target, torch.Generator().manual_seed(3))
    assert torch.equal(noise, dwt3d(eps * example.region))  # raw DWT: LLL not divided by 3
    image_noise = idwt3d(noise)
    assert torch.count_nonzero(image_noise[example.region == 0].abs() > 1e-6) == 0
    assert torch.all(image_noise[example.region == 1] != 0)


def test_akh_prepare_voids_the_tumour_to_zero():
    batch = _batch()
    example = AKHMode().prepare(batch)
    tumour = batch["mask_unhealthy"] == 1
    assert torch.all(example.target[tumour] == 0.0)
    assert torch.equal(example.target[~tumour], batch["t1n"][~tumour])
    assert torch.equal(example.region, batch["mask_healthy"])
    assert example.known is None and example.loss_weight is None


def test_akh_loss_equals_the_hand_formula():
    mode = AKHMode(ModeConfig(name="akh", roi_loss_weight=10.0))
    example = mode.prepare(_batch())
    prediction = torch.randn(2, 8, 4, 4, 4, generator=torch.Generator().manual_seed(4))
    xhat = _decode_by_hand(prediction)
    x0, m = example.target, example.region
    image = ((x0 - xhat) ** 2).mean()
    roi = ((m * x0 - m * xhat) ** 2).mean()
    terms = mode.loss(CODEC, prediction, example)
    torch.testing.assert_close(terms["image_mse"], image)
    torch.testing.assert_close(terms["roi_mse"], roi)
    torch.testing.assert_close(terms["loss"], image + 10.0 * roi)
    weighted = AKHMode(ModeConfig(name="akh", roi_loss_weight=2.5)).loss(CODEC, prediction, example)["loss"]
    torch.testing.assert_close(weighted, image + 2.5 * roi)
    perfect = mode.loss(CODEC, CODEC.encode(x0), example)["loss"]
    assert perfect.item() == pytest.approx(0.0, abs=1e-10)


def test_default_mode_noises_everything_and_scores_wavelets():
    mode = DefaultMode()
    batch = _batch()
    example = mode.prepare(batch)
    assert example.region is None and mode.condition(CODEC, batch["mask_healthy"], None) is None
    noise = mode.noise(CODEC, example, torch.Generator().manual_seed(5))
    eps = randn_like(example.target, torch.Generator().manual_seed(5))
    assert torch.equal(noise, dwt3d(eps)) and torch.all(noise != 0)
    t = torch.tensor([10, 600])
    model_input, x0_w = training_inputs(mode, CODEC, SCHEDULE, example, t, torch.Generator().manual_seed(5))
    assert model_input.shape == (2, 8, 4, 4, 4)
    torch.testing.assert_close(model_input, SCHEDULE.q_sample(x0_w, t, noise))
    prediction = torch.randn(2, 8, 4, 4, 4, generator=torch.Generator().manual_seed(6))
    target_w = dwt3d(batch["t1n"])
    target_w[:, 0] = target_w[:, 0] / 3.0
    per_band = [((prediction[:, k] - target_w[:, k]) ** 2).mean() for k in range(8)]
    terms = mode.loss(CODEC, prediction, example)
    torch.testing.assert_close(terms["loss"], torch.stack(per_band).mean())
    torch.testing.assert_close(terms["band_LLL"], per_band[0])
    torch.testing.assert_close(terms["band_HHH"], per_band[7])


def test_context_mode_condition_region_and_weights():
    mode = AKHContextMode()
    batch = _batch()
    example = mode.prepare(batch)
    union = torch.maximum(batch["mask_healthy"], batch["mask_unhealthy"])
    assert torch.equal(example.region, union)
    assert torch.equal(example.loss_weight, 1 - batch["mask_unhealthy"])
    assert torch.all(example.known[union == 1] == -1.0)
    assert torch.equal(example.known[union == 0], batch["t1n"][union == 0])
    condition = mode.training_condition(CODEC, example)
    assert condition.shape == (2, 16, 4, 4, 4) and mode.in_channels == 24
    assert torch.equal(condition[:, :8], CODEC.encode(union))
    # whatever the known image holds inside the mask, the condition sees a voided (-1) region
    garbage = batch["t1n"] * (1 - union) + 5.0 * union
    assert torch.equal(mode.condition(CODEC, union, garbage), condition)
    model_input, _ = training_inputs(mode, CODEC, SCHEDULE, example, torch.tensor([5, 5]), torch.Generator())
    assert model_input.shape == (2, 24, 4, 4, 4)


@pytest.mark.parametrize("image_loss", ["mse", "l1"])
def test_context_mode_loss_ignores_the_tumour_and_matches_the_formula(image_loss):
    mode = AKHContextMode(ModeConfig(name="akh_context", roi_loss_weight=10.0, image_loss=image_loss))
    batch = _batch()
    example = mode.prepare(batch)
    tumour = batch["mask_unhealthy"]
    wrong_in_tumour = CODEC.encode(example.target + 0.7 * tumour)  # error only inside the (block-aligned) tumour
    assert mode.loss(CODEC, wrong_in_tumour, example)["loss"].item() == pytest.approx(0.0, abs=1e-6)
    wrong_in_healthy = CODEC.encode(example.target + 0.7 * batch["mask_healthy"])
    assert mode.loss(CODEC, wrong_in_healthy, example)["loss"].item() > 1e-2
    prediction = torch.randn(2, 8, 4, 4, 4, generator=torch.Generator().manual_seed(7))
    diff = _decode_by_hand(prediction) - example.target
    err = diff.abs() if image_loss == "l1" else diff**2
    w = 1 - tumour
    expected = (w * err).mean() + 10.0 * (w * batch["mask_healthy"] * err).mean()
    torch.testing.assert_close(mode.loss(CODEC, prediction, example)["loss"], expected)


def test_ssim_term():
    gen = torch.Generator().manual_seed(8)
    x = torch.rand(1, 1, 8, 8, 8, generator=gen) * 2 - 1
    torch.testing.assert_close(ssim3d(x, x), torch.ones_like(x))
    assert ssim3d(x, torch.rand(1, 1, 8, 8, 8, generator=gen) * 2 - 1).mean() < 0.5
    mode = AKHContextMode(ModeConfig(name="akh_context", ssim_weight=0.5))
    example = mode.prepare(_batch())
    perfect = mode.loss(CODEC, CODEC.encode(example.target), example)
    assert perfect["one_minus_ssim"].item() == pytest.approx(0.0, abs=1e-5)
    noisy = mode.loss(CODEC, CODEC.encode(example.target) + 0.3, example)
    assert noisy["one_minus_ssim"].item() > 0.01
    base = AKHContextMode().loss(CODEC, CODEC.encode(example.target) + 0.3, example)["loss"]
    torch.testing.assert_close(noisy["loss"], base + 0.5 * noisy["one_minus_ssim"])


def test_build_mode_and_channel_bookkeeping():
    assert isinstance(build_mode(ModeConfig(name="default")), DefaultMode)
    assert isinstance(build_mode(ModeConfig(name="akh")), AKHMode)
    assert isinstance(build_mode(ModeConfig(name="akh_context")), AKHContextMode)
    with pytest.raises(ValueError, match="unknown mode 'nope'.*akh"):
        build_mode(ModeConfig(name="nope"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs ModeConfig"):
        AKHMode(ModeConfig(name="default"))
    assert [mode_for_in_channels(c) for c in (8, 16, 24)] == ["default", "akh", "akh_context"]
    with pytest.raises(ValueError, match="12 input channels"):
        mode_for_in_channels(12)
    with pytest.raises(ValueError, match="missing \\['mask_unhealthy'\\]"):
        AKHMode().prepare({"t1n": torch.zeros(SHAPE), "mask_healthy": torch.zeros(SHAPE)})
    with pytest.raises(ValueError, match="mask=None"):
        AKHMode().condition(CODEC, None, None)


def test_training_loss_is_reproducible_and_uses_the_model_prediction():
    model = WDMUNet(UNetConfig(in_channels=16, model_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_groups=8))
    mode = AKHMode()
    batch = _batch()
    first = training_loss(model, mode, CODEC, SCHEDULE, batch, torch.Generator().manual_seed(9))
    second = training_loss(model, mode, CODEC, SCHEDULE, batch, torch.Generator().manual_seed(9))
    torch.testing.assert_close(first["loss"], second["loss"])
    # a fresh model predicts exactly zero, so the loss is the loss of a zero prediction
    zero = mode.loss(CODEC, torch.zeros(2, 8, 4, 4, 4), mode.prepare(batch))
    torch.testing.assert_close(first["loss"], zero["loss"])
    first["loss"].backward()
    assert model.head.conv.weight.grad.abs().sum() > 0
