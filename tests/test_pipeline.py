"""Inpainting pipeline: known voxels, sample averaging, reproducibility, presets, RePaint jumps, known region."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from conftest import load_fixture
from wdm_inpaint.config import ConfigError, ModeConfig, ScheduleConfig, UNetConfig, WDMConfig, to_dict
from wdm_inpaint.diffusion.schedule import NoiseSchedule
from wdm_inpaint.models.unet import WDMUNet
from wdm_inpaint.pipeline import InpaintingPipeline, PipelineConfig
from wdm_inpaint.pipeline.inpaint import nearest_timesteps
from wdm_inpaint.pipeline.jumps import repaint_levels
from wdm_inpaint.samplers import SamplerConfig
from wdm_inpaint.wavelet import WaveletCodec

CONDITION_CHANNELS = {"default": 0, "akh": 8, "akh_context": 16}
SAMPLERS = {
    "ddpm": SamplerConfig(name="ddpm", num_steps=4),
    "ddim": SamplerConfig(name="ddim", num_steps=4, eta=0.5),
    "dpmpp_2m": SamplerConfig(name="dpmpp_2m", num_steps=4),
}


class RecordingModel(nn.Module):
    """Stand-in denoiser: x0 prediction = ``gain`` x the noisy wavelets; records timesteps and noisy inputs."""

    def __init__(self, gain: float = 0.5, keep_inputs: bool = False) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(gain))
        self.keep_inputs = keep_inputs
        self.timesteps: list[int] = []
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert t.dtype == torch.long and t.shape == (x.shape[0],)
        self.timesteps.append(int(t[0]))
        if self.keep_inputs:
            self.inputs.append(x[:, :8].clone())
        return self.gain * x[:, :8]


def model_config(mode: str, schedule: ScheduleConfig | None = None, tiny_unet: bool = False) -> WDMConfig:
    in_channels = 8 + CONDITION_CHANNELS[mode]
    if tiny_unet:
        unet = UNetConfig(
            in_channels=in_channels, model_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_groups=4
        )
    else:
        unet = UNetConfig(in_channels=in_channels, channel_mult=(1,))  # image_multiple 2: any even size
    return WDMConfig(unet=unet, schedule=schedule or ScheduleConfig(num_timesteps=100), mode=ModeConfig(name=mode))


def make_case(batch: int = 2, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 1, size, size, size, generator=g) * 2 - 1
    mask = torch.zeros_like(image)
    mask[:, :, 2:6, 1:5, 3:8] = 1  # not aligned to the 2x2x2 wavelet blocks
    mask[-1, :, 0:3, 5:8, 0:2] = 1  # a different mask per batch element
    image = torch.where(mask > 0, torch.full_like(image, -1.0), image)  # voided: -1 in the region
    return image, mask


def quiet(**kwargs) -> PipelineConfig:
    return PipelineConfig(progress=False, **kwargs)


# --------------------------------------------------------------------------- known voxels


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("mode", sorted(CONDITION_CHANNELS))
def test_known_voxels_are_bit_identical(mode: str, sampler: str) -> None:
    cfg = model_config(mode)
    pipe = InpaintingPipeline(RecordingModel(gain=1.5), cfg, quiet(sampler=SAMPLERS[sampler], num_samples=2))
    image, mask = make_case()
    image = image.double()  # the output keeps the input's dtype, so the paste is exact even in float64
    out = pipe(image, mask)
    assert out.dtype == image.dtype and out.shape == image.shape
    known = mask == 0
    assert torch.equal(out[known], image[known])
    assert not torch.equal(out[~known], image[~known]), "the region must be filled"
    assert float(out.abs().max()) <= 1.0
    assert pipe.last_run.model_calls == pipe.expected_model_calls() == 2 * 4


@pytest.mark.parametrize(("mode", "sampler"), [("default", "ddpm"), ("akh", "dpmpp_2m"), ("akh_context", "ddim")])
def test_tiny_unet_fills_only_the_region(mode: str, sampler: str) -> None:
    """The real U-Net with each mode's conditioning channels: known voxels exact, the region filled, deterministic."""
    cfg = model_config(mode, tiny_unet=True)
    torch.manual_seed(0)
    model = WDMUNet(cfg.unet).eval()
    config = quiet(sampler=SAMPLERS[sampler], num_samples=2, seed=5)
    image, mask = make_case()
    out = InpaintingPipeline(model, cfg, config)(image, mask)
    assert torch.equal(out[mask == 0], image[mask == 0])
    assert not torch.equal(out[mask == 1], image[mask == 1])
    assert torch.equal(out, InpaintingPipeline(model, cfg, config)(image, mask))


def test_from_checkpoint_rebuilds_model_and_mode(tmp_path) -> None:
    from wdm_inpaint.checkpoint import save_checkpoint

    cfg = model_config("akh_context", tiny_unet=True)
    torch.manual_seed(1)
    model = WDMUNet(cfg.unet).eval()
    path = save_checkpoint(tmp_path / "tiny.pt", model, cfg)
    config = quiet(sampler=SAMPLERS["ddim"], seed=2)
    loaded = InpaintingPipeline.from_checkpoint(path, config)
    assert loaded.mode.name == "akh_context" and loaded.model_config == cfg
    image, mask = make_case()
    assert torch.equal(loaded(image, mask), InpaintingPipeline(model, cfg, config)(image, mask))


def test_known_voxels_bit_identical_with_matched_region_and_no_clipping() -> None:
    cfg = model_config("akh")
    pipe = InpaintingPipeline(
        RecordingModel(gain=3.0), cfg, quiet(sampler=SAMPLERS["ddim"], known_region="matched", clip_x0=False)
    )
    image, mask = make_case()
    out = pipe(image, mask)
    assert torch.equal(out[mask == 0], image[mask == 0])
    assert float(out[mask == 1].abs().max()) > 1.0  # no clamp: the stand-in's large output comes through


# --------------------------------------------------------------------------- randomness


def test_same_seed_same_output_and_seed_override() -> None:
    cfg = model_config("akh")
    image, mask = make_case()
    config = quiet(sampler=SamplerConfig(name="ddpm", num_steps=5), seed=3)
    a = InpaintingPipeline(RecordingModel(), cfg, config)(image, mask)
    b = InpaintingPipeline(RecordingModel(), cfg, config)(image, mask)
    c = InpaintingPipeline(RecordingModel(), cfg, config)(image, mask, seed=4)
    assert torch.equal(a, b)
    assert not torch.equal(a[mask == 1], c[mask == 1])


@pytest.mark.parametrize("mode", ["akh", "default"])
def test_averaging_k_samples_reduces_variance(mode: str) -> None:
    """Variance across batch elements (independent noise) of the in-mask output shrinks ~1/K."""
    cfg = model_config(mode)
    image, mask = make_case(batch=1, size=12)
    mask = torch.zeros_like(mask)
    mask[..., 2:10, 2:10, 2:10] = 1
    image, mask = image.expand(24, -1, -1, -1, -1).contiguous(), mask.expand(24, -1, -1, -1, -1).contiguous()

    def in_mask_variance(k: int) -> float:
        config = quiet(sampler=SamplerConfig(name="ddim", eta=1.0, num_steps=4), num_samples=k, clip_x0=False)
        out = InpaintingPipeline(RecordingModel(gain=0.8), cfg, config)(image, mask, seed=10 + k)
        return float(out[:, 0][mask[0, 0].expand(24, -1, -1, -1) > 0].view(24, -1).var(dim=0).mean())

    v1, v4 = in_mask_variance(1), in_mask_variance(4)
    assert v1 > 1e-3
    assert 3.2 < v1 / v4 < 5.0, (v1, v4)


# --------------------------------------------------------------------------- presets and timesteps


@pytest.mark.slow
def test_faking_it_preset_rebuilds_T5000_and_feeds_raw_t(upstream_dir) -> None:
    config = PipelineConfig.preset("faking_it_submission", progress=False)
    cfg = model_config("akh", schedule=ScheduleConfig(num_timesteps=1000))
    model = RecordingModel(keep_inputs=True)
    pipe = InpaintingPipeline(model, cfg, config)
    assert pipe.schedule.num_timesteps == 5000 and pipe.trained_schedule.num_timesteps == 1000
    ref = load_fixture(upstream_dir, "schedule_linear_T5000.pt")
    torch.testing.assert_close(pipe.schedule.betas, ref["betas"], rtol=1e-12, atol=0)
    assert pipe.sampler.name == "ddpm" and pipe.sampler.config.variance == "fixed_large"
    image, mask = make_case(batch=1, size=4)
    mask = torch.zeros_like(mask)
    mask[..., 1:3, 0:2, 1:4] = 1
    out = pipe(image, mask)
    assert model.timesteps == list(range(4999, -1, -1))  # 5000 calls with raw t, up to 4999
    assert pipe.last_run.model_calls == 5000
    codec = WaveletCodec(cfg.wavelet)
    outside = mask == 0
    # quirk of the reference init: the first call sees zeros outside the region ...
    first = codec.decode(model.inputs[0])
    assert float(first[outside].abs().max()) < 1e-6
    # ... and every later call the clean, unscaled input there
    for later in (model.inputs[1], model.inputs[2500], model.inputs[-1]):
        torch.testing.assert_close(codec.decode(later)[outside], image[outside], rtol=0, atol=1e-6)
    assert torch.equal(out[outside], image[outside])


def test_preset_seed_and_unknown_preset() -> None:
    config = PipelineConfig.preset("faking_it_submission")
    assert (config.seed, config.num_samples, config.clip_x0) == (42, 1, True)
    assert config.sampling_schedule == ScheduleConfig(kind="linear", num_timesteps=5000)
    assert PipelineConfig.preset("faking_it_submission", seed=7).seed == 7
    with pytest.raises(ConfigError, match="unknown pipeline preset"):
        PipelineConfig.preset("fastest")


def test_pipeline_config_round_trips_through_plain_dicts() -> None:
    for config in (
        PipelineConfig.preset("faking_it_submission"),
        PipelineConfig(sampler=SamplerConfig(name="ddim", timesteps=(9, 4, 0), eta=0.3), known_region="matched"),
    ):
        assert PipelineConfig.from_dict(to_dict(config)) == config
    with pytest.raises(ConfigError, match="unknown key"):
        PipelineConfig.from_dict({"samples": 4})
    with pytest.raises(ConfigError, match="known_region"):
        PipelineConfig.from_dict({"known_region": "scaled"})


def test_trained_timestep_input_maps_noise_levels() -> None:
    """With a T=5000 sampling schedule, 'trained' feeds the trained t of the same noise level (about t/5)."""
    trained, sampling = ScheduleConfig(num_timesteps=1000), ScheduleConfig(num_timesteps=5000)
    table = nearest_timesteps(NoiseSchedule(sampling), NoiseSchedule(trained))
    assert table.shape == (5000,) and int(table.min()) == 0
    assert bool((table[1:] >= table[:-1]).all())
    for t_sampling in (0, 1254, 3504, 4999):
        t = int(table[t_sampling])
        abar_s = NoiseSchedule(sampling).alphas_cumprod[t_sampling]
        abar_t = NoiseSchedule(trained).alphas_cumprod
        # no trained timestep has a noise level closer to the sampling one (in log-SNR)
        snr = lambda a: math.log(a / (1 - a))  # noqa: E731
        err = abs(snr(abar_t[t]) - snr(abar_s))
        assert all(err <= abs(snr(abar_t[u]) - snr(abar_s)) for u in (t - 1, t + 1) if 0 <= u < 1000)
    assert int(table[1254]) == 250  # the noise level at sampling index 5t+4 is that of trained t
    cfg = model_config("akh", schedule=trained)
    model = RecordingModel()
    config = quiet(sampler=SamplerConfig(name="ddim", num_steps=6), sampling_schedule=sampling)
    pipe = InpaintingPipeline(model, cfg, config)
    pipe(*make_case(batch=1))
    grid = pipe.sampler.timesteps.tolist()
    assert grid[0] == 4999
    assert model.timesteps == [int(table[t]) for t in grid]


# --------------------------------------------------------------------------- known-region options


@pytest.mark.parametrize("known_region", ["upstream", "matched"])
def test_known_region_option_sets_what_the_model_sees(known_region: str) -> None:
    """'upstream': the clean input outside the region at every call; 'matched': sqrt(abar_t) x input (training).

    At the first call (the 'noised' init) voxels of 2x2x2 wavelet blocks that straddle the region carry noise too,
    as in training; from then on the paste is per voxel."""
    cfg = model_config("akh")
    model = RecordingModel(keep_inputs=True)
    config = quiet(sampler=SamplerConfig(name="ddpm", num_steps=5), known_region=known_region)
    pipe = InpaintingPipeline(model, cfg, config)
    image, mask = make_case()
    pipe(image, mask)
    codec = WaveletCodec(cfg.wavelet)
    away = torch.nn.functional.max_pool3d(mask, 2).repeat_interleave(2, 2).repeat_interleave(2, 3)
    away = away.repeat_interleave(2, 4) == 0
    for call, (t, noisy) in enumerate(zip(model.timesteps, model.inputs)):
        outside = away if call == 0 else mask == 0
        scale = 1.0 if known_region == "upstream" else math.sqrt(float(pipe.schedule.alphas_cumprod[t]))
        torch.testing.assert_close(codec.decode(noisy)[outside], scale * image[outside], rtol=0, atol=1e-5)
    if known_region == "matched":
        assert math.sqrt(float(pipe.schedule.alphas_cumprod[model.timesteps[0]])) < 0.1  # so the two differ


def test_noise_only_in_the_region_at_start() -> None:
    """The 'noised' init: wavelet blocks that do not touch the region hold the (scaled) input and no noise."""
    cfg = model_config("akh")
    model = RecordingModel(keep_inputs=True)
    config = quiet(sampler=SamplerConfig(name="ddim", num_steps=3), known_region="matched")
    pipe = InpaintingPipeline(model, cfg, config)
    image, mask = make_case(batch=1)
    pipe(image, mask)
    first = model.inputs[0]
    codec = WaveletCodec(cfg.wavelet)
    scale = math.sqrt(float(pipe.schedule.alphas_cumprod[model.timesteps[0]]))
    expected = codec.encode(scale * image)
    touches = torch.nn.functional.max_pool3d(mask, 2).expand_as(first) > 0
    torch.testing.assert_close(first[~touches], expected[~touches], rtol=0, atol=1e-6)
    inside = first[touches] - expected[touches]
    assert float(inside.std()) > 0.3  # noise of std ~ sqrt(1 - abar) there


# --------------------------------------------------------------------------- RePaint jumps


def test_repaint_levels_schedule() -> None:
    assert repaint_levels(4, 2, 1) == [4, 3, 2, 1, 0]
    assert repaint_levels(6, 2, 2) == [6, 5, 4, 3, 4, 5, 4, 3, 2, 1, 2, 3, 2, 1, 0]
    assert repaint_levels(1, 5, 3) == [1, 0]
    with pytest.raises(ValueError, match=">= 1"):
        repaint_levels(4, 0, 2)


@pytest.mark.parametrize(
    ("num_steps", "jump_length", "jump_n_sample"), [(10, 1, 1), (10, 3, 2), (12, 4, 3), (5, 10, 4)]
)
def test_default_mode_jumps_call_the_model_the_expected_number_of_times(
    num_steps: int, jump_length: int, jump_n_sample: int
) -> None:
    cfg = model_config("default")
    model = RecordingModel()
    config = quiet(
        sampler=SamplerConfig(name="ddpm", num_steps=num_steps),
        jump_length=jump_length,
        jump_n_sample=jump_n_sample,
        num_samples=2,
    )
    pipe = InpaintingPipeline(model, cfg, config)
    image, mask = make_case()
    out = pipe(image, mask)
    # RePaint: jump points at every jump_length-th step below n - jump_length, each revisited jump_n_sample - 1
    # times, every revisit costing jump_length extra model calls
    jump_points = max(0, math.ceil((num_steps - jump_length) / jump_length))
    per_sample = num_steps + jump_points * (jump_n_sample - 1) * jump_length
    assert len(model.timesteps) == pipe.last_run.model_calls == pipe.expected_model_calls() == 2 * per_sample
    grid = pipe.sampler.timesteps.tolist()
    assert model.timesteps[:per_sample][0] == grid[0] and model.timesteps[per_sample - 1] == grid[-1]
    went_back = any(b > a for a, b in zip(model.timesteps[:per_sample], model.timesteps[1:per_sample]))
    assert went_back == (jump_points > 0 and jump_n_sample > 1)
    assert torch.equal(out[mask == 0], image[mask == 0])


def test_default_mode_replaces_known_region_with_noised_input() -> None:
    """Outside the region, the unconditional model sees the input noised to the call's timestep (wavelet noise)."""
    cfg = model_config("default", schedule=ScheduleConfig(num_timesteps=1000))
    model = RecordingModel(keep_inputs=True)
    pipe = InpaintingPipeline(model, cfg, quiet(sampler=SamplerConfig(name="ddim", num_steps=10)))
    image, mask = make_case(batch=4, size=16)
    pipe(image, mask)
    codec = WaveletCodec(cfg.wavelet)
    clean = codec.encode(image)
    touches = torch.nn.functional.max_pool3d(mask, 2).expand_as(clean) > 0
    for t, noisy in list(zip(model.timesteps, model.inputs))[1:]:
        abar = float(pipe.schedule.alphas_cumprod[t])
        residual = (noisy - math.sqrt(abar) * clean)[~touches] / math.sqrt(1 - abar)
        assert abs(float(residual.std()) - 1.0) < 0.1, f"unit-variance noise in every band at t={t}"
        assert abs(float(residual.mean())) < 0.1


# --------------------------------------------------------------------------- validation


def test_invalid_inputs_and_options() -> None:
    cfg = model_config("akh", tiny_unet=True)
    pipe = InpaintingPipeline(RecordingModel(), cfg, quiet(sampler=SAMPLERS["ddim"]))
    image, mask = make_case()
    with pytest.raises(ValueError, match="must be a multiple of 4"):
        pipe(image[..., :6], mask[..., :6])
    with pytest.raises(ValueError, match="differs from image shape"):
        pipe(image, mask[:1])
    with pytest.raises(ValueError, match="only 0 and 1"):
        pipe(image, mask * 0.5)
    with pytest.raises(ValueError, match=r"\(B, 1, D, H, W\)"):
        pipe(image[:, 0], mask[:, 0])
    with pytest.raises(ValueError, match="NaN"):
        pipe(torch.full_like(image, float("nan")), mask)
    with pytest.raises(ConfigError, match="resampling jumps are only used by the unconditional"):
        InpaintingPipeline(RecordingModel(), cfg, quiet(jump_n_sample=3))
    with pytest.raises(ConfigError, match="init='upstream'"):
        InpaintingPipeline(RecordingModel(), model_config("default"), quiet(init="upstream"))
    with pytest.raises(ConfigError, match="num_samples must be >= 1"):
        PipelineConfig(num_samples=0)
    with pytest.raises(ValueError, match="between 1 and the schedule's T=100"):
        InpaintingPipeline(RecordingModel(), cfg, quiet(sampler=SamplerConfig(num_steps=101)))

