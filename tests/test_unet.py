"""WDM 3D U-Net: parity with upstream weights and outputs, input validation, initialisation, execution options."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import load_fixture

from wdm_inpaint.config import ConfigError, UNetConfig
from wdm_inpaint.convert import convert_state_dict
from wdm_inpaint.models.embedding import timestep_embedding
from wdm_inpaint.models.unet import WDMUNet, count_parameters, unet_layout

TINY = UNetConfig(
    in_channels=16, out_channels=8, model_channels=16, channel_mult=(1, 2), num_res_blocks=1, num_groups=8
)


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter (including the zero-initialised ones) small random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return model


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("name", ["unet_akh_tiny.pt", "unet_default_tiny.pt"])
def test_parity_with_upstream_outputs(upstream_dir, name):
    fx = load_fixture(upstream_dir, name)
    config, state = convert_state_dict({k: v.float() for k, v in fx["state_dict"].items()})
    expected = fx["config"]
    assert config.in_channels == expected["in_channels"]
    assert config.model_channels == expected["model_channels"]
    assert list(config.channel_mult) == list(expected["channel_mult"])
    assert config.num_res_blocks == expected["num_res_blocks"]
    assert config.additive_skips == expected["additive_skips"]
    model = WDMUNet(config)
    model.load_state_dict(state)
    model.eval()
    x = fx["x_t"].float() if fx["cond"] is None else torch.cat([fx["x_t"], fx["cond"]], dim=1).float()
    with torch.no_grad():
        out = model(x, fx["t"])
    assert out.shape == fx["output"].shape
    assert _relative_error(out, fx["output"].float()) <= 1e-4


def test_fresh_model_predicts_zero():
    model = WDMUNet(TINY)
    x = torch.randn(2, 16, 8, 8, 8)
    out = model(x, torch.tensor([3, 900]))
    assert out.shape == (2, 8, 8, 8, 8)
    assert torch.count_nonzero(out) == 0


@pytest.mark.parametrize(
    ("shape", "t", "match"),
    [
        ((1, 8, 8, 8, 8), [1], "16 input channels"),
        ((1, 16, 8, 7, 8), [1], "divisible by 2"),
        ((1, 16, 8, 8), [1], r"\(B, C, D, H, W\)"),
        ((2, 16, 8, 8, 8), [1, 2, 3], r"timesteps of shape \(2,\)"),
    ],
)
def test_input_validation(shape, t, match):
    model = WDMUNet(TINY)
    with pytest.raises(ValueError, match=match):
        model(torch.zeros(shape), torch.tensor(t))


def test_scalar_timestep_is_broadcast():
    model = _randomise(WDMUNet(TINY)).eval()
    x = torch.randn(2, 16, 4, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(model(x, torch.tensor(7)), model(x, torch.tensor([7, 7])))


def test_conv_resampling_is_rejected():
    with pytest.raises(ConfigError, match="resblock_updown"):
        WDMUNet(UNetConfig(resblock_updown=False, model_channels=8, num_groups=8, channel_mult=(1,)))


def test_additive_layout_decoder_widths_follow_the_next_skip():
    cfg = UNetConfig(model_channels=8, channel_mult=(1, 2, 3), num_res_blocks=2, num_groups=8)
    layout = unet_layout(cfg)
    pending = list(layout.skip_channels)
    h = layout.middle[-1].out_channels
    for block, up in layout.decoder:
        skip = pending.pop()
        assert block.in_channels == h == skip  # (h + skip) / 2 needs equal widths
        assert block.out_channels == (pending[-1] if pending else cfg.model_channels)
        h = block.out_channels if up is None else up.out_channels
    assert sum(up is not None for _, up in layout.decoder) == len(cfg.channel_mult) - 1
    # concatenated skips widen the decoder inputs instead
    concat_cfg = UNetConfig(model_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_groups=8, additive_skips=False)
    concat = unet_layout(concat_cfg)
    assert concat.decoder[0][0].in_channels == 2 * concat.middle[-1].out_channels


def test_concatenated_skips_run():
    cfg = UNetConfig(
        in_channels=8, model_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_groups=8, additive_skips=False
    )
    model = _randomise(WDMUNet(cfg)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 8, 4, 4, 4), torch.tensor([5]))
    assert out.shape == (1, 8, 4, 4, 4) and torch.isfinite(out).all()


def test_timestep_embedding_is_cos_then_sin():
    t = torch.tensor([0, 5])
    emb = timestep_embedding(t, 7, max_period=100.0)
    assert emb.shape == (2, 7)
    torch.testing.assert_close(emb[0], torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]))
    half = 3
    for k in range(half):
        freq = 100.0 ** (-k / half)
        assert emb[1, k].item() == pytest.approx(math.cos(5 * freq), abs=1e-6)
        assert emb[1, half + k].item() == pytest.approx(math.sin(5 * freq), abs=1e-6)
    assert emb[1, -1].item() == 0.0  # odd width: zero padding


def test_gradient_checkpointing_gives_the_same_values_and_gradients():
    model = _randomise(WDMUNet(TINY)).train()
    x = torch.randn(1, 16, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([10])

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        out = model(x, t)
        out.square().mean().backward()
        return out.detach(), [p.grad.clone() for p in model.parameters()]

    out_plain, grads_plain = run()
    model.set_gradient_checkpointing(True)
    out_ckpt, grads_ckpt = run()
    torch.testing.assert_close(out_ckpt, out_plain)
    for a, b in zip(grads_ckpt, grads_plain):
        torch.testing.assert_close(a, b)


def test_channels_last_and_bf16_autocast():
    model = _randomise(WDMUNet(TINY)).eval()
    x = torch.randn(1, 16, 8, 8, 8, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([400])
    with torch.no_grad():
        reference = model(x, t)
        model_cl = model.to(memory_format=torch.channels_last_3d)
        channels_last = model_cl(x.to(memory_format=torch.channels_last_3d), t)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model_cl(x, t)
    torch.testing.assert_close(channels_last, reference, rtol=1e-4, atol=1e-4)
    assert mixed.dtype == torch.bfloat16
    assert _relative_error(mixed.float(), reference) < 5e-2


def test_count_parameters_matches_a_hand_count():
    cfg = UNetConfig(in_channels=8, out_channels=8, model_channels=8, channel_mult=(1,), num_res_blocks=1, num_groups=8)
    model = WDMUNet(cfg)
    e = 4 * 8
    res = 2 * 8 + (8 * 8 * 27 + 8) + (e * 8 + 8) + 2 * 8 + (8 * 8 * 27 + 8)  # GN, conv, proj, GN, conv
    expected = (8 * e + e + e * e + e) + (8 * 8 * 27 + 8) + res * (1 + 2 + 2) + 2 * 8 + (8 * 8 * 27 + 8)
    assert count_parameters(model) == expected
    for p in model.stem.parameters():
        p.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == expected - (8 * 8 * 27 + 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    model = _randomise(WDMUNet(TINY)).eval()
    x = torch.randn(1, 16, 8, 8, 8)
    t = torch.tensor([123])
    with torch.no_grad():
        ref = model(x, t)
        out = model.cuda()(x.cuda(), t.cuda()).cpu()
    assert _relative_error(out, ref) < 1e-4
