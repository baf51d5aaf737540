"""Label-GAN training through the generic trainer: checkpoints, exact resume, exported generator."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from wdm_inpaint.cli.main import main
from wdm_inpaint.masks.label_data import LabelDataConfig, LabelShapeDataset, labels_to_channels
from wdm_inpaint.masks.label_gan_task import gradient_difference_loss, gradient_penalty
from wdm_inpaint.masks.label_generator import load_label_generator


@pytest.fixture()
def restore_torch_determinism():
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)


def _write_labels(root, n=4):
    rng = np.random.default_rng(0)
    size = (40, 40, 36)
    grid = np.indices(size).astype(float)
    root.mkdir()
    for k in range(n):
        c = rng.uniform(14, 24, 3)
        r = rng.uniform(4, 8, 3)
        d = (((grid - c[:, None, None, None]) / r[:, None, None, None]) ** 2).sum(0)
        seg = np.zeros(size, np.uint8)
        seg[d <= 1] = 2
        seg[d <= 0.5] = 3
        seg[d <= 0.2] = 1
        nib.save(nib.Nifti1Image(seg, np.eye(4)), root / f"BraTS-GLI-{k:05d}-000-seg.nii.gz")


def _config(tmp_path, name):
    return {
        "name": name,
        "output_dir": str(tmp_path / "runs"),
        "generator": {"channel": 1},
        "nets": {"critic_channel": 1, "encoder_channel": 1, "code_hidden": 8},
        "data": {"root": str(tmp_path / "labels"), "pattern": "*-seg.nii.gz"},
        "loop": {"max_steps": 3, "batch_size": 1, "seed": 3, "device": "cpu"},
        "optim": {"lr": 1e-3, "betas": [0.5, 0.9]},
        "checkpoint": {"every": 2, "keep_last": 5},
        "logging": {"log_every": 1, "image_every": 2, "progress": False},
    }


def test_labels_to_channels_follow_brats_regions():
    seg = np.array([0, 1, 2, 3, 4]).reshape(5, 1, 1)
    tc, wt, et = labels_to_channels(seg, "brats")
    assert tc[:, 0, 0].tolist() == [False, True, False, True, True]
    assert wt[:, 0, 0].tolist() == [False, True, True, True, True]
    assert et[:, 0, 0].tolist() == [False, False, False, True, True]
    binary = labels_to_channels(np.array([0, 1]).reshape(2, 1, 1), "auto")
    assert binary[:, :, 0, 0].tolist() == [[False, True]] * 3
    with pytest.raises(ValueError, match="unexpected BraTS labels"):
        labels_to_channels(np.array([0, 7]).reshape(2, 1, 1), "brats")


def test_dataset_crops_are_tumour_centred(tmp_path):
    _write_labels(tmp_path / "labels", n=2)
    ds = LabelShapeDataset(LabelDataConfig(root=str(tmp_path / "labels"), flip_probability=0.0))
    assert ds.samples.shape == (2, 3, 64, 64, 64) and ds.samples.dtype == torch.uint8
    wt = ds.samples[0, 1].numpy().astype(bool)
    idx = np.nonzero(wt)
    centre = [(i.min() + i.max()) / 2 for i in idx]
    assert all(abs(c - 31.5) <= 1.5 for c in centre)
    ds.set_random_state(5)
    a = ds[0]["label"]
    ds.set_random_state(5)
    torch.testing.assert_close(ds[0]["label"], a)


def test_gradient_penalty_and_gdl_values():
    lin = torch.nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 0.0, 4.0, 0.0]]))  # |grad| = 5 everywhere
    gp = gradient_penalty(lambda x: lin(x).flatten(), torch.zeros(3, 4), torch.ones(3, 4), torch.Generator())
    assert gp.item() == pytest.approx(16.0)
    ramp = torch.arange(4.0).view(1, 1, 4, 1, 1).expand(1, 1, 4, 2, 2)
    assert gradient_difference_loss(ramp, torch.zeros_like(ramp)).item() == pytest.approx(1.0)
    assert gradient_difference_loss(ramp, ramp).item() == 0.0


@pytest.mark.slow
def test_training_resume_is_exact_and_exports_generator(tmp_path, restore_torch_determinism):
    _write_labels(tmp_path / "labels")
    cfg_path = tmp_path / "gan.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(tmp_path, "straight")))
    assert main(["-q", "train-label-gan", "-c", str(cfg_path)]) == 0
    straight = tmp_path / "runs" / "straight"

    cfg_path.write_text(yaml.safe_dump(_config(tmp_path, "resumed")))
    assert main(["-q", "train-label-gan", "-c", str(cfg_path), "loop.max_steps=2"]) == 0
    resumed = tmp_path / "runs" / "resumed"
    assert (resumed / "checkpoints" / "step_00000002.pt").is_file()
    assert main(["-q", "train-label-gan", "--resume", str(resumed), "loop.max_steps=3"]) == 0

    a = torch.load(straight / "checkpoints" / "step_00000003.pt", weights_only=True)
    b = torch.load(resumed / "checkpoints" / "step_00000003.pt", weights_only=True)
    assert set(a["modules"]) == {"generator", "critic", "encoder", "code_critic"}
    for name, state in a["modules"].items():
        for key, value in state.items():
            assert torch.equal(value, b["modules"][name][key]), f"{name}.{key} differs after resume"
    initial = torch.load(resumed / "checkpoints" / "step_00000002.pt", weights_only=True)
    assert not torch.equal(initial["modules"]["generator"]["head.weight"], a["modules"]["generator"]["head.weight"])

    steps = [json.loads(line)["step"] for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    assert any((resumed / "tensorboard").iterdir())

    # The training checkpoint and the exported generator load as generators with the trained weights.
    from_ckpt, config = load_label_generator(straight / "checkpoints" / "step_00000003.pt")
    exported, _ = load_label_generator(straight / "generator.pt")
    assert config.channel == 1
    torch.testing.assert_close(from_ckpt.head.weight, a["modules"]["generator"]["head.weight"])
    torch.testing.assert_close(exported.head.weight, a["modules"]["generator"]["head.weight"])

    out = tmp_path / "shapes"
    assert main(["-q", "sample-labels", "-m", str(straight / "generator.pt"), "-n", "2", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["shape_0000.nii.gz", "shape_0001.nii.gz"]
    img = nib.load(out / "shape_0000.nii.gz")
    assert img.shape == (64, 64, 64)
    assert set(np.unique(np.asarray(img.dataobj)).tolist()) <= {0, 1, 2, 3}
    summary = json.loads((out / "shapes_summary.json").read_text())
    assert summary["summary"]["count"] == 2


@pytest.mark.parametrize("kind", ["wgan_gp", "alpha_wgan_gp"])
def test_one_step_updates_every_player(kind):
    from wdm_inpaint.masks.label_gan_task import LabelGANTask, LabelGANTrainConfig
    from wdm_inpaint.training.config import load_config

    config = load_config(
        LabelGANTrainConfig,
        {
            "generator": {"channel": 1},
            "nets": {"critic_channel": 1, "encoder_channel": 1, "code_hidden": 8},
            "objective": {"kind": kind, "critic_steps": 2},
            "optim": {"lr": 1e-2},
        },
    )
    torch.manual_seed(0)
    task = LabelGANTask(config)
    expected = {"generator", "critic"} | ({"encoder", "code_critic"} if kind == "alpha_wgan_gp" else set())
    assert set(task.modules()) == expected
    task.optimizers = {k: s.optimizer for k, s in task.configure_optimizers(config.optim, 10).items()}
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in task.modules().items()}
    label = torch.zeros(2, 3, 64, 64, 64, dtype=torch.uint8)
    label[:, :, 24:40, 20:44, 28:36] = 1
    out = task.training_step({"label": label}, torch.Generator().manual_seed(1))
    assert all(torch.isfinite(v) for v in out.values())
    assert {"loss", "loss_d", "gp", "wasserstein"} <= set(out)
    for name, module in task.modules().items():
        changed = any(not torch.equal(a, b) for a, b in zip(before[name], module.parameters()))
        assert changed, f"{name} was not updated"
