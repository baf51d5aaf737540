"""The prior-anchored mode: an untrained model is the harmonic fill; residual, conditioning, strength, refusal."""

from __future__ import annotations

import pytest
import torch
from wdm_inpaint.config import ConfigError, ModeConfig, UNetConfig, WDMConfig
from wdm_inpaint.convert import ConversionError, convert_checkpoint
from wdm_inpaint.diffusion.forward import training_loss
from wdm_inpaint.diffusion.prior_mode import PriorMode, harmonic_anchor
from wdm_inpaint.diffusion.registry import build_mode, mode_for_in_channels, upstream_modes
from wdm_inpaint.diffusion.schedule import NoiseSchedule
from wdm_inpaint.fill.harmonic import harmonic_fill
from wdm_inpaint.models.unet import WDMUNet
from wdm_inpaint.pipeline.config import PipelineConfig
from wdm_inpaint.pipeline.inpaint import InpaintingPipeline
from wdm_inpaint.samplers.base import SamplerConfig
from wdm_inpaint.wavelet import WaveletCodec

SIZE = 16


def _config() -> WDMConfig:
    unet = UNetConfig(in_channels=24, model_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_groups=4)
    return WDMConfig(unet=unet, mode=ModeConfig(name="prior", image_loss="l1"))


def _case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 1, SIZE, SIZE, SIZE, generator=g) * 2 - 1
    mask = torch.zeros_like(image)
    mask[..., 4:11, 5:12, 3:9] = 1
    return image, mask


def test_harmonic_anchor_is_the_classical_fill_per_batch_element() -> None:
    image, mask = _case()
    other, _ = _case(1)
    batch, masks = torch.cat([image, other]), torch.cat([mask, mask.flip(-1)])
    anchor = harmonic_anchor(batch, masks)
    for b in range(2):
        expected = harmonic_fill(batch[b, 0].numpy(), masks[b, 0].numpy())
        assert torch.allclose(anchor[b, 0], torch.from_numpy(expected), atol=1e-6)
    assert torch.equal(anchor[masks == 0], batch[masks == 0])


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpmpp_2m"])
@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_untrained_prior_model_reproduces_the_harmonic_fill(sampler: str, strength: float) -> None:
    config = _config()
    torch.manual_seed(0)
    model = WDMUNet(config.unet).eval()
    image, mask = _case()
    pipe = InpaintingPipeline(
        model, config, PipelineConfig(sampler=SamplerConfig(name=sampler, num_steps=6), strength=strength,
                                      progress=False)
    )
    out = pipe(image, mask, seed=3)
    expected = torch.from_numpy(harmonic_fill(image[0, 0].numpy(), mask[0, 0].numpy()))
    inside = mask[0, 0] > 0
    assert (out[0, 0][inside] - expected[inside]).abs().max() < 1e-5
    assert torch.equal(out[mask == 0], image[mask == 0])  # known voxels bit for bit


def test_strength_skips_grid_steps_and_needs_a_noised_conditional_start() -> None:
    config = _config()
    model = WDMUNet(config.unet).eval()
    full = InpaintingPipeline(model, config, PipelineConfig(sampler=SamplerConfig(name="ddim", num_steps=10)))
    half = InpaintingPipeline(model, config, PipelineConfig(sampler=SamplerConfig(name="ddim", num_steps=10),
                                                            strength=0.3, progress=False))
    assert full.expected_model_calls() == 10
    assert half.expected_model_calls() == 3
    image, mask = _case()
    half(image, mask)
    assert half.last_run.model_calls == 3
    with pytest.raises(ConfigError, match="strength"):
        InpaintingPipeline(model, config, PipelineConfig(strength=0.5, init="upstream"))
    with pytest.raises(ConfigError, match="strength"):
        PipelineConfig(strength=0.0)


def test_a_trained_residual_moves_the_fill_only_inside_the_mask() -> None:
    config = _config()
    torch.manual_seed(0)
    model = WDMUNet(config.unet).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    image, mask = _case()
    out = InpaintingPipeline(model, config, PipelineConfig(progress=False))(image, mask)
    expected = torch.from_numpy(harmonic_fill(image[0, 0].numpy(), mask[0, 0].numpy()))
    inside = mask[0, 0] > 0
    assert (out[0, 0][inside] - expected[inside]).abs().max() > 1e-3
    assert torch.equal(out[mask == 0], image[mask == 0])


def test_compose_adds_the_residual_inside_the_region_only() -> None:
    mode = PriorMode(ModeConfig(name="prior"))
    codec = WaveletCodec()
    image, mask = _case()
    anchor = harmonic_anchor(image, mask)
    residual = torch.randn(1, 8, SIZE // 2, SIZE // 2, SIZE // 2)
    x0 = codec.decode(mode.compose(codec, residual, anchor, mask))
    assert torch.allclose(x0[mask == 0], anchor[mask == 0], atol=1e-6)
    assert torch.allclose(x0 - anchor, codec.decode(residual) * mask, atol=1e-5)
    with pytest.raises(ValueError, match="anchor"):
        mode.compose(codec, residual, None, mask)


def test_training_at_initialisation_scores_the_harmonic_fill() -> None:
    config = _config()
    mode = build_mode(config.mode)
    model = WDMUNet(config.unet)
    t1n, healthy = _case()
    unhealthy = torch.zeros_like(healthy)
    unhealthy[..., 12:15, 12:15, 12:15] = 1
    batch = {"t1n": t1n, "mask_healthy": healthy, "mask_unhealthy": unhealthy}
    terms = training_loss(model, mode, WaveletCodec(), NoiseSchedule(config.schedule), batch,
                          torch.Generator().manual_seed(0))
    example = mode.prepare(batch)
    roi = (1 - unhealthy) * example.region
    expected = ((example.anchor - t1n).abs() * roi).mean()
    assert torch.allclose(terms["roi_l1"], expected, atol=1e-6)
    terms["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_prior_mode_is_not_an_upstream_mode_and_conversion_refuses_it(tmp_path) -> None:
    assert "prior" not in upstream_modes()
    assert mode_for_in_channels(24) == "akh_context"  # the prior mode's equal width does not make it ambiguous
    with pytest.raises(ConversionError, match="no upstream counterpart"):
        convert_checkpoint(tmp_path / "missing.pt", tmp_path / "out.pt", mode="prior")
