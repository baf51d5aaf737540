"""Label-generator GAN generator: parity with the published architecture and weight loading."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import load_fixture
from wdm_inpaint.masks.label_generator import (
    GENERATOR_FORMAT,
    LabelGenerator,
    LabelGeneratorConfig,
    convert_state_dict,
    load_label_generator,
    save_label_generator,
)


def test_parity_with_upstream_generator(upstream_dir, tmp_path):
    fx = load_fixture(upstream_dir, "label_generator_tiny.pt")
    path = tmp_path / "LabelGenerator.pth"
    torch.save(fx["state_dict"], path)
    model, config = load_label_generator(path)
    assert config.channel == fx["config"]["channel"] and config.noise_dim == fx["config"]["noise"]
    with torch.no_grad():
        out = model(fx["z"])
    assert out.shape == fx["output"].shape == (1, 3, 64, 64, 64)
    rel = (out - fx["output"]).norm() / fx["output"].norm()
    assert rel.item() <= 1e-4


def test_full_size_manifest_is_consumed_with_matching_shapes(upstream_dir):
    manifest = json.loads((upstream_dir / "label_generator_full.keys.json").read_text())
    fake = {k: torch.zeros(shape) for k, shape in manifest.items()}
    config = LabelGeneratorConfig(channel=64)
    converted = convert_state_dict(fake, config, "manifest")  # raises on any missing/unexpected/mis-shaped key
    native = LabelGenerator(config).state_dict()
    assert set(converted) == set(native)
    assert len(converted) == len(manifest)
    assert {k: tuple(v.shape) for k, v in converted.items()} == {k: tuple(v.shape) for k, v in native.items()}


def _tiny_upstream_state() -> dict[str, torch.Tensor]:
    model = LabelGenerator(LabelGeneratorConfig(channel=2, noise_dim=10))
    torch.manual_seed(0)
    for p in model.parameters():
        torch.nn.init.normal_(p)
    names = {"stem.weight": "tp_conv1.weight", "head.weight": "tp_conv5.weight"}
    names.update({f"blocks.{i}.conv.weight": f"tp_conv{i + 2}.weight" for i in range(3)})
    return {names[k]: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("wrapped", [False, True])
def test_plain_and_trainer_wrapped_state_dicts_load_identically(tmp_path, wrapped):
    state = _tiny_upstream_state()
    path = tmp_path / "g.pth"
    torch.save({"iteration": 7, "state_dict": state, "optimizer": {}} if wrapped else state, path)
    model, config = load_label_generator(path)
    assert (config.channel, config.noise_dim) == (2, 10)
    torch.testing.assert_close(model.stem.weight, state["tp_conv1.weight"])
    torch.testing.assert_close(model.blocks[2].conv.weight, state["tp_conv4.weight"])
    torch.testing.assert_close(model.head.weight, state["tp_conv5.weight"])


def test_native_checkpoint_round_trip(tmp_path):
    torch.manual_seed(1)
    model = LabelGenerator(LabelGeneratorConfig(channel=2, noise_dim=10))
    path = save_label_generator(tmp_path / "gen.pt", model, extra={"step": 3})
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == GENERATOR_FORMAT and raw["config"]["channel"] == 2
    loaded, config = load_label_generator(path)
    z = torch.randn(2, 10)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), model.eval()(z))


def test_bad_files_raise_clear_errors(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_label_generator(missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_label_generator(garbage)
    other = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(ValueError, match="not a label-generator"):
        load_label_generator(other)
    truncated = _tiny_upstream_state()
    del truncated["tp_conv3.weight"]
    bad = tmp_path / "bad.pth"
    torch.save(truncated, bad)
    with pytest.raises(ValueError, match=r"bad.pth.*missing keys.*blocks\.1\.conv\.weight"):
        load_label_generator(bad)
    wrong = _tiny_upstream_state()
    wrong["tp_conv2.weight"] = torch.zeros(5, 16, 3, 3, 3)
    torch.save(wrong, bad)
    with pytest.raises(ValueError, match="shape"):
        load_label_generator(bad)


def test_forward_rejects_wrong_latent_shape():
    model = LabelGenerator(LabelGeneratorConfig(channel=1, noise_dim=10))
    with pytest.raises(ValueError, match=r"\(B, 10\)"):
        model(torch.zeros(1, 9))
