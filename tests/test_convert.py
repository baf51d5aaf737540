"""Upstream checkpoint conversion: full-size key manifests, CLI round trip on the parity fixtures, clear errors."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import load_fixture

from wdm_inpaint.checkpoint import load_checkpoint, read_checkpoint
from wdm_inpaint.cli.main import main
from wdm_inpaint.convert import (
    ConversionError,
    convert_checkpoint,
    convert_state_dict,
    infer_unet_config,
    upstream_key_to_ours,
)
from wdm_inpaint.models.unet import WDMUNet, count_parameters

MANIFESTS = {
    "unet_akh_brats256.keys.json": dict(in_channels=16, channel_mult=(1, 2, 2, 4, 4, 4), parameters=83_172_552),
    "unet_default_brats128.keys.json": dict(in_channels=8, channel_mult=(1, 2, 2, 4, 4), parameters=57_914_824),
}


def _meta_state_dict(upstream_dir, name: str) -> dict[str, torch.Tensor]:
    """A weightless (meta-device) state dict with the manifest's keys and shapes."""
    keys = json.loads((upstream_dir / name).read_text())
    return {k: torch.empty(shape, device="meta") for k, shape in keys.items()}


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_full_size_manifests_convert_with_every_key_consumed(upstream_dir, name):
    expected = MANIFESTS[name]
    upstream = _meta_state_dict(upstream_dir, name)
    config, converted = convert_state_dict(upstream)
    assert config.in_channels == expected["in_channels"]
    assert config.out_channels == 8 and config.model_channels == 64 and config.num_res_blocks == 2
    assert config.channel_mult == expected["channel_mult"] and config.additive_skips
    assert len(converted) == len(upstream)  # one of ours per upstream key
    assert sum(v.numel() for v in converted.values()) == expected["parameters"]
    with torch.device("meta"):
        model = WDMUNet(config)
    model.load_state_dict(converted, strict=True, assign=True)
    assert count_parameters(model) == expected["parameters"]


@pytest.mark.parametrize(
    ("upstream", "ours"),
    [
        ("time_embed.2.weight", "time_embedding.linear_2.weight"),
        ("input_blocks.0.0.bias", "stem.bias"),
        ("input_blocks.3.0.skip_connection.weight", "encoder.2.skip.weight"),
        ("input_blocks.2.0.emb_layers.1.bias", "encoder.1.time_proj.bias"),
        ("middle_block.1.out_layers.3.weight", "middle.1.conv2.weight"),
        ("output_blocks.4.1.in_layers.0.weight", "decoder.4.upsample.norm1.weight"),
        ("output_blocks.0.0.out_layers.0.bias", "decoder.0.block.norm2.bias"),
        ("out.2.weight", "head.conv.weight"),
        ("input_blocks.1.1.qkv.weight", None),
    ],
)
def test_key_mapping(upstream, ours):
    assert upstream_key_to_ours(upstream) == ours


def test_missing_extra_and_misshapen_keys_raise_clearly(upstream_dir):
    base = _meta_state_dict(upstream_dir, "unet_akh_brats256.keys.json")
    missing = dict(base)
    del missing["output_blocks.3.0.in_layers.0.bias"]
    with pytest.raises(ConversionError, match=r"1 parameter\(s\) missing: \['decoder\.3\.block\.norm1\.bias'\]"):
        convert_state_dict(missing)
    extra = dict(base)
    extra["output_blocks.3.0.extra_layers.0.weight"] = torch.empty(4, device="meta")
    with pytest.raises(ConversionError, match=r"not consumed: \['output_blocks\.3\.0\.extra_layers\.0\.weight'\]"):
        convert_state_dict(extra)
    misshapen = dict(base)
    misshapen["input_blocks.2.0.emb_layers.1.weight"] = torch.empty(64, 128, device="meta")
    with pytest.raises(ConversionError, match=r"shape mismatch.*input_blocks\.2\.0\.emb_layers\.1\.weight"):
        convert_state_dict(misshapen)
    attention = dict(base)
    attention["middle_block.1.qkv.weight"] = torch.empty(768, 256, 1, device="meta")
    with pytest.raises(ConversionError, match="attention"):
        convert_state_dict(attention)
    with pytest.raises(ConversionError, match="'input_blocks.0.0.weight' is missing"):
        infer_unet_config({"foo.weight": torch.empty(3, device="meta")})


@pytest.mark.parametrize(("name", "mode"), [("unet_akh_tiny.pt", "akh"), ("unet_default_tiny.pt", "default")])
def test_cli_converts_the_tiny_fixtures_to_the_same_outputs(upstream_dir, tmp_path, capsys, name, mode):
    destination = tmp_path / "converted.pt"
    code = main(["convert-checkpoint", str(upstream_dir / name), str(destination), "--num-timesteps", "5000"])
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    model, config = load_checkpoint(destination)
    assert config.mode.name == mode
    assert config.schedule.num_timesteps == 5000
    assert read_checkpoint(destination)["metadata"]["extra"] == {"converted_from": name}
    fx = load_fixture(upstream_dir, name)
    x = fx["x_t"] if fx["cond"] is None else torch.cat([fx["x_t"], fx["cond"]], dim=1)
    with torch.no_grad():
        out = model(x.float(), fx["t"])
    reference = fx["output"].float()
    assert ((out - reference).norm() / reference.norm()).item() <= 1e-4


def test_wrapped_and_data_parallel_state_dicts(upstream_dir, tmp_path):
    state = load_fixture(upstream_dir, "unet_default_tiny.pt")["state_dict"]
    source = tmp_path / "wrapped.pt"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, "step": 10}, source)
    convert_checkpoint(source, tmp_path / "out.pt")
    converted, _ = load_checkpoint(tmp_path / "out.pt")
    _, direct = convert_state_dict(state)
    for key, value in converted.state_dict().items():
        assert torch.equal(value, direct[key])


def test_cli_errors(upstream_dir, tmp_path):
    source = upstream_dir / "unet_akh_tiny.pt"
    destination = tmp_path / "out.pt"
    destination.write_text("keep me")
    assert main(["convert-checkpoint", str(source), str(destination)]) == 1  # refuses to overwrite
    assert destination.read_text() == "keep me"
    with pytest.raises(ConversionError, match="feeds 8 input channels but unet.in_channels is 16"):
        convert_checkpoint(source, tmp_path / "x.pt", mode="default")
    with pytest.raises(ConversionError, match="does not hold a state dict"):
        convert_checkpoint(upstream_dir / "dwt_haar.pt", tmp_path / "y.pt")
    assert main(["convert-checkpoint", str(tmp_path / "absent.pt"), str(tmp_path / "z.pt")]) == 1
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "y.pt").exists()
