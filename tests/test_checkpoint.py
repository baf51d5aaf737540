"""Checkpoints: round trip with the config, safe loading, clear rejection of files that are not checkpoints."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from conftest import load_fixture

import wdm_inpaint
from wdm_inpaint.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    CheckpointError,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from wdm_inpaint.config import ConfigError, ModeConfig, ScheduleConfig, UNetConfig, WDMConfig
from wdm_inpaint.models.unet import WDMUNet

CONFIG = WDMConfig(
    unet=UNetConfig(in_channels=16, model_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_groups=8),
    schedule=ScheduleConfig(num_timesteps=200),
    mode=ModeConfig(name="akh", roi_loss_weight=4.0),
)


def _model(config: WDMConfig = CONFIG, seed: int = 0) -> WDMUNet:
    model = WDMUNet(config.unet)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model


class _Payload:
    """An object whose unpickling writes a marker file (what a malicious checkpoint would do)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def test_round_trip_restores_config_weights_and_outputs(tmp_path):
    model = _model().eval()
    path = save_checkpoint(tmp_path / "ckpt.pt", model, CONFIG, step=1234, metadata={"note": "tiny", "lr": 1e-5})
    loaded, config = load_checkpoint(path)
    assert config == CONFIG
    assert not loaded.training
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    x = torch.randn(2, 16, 4, 4, 4)
    t = torch.tensor([3, 150])
    with torch.no_grad():
        assert torch.equal(loaded(x, t), model(x, t))
    meta = read_checkpoint(path)["metadata"]
    assert meta == {"package_version": wdm_inpaint.__version__, "mode": "akh", "step": 1234,
                    "extra": {"note": "tiny", "lr": 1e-5}}
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind
    assert wdm_inpaint.load_checkpoint is load_checkpoint and wdm_inpaint.save_checkpoint is save_checkpoint


def test_training_state_round_trip(tmp_path):
    model = _model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(1, 16, 4, 4, 4), torch.tensor([1])).square().mean().backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(), "epoch": 3}
    path = save_checkpoint(tmp_path / "c.pt", model, CONFIG, step=7, training_state=state)
    raw = read_checkpoint(path)
    assert isinstance(raw["config"], WDMConfig)
    restored = raw["training_state"]
    assert restored["epoch"] == 3 and torch.equal(restored["rng"], state["rng"])
    new_opt = torch.optim.AdamW(_model().parameters(), lr=1e-3)
    new_opt.load_state_dict(restored["optimizer"])
    for key, value in optimizer.state_dict()["state"][0].items():
        assert torch.equal(torch.as_tensor(new_opt.state_dict()["state"][0][key]), torch.as_tensor(value))


@pytest.mark.parametrize("writer", ["torch", "pickle", "inside_checkpoint"])
def test_pickle_with_code_payload_is_refused_without_running(tmp_path, writer):
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pt"
    if writer == "torch":
        torch.save({"state_dict": _Payload(str(marker))}, path)
    elif writer == "pickle":
        with open(path, "wb") as fh:
            pickle.dump(_Payload(str(marker)), fh, protocol=2)
    else:
        payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "config": {},
                   "state_dict": {}, "metadata": {"extra": _Payload(str(marker))}}
        torch.save(payload, path)
    with pytest.raises(CheckpointError, match="evil.pt") as info:
        load_checkpoint(path)
    assert "never runs pickled code" in str(info.value)
    assert not marker.exists()
    # the file really is malicious: an unsafe load runs the payload
    if writer == "pickle":
        with open(path, "rb") as fh:
            pickle.load(fh)
    else:
        torch.load(path, weights_only=False)
    assert marker.read_text() == "ran"


def test_random_bytes_are_refused(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(CheckpointError, match=r"noise\.pt is not a wdm-inpaint checkpoint"):
        load_checkpoint(path)


def test_upstream_state_dict_points_to_the_converter(tmp_path, upstream_dir):
    path = tmp_path / "c_brats_3000000.pt"
    torch.save(load_fixture(upstream_dir, "unet_akh_tiny.pt")["state_dict"], path)
    with pytest.raises(CheckpointError, match="convert-checkpoint") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_other_dicts_and_versions_are_refused(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(CheckpointError, match="no format marker"):
        load_checkpoint(plain)
    newer = tmp_path / "newer.pt"
    save_checkpoint(newer, _model(), CONFIG)
    raw = torch.load(newer, weights_only=True)
    raw["format_version"] = CHECKPOINT_VERSION + 1
    torch.save(raw, newer)
    with pytest.raises(CheckpointError, match="upgrade"):
        load_checkpoint(newer)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")


def test_damaged_config_or_weights_are_refused(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _model(), CONFIG)
    raw = torch.load(path, weights_only=True)
    raw["config"]["unet"]["model_channels"] = 16
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="do not match the U-Net config"):
        load_checkpoint(path)
    raw["config"]["unet"]["colour"] = "red"
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="colour"):
        load_checkpoint(path)


def test_save_validates_its_inputs(tmp_path):
    wider = UNetConfig(in_channels=16, model_channels=16, channel_mult=(1, 2), num_res_blocks=1, num_groups=8)
    other = WDMConfig(unet=wider)
    with pytest.raises(CheckpointError, match="wrong shapes"):
        save_checkpoint(tmp_path / "a.pt", _model(), other)
    inconsistent = WDMConfig(unet=CONFIG.unet, mode=ModeConfig(name="default"))
    with pytest.raises(ConfigError, match="feeds 8 input channels"):
        save_checkpoint(tmp_path / "b.pt", _model(), inconsistent)
    with pytest.raises(ConfigError, match="JSON"):
        save_checkpoint(tmp_path / "c.pt", _model(), CONFIG, metadata={"tensor": torch.zeros(1)})
    assert list(tmp_path.iterdir()) == []  # nothing written, not even partially


def test_state_dict_input_and_map_location(tmp_path):
    model = _model()
    path = save_checkpoint(tmp_path / "sd.pt", model.state_dict(), CONFIG)
    loaded, _ = load_checkpoint(path, map_location="cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))
    assert next(loaded.parameters()).device.type == "cpu"


def test_export_drops_training_state_and_keeps_weights(tmp_path):
    from wdm_inpaint.checkpoint import export_checkpoint, load_checkpoint, read_checkpoint, save_checkpoint
    from wdm_inpaint.config import ModeConfig, UNetConfig, WDMConfig
    from wdm_inpaint.models.unet import WDMUNet

    config = WDMConfig(
        unet=UNetConfig(in_channels=16, model_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_groups=4),
        mode=ModeConfig(name="akh"),
    )
    model = WDMUNet(config.unet)
    src = save_checkpoint(tmp_path / "train.pt", model, config, step=7, metadata={"run": "a"},
                          training_state={"optimizer": {"lr": torch.tensor(1.0)}})
    dst = export_checkpoint(src, tmp_path / "export.pt", metadata={"card": "docs/x.md"})
    raw = read_checkpoint(dst)
    assert "training_state" not in raw
    assert raw["metadata"]["step"] == 7 and raw["metadata"]["extra"] == {"run": "a", "card": "docs/x.md"}
    loaded, loaded_config = load_checkpoint(dst)
    assert loaded_config == config
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    assert dst.stat().st_size < src.stat().st_size
