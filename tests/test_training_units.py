"""Unit tests of the training building blocks: LR schedule, EMA, configs, data order, checkpoints, init-from."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from wdm_inpaint.checkpoint import save_checkpoint
from wdm_inpaint.config import ConfigError, ModeConfig, UNetConfig, WDMConfig
from wdm_inpaint.models.unet import WDMUNet
from wdm_inpaint.training.checkpointing import (
    BEST_NAME,
    capture_rng_state,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    resolve_resume,
    restore_rng_state,
    write_atomically,
)
from wdm_inpaint.training.config import EMAConfig, OptimConfig, TrainConfig, load_config
from wdm_inpaint.training.data_order import BatchStream, ResumableSampler
from wdm_inpaint.training.ema import EMA
from wdm_inpaint.training.init_from import init_from_checkpoint
from wdm_inpaint.training.lr_schedule import build_lr_scheduler, lr_factor
from wdm_inpaint.training.wdm_task import WDMTask

from _training_helpers import one_thread, tiny_config, write_yaml  # noqa: F401 (autouse fixture)

# ------------------------------------------------------------------------------------------ LR schedule


def test_warmup_then_cosine_factors() -> None:
    cfg = OptimConfig(lr=1.0, warmup_steps=4, lr_schedule="cosine", min_lr_ratio=0.1)
    # warm-up: (step + 1) / 4
    assert [lr_factor(s, cfg, 14) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    # cosine over the 10 steps after warm-up: start at 1, halfway 0.1 + 0.9 * 0.5, end at the floor 0.1
    assert lr_factor(4, cfg, 14) == pytest.approx(1.0)
    assert lr_factor(9, cfg, 14) == pytest.approx(0.55)
    assert lr_factor(14, cfg, 14) == pytest.approx(0.1)
    assert lr_factor(100, cfg, 14) == pytest.approx(0.1)


def test_constant_schedule_and_lambda_lr_drive_the_optimiser() -> None:
    cfg = OptimConfig(lr=0.2, warmup_steps=2, lr_schedule="constant")
    param = nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=cfg.lr)
    sched = build_lr_scheduler(opt, cfg, max_steps=10)
    seen = []
    for _ in range(5):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.1, 0.2, 0.2, 0.2, 0.2])


# ------------------------------------------------------------------------------------------ EMA


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))


def test_ema_blends_with_the_decay() -> None:
    m = _Tiny()
    ema = EMA(m, EMAConfig(enabled=True, decay=0.9))
    with torch.no_grad():
        m.w.fill_(1.0)
        m.count.fill_(7)
    ema.update(m, step=1)
    assert torch.allclose(ema.shadow["w"], torch.full((2,), 0.1))
    assert int(ema.shadow["count"]) == 7  # integer buffers are copied
    ema.update(m, step=2)
    assert torch.allclose(ema.shadow["w"], torch.full((2,), 0.19))


def test_ema_start_step_and_update_every() -> None:
    m = _Tiny()
    ema = EMA(m, EMAConfig(enabled=True, decay=0.5, start_step=2, update_every=2))
    with torch.no_grad():
        m.w.fill_(4.0)
    ema.update(m, step=1)  # before start: follows the weights
    assert torch.equal(ema.shadow["w"], torch.full((2,), 4.0))
    with torch.no_grad():
        m.w.fill_(0.0)
    ema.update(m, step=3)  # odd step: skipped
    assert torch.equal(ema.shadow["w"], torch.full((2,), 4.0))
    ema.update(m, step=4)
    assert torch.equal(ema.shadow["w"], torch.full((2,), 2.0))


def test_ema_applied_to_restores_the_weights() -> None:
    m = _Tiny()
    ema = EMA(m, EMAConfig(enabled=True, decay=0.5))
    with torch.no_grad():
        m.w.fill_(2.0)
    with ema.applied_to(m):
        assert torch.equal(m.w.detach(), torch.zeros(2))
    assert torch.equal(m.w.detach(), torch.full((2,), 2.0))


# ------------------------------------------------------------------------------------------ configs


def test_yaml_config_with_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    data = tiny_config("akh", None, tmp_path, "x")
    data["optim"]["learning_rate"] = 1e-4
    path = write_yaml(tmp_path / "bad.yaml", data)
    with pytest.raises(ConfigError, match=r"bad\.yaml.*learning_rate"):
        load_config(TrainConfig, path)


def test_yaml_config_with_wrong_type_names_key(tmp_path: Path) -> None:
    data = tiny_config("akh", None, tmp_path, "x")
    data["loop"]["max_steps"] = "many"
    with pytest.raises(ConfigError, match=r"loop\.max_steps"):
        load_config(TrainConfig, write_yaml(tmp_path / "bad.yaml", data))


def test_overrides_are_parsed_into_typed_values(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "c.yaml", tiny_config("akh", None, tmp_path, "x"))
    cfg = load_config(
        TrainConfig,
        path,
        [
            "loop.max_steps=7",
            "optim.betas=[0.8, 0.95]",
            "model.unet.model_channels=16",
            "ema.enabled=true",
            "name=y",
            "data.augment.flip_prob=0.2",  # creates the section that the file leaves out
        ],
    )
    assert cfg.data.augment is not None and cfg.data.augment.flip_prob == 0.2
    assert cfg.loop.max_steps == 7
    assert cfg.optim.betas == (0.8, 0.95)
    assert cfg.model.unet.model_channels == 16
    assert cfg.ema.enabled is True
    assert cfg.run_dir == tmp_path / "y"


@pytest.mark.parametrize(
    ("override", "pattern"),
    [
        ("optim.learning_rate=1", r"unknown key 'learning_rate'"),
        ("optim.lr=fast", r"optim\.lr"),
        ("loop.max_steps", r"key\.path=value"),
        ("optim.lr.x=1", r"optim\.lr has no sub-keys"),
        ("name=../escape", r"run name"),
    ],
)
def test_bad_overrides_are_rejected_with_the_key(tmp_path: Path, override: str, pattern: str) -> None:
    path = write_yaml(tmp_path / "c.yaml", tiny_config("akh", None, tmp_path, "x"))
    with pytest.raises(ConfigError, match=pattern):
        load_config(TrainConfig, path, [override])


def test_mode_channel_mismatch_names_the_key() -> None:
    cfg = WDMConfig(unet=UNetConfig(in_channels=8, model_channels=8, channel_mult=(1, 2), num_groups=4))  # akh needs 16
    with pytest.raises(ConfigError, match=r"model\.unet\.in_channels"):
        WDMTask(cfg)


def test_cli_reports_a_bad_config_key(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from wdm_inpaint.cli.main import main

    data = tiny_config("akh", None, tmp_path, "x")
    data["loop"]["max_step"] = 3
    rc = main(["train", "-c", str(write_yaml(tmp_path / "bad.yaml", data))])
    assert rc == 1
    assert "max_step" in caplog.text and "bad.yaml" in caplog.text


# ------------------------------------------------------------------------------------------ data order


def test_sampler_shards_global_batches_like_one_big_batch() -> None:
    single = list(ResumableSampler(10, batch_size=2, seed=5))
    ranks = [list(ResumableSampler(10, batch_size=1, seed=5, rank=r, world_size=2)) for r in range(2)]
    assert len(single) == 10 and sorted(i for i, _ in single) == list(range(10))
    for step in range(5):
        global_batch = single[2 * step : 2 * step + 2]
        assert sorted([ranks[0][step], ranks[1][step]]) == sorted(global_batch)  # same samples, same seeds


def test_sampler_epochs_differ_and_positions_resume() -> None:
    s = ResumableSampler(12, batch_size=3, seed=1)
    assert not torch.equal(s.permutation(0), s.permutation(1))
    full = list(s)
    s.set_position(0, 2)
    assert list(s) == full[6:]


def test_batch_stream_resumes_a_map_dataset_mid_epoch() -> None:
    class Squares(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 7

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"x": torch.tensor(float(i * i))}

    a = BatchStream(Squares(), batch_size=2, seed=0)
    seen = [next(a) for _ in range(8)]  # 3 batches per epoch: crosses two epoch boundaries
    b = BatchStream(Squares(), batch_size=2, seed=0)
    for _ in range(4):
        next(b)
    c = BatchStream(Squares(), batch_size=2, seed=0)
    c.load_state_dict(b.state_dict())
    for expected in seen[4:]:
        got = next(c)
        assert torch.equal(got["x"], expected["x"]) and torch.equal(got["sample_seed"], expected["sample_seed"])
    assert c.state_dict() == {"epoch": 2, "batches_done": 2}


def test_batch_stream_skips_consumed_batches_of_an_iterable() -> None:
    batches = [{"x": torch.tensor(float(i))} for i in range(3)]
    s = BatchStream(batches, batch_size=1, seed=0)
    s.load_state_dict({"epoch": 1, "batches_done": 2})
    assert [float(next(s)["x"]) for _ in range(3)] == [2.0, 0.0, 1.0]


# ------------------------------------------------------------------------------------------ checkpoints


def test_write_atomically_never_leaves_a_partial_file(tmp_path: Path) -> None:
    final = checkpoint_path(tmp_path, 3)
    write_atomically(final, lambda p: p.write_bytes(b"good"))

    def broken(p: Path) -> None:
        p.write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(final, broken)
    assert final.read_bytes() == b"good"
    assert [p.name for p in final.parent.iterdir()] == [final.name]


def test_keep_last_n_and_latest(tmp_path: Path) -> None:
    for step in (10, 20, 30, 40, 50):
        write_atomically(checkpoint_path(tmp_path, step), lambda p: p.write_bytes(b"x"))
    best = checkpoint_path(tmp_path, 0).parent / BEST_NAME
    best.write_bytes(b"best")
    (best.parent / ".step_00000060.pt.abc.tmp.pt").write_bytes(b"partial")  # a killed write
    removed = prune_checkpoints(tmp_path, keep_last=2)
    assert sorted(p.name for p in removed) == ["step_00000010.pt", "step_00000020.pt", "step_00000030.pt"]
    assert [s for s, _ in list_checkpoints(tmp_path)] == [40, 50]
    assert best.exists()
    assert latest_checkpoint(tmp_path) == checkpoint_path(tmp_path, 50)
    assert resolve_resume(tmp_path) == (tmp_path, checkpoint_path(tmp_path, 50))
    assert resolve_resume(checkpoint_path(tmp_path, 40)) == (tmp_path, checkpoint_path(tmp_path, 40))


def test_resolve_resume_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoints"):
        resolve_resume(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        resolve_resume(tmp_path / "missing")
    stray = tmp_path / "model.pt"
    stray.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="checkpoints/"):
        resolve_resume(stray)


def test_rng_state_round_trip() -> None:
    state = capture_rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(state)
    second = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], second[0])
    assert np.array_equal(first[1], second[1])
    assert first[2] == second[2]


# ------------------------------------------------------------------------------------------ init from unconditional


def test_conditional_model_initialised_from_unconditional_checkpoint(tmp_path: Path) -> None:
    unet = {"model_channels": 8, "channel_mult": (1, 2), "num_groups": 4}
    uncond_cfg = WDMConfig(unet=UNetConfig(in_channels=8, **unet), mode=ModeConfig(name="default"))
    torch.manual_seed(0)
    source = WDMUNet(uncond_cfg.unet)
    path = save_checkpoint(tmp_path / "default.pt", source, uncond_cfg)

    torch.manual_seed(1)
    target = WDMUNet(UNetConfig(in_channels=16, **unet))
    fresh = {k: v.clone() for k, v in target.state_dict().items()}
    report = init_from_checkpoint(target, path)

    assert sorted(report.reinitialised) == ["stem.bias", "stem.weight"]
    assert report.missing == [] and report.unexpected == []
    loaded = target.state_dict()
    for key, value in source.state_dict().items():
        if key.startswith("stem."):
            assert torch.equal(loaded[key], fresh[key]), key  # the whole input layer keeps its fresh init
        else:
            assert torch.equal(loaded[key], value), key
    src = source.state_dict()
    assert any(not torch.equal(fresh[k], src[k]) for k in src if not k.startswith("stem."))  # the copy is visible
    with torch.no_grad():
        assert math.isfinite(float(target(torch.zeros(1, 16, 8, 8, 8), torch.zeros(1, dtype=torch.long)).sum()))


# ------------------------------------------------------------------------------------------ shipped configs

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
TRAIN_CONFIGS = [f"{mode}_{size}.yaml" for mode in ("default", "akh", "akh_context") for size in ("full", "tiny_cpu")]


@pytest.mark.parametrize("name", TRAIN_CONFIGS)
def test_shipped_configs_load_and_match_their_mode(name: str) -> None:
    from wdm_inpaint.checkpoint import check_config

    cfg = load_config(TrainConfig, CONFIG_DIR / name)
    check_config(cfg.model, name)  # U-Net input channels agree with the mode
    assert cfg.name == name.removesuffix(".yaml")


def test_akh_full_is_the_reference_recipe() -> None:
    cfg = load_config(TrainConfig, CONFIG_DIR / "akh_full.yaml")
    m = cfg.model
    assert m.mode.name == "akh" and m.mode.roi_loss_weight == 10.0
    assert m.preprocess.spatial_size == (256, 256, 256)
    assert (m.unet.model_channels, m.unet.channel_mult, m.unet.num_res_blocks) == (64, (1, 2, 2, 4, 4, 4), 2)
    assert (m.schedule.kind, m.schedule.num_timesteps) == ("linear", 1000)
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.lr_schedule) == (1e-5, 0.0, "constant")
    assert cfg.loop.batch_size == 1 and not cfg.ema.enabled


def test_cli_train_with_init_from_loads_all_but_the_input_layer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from wdm_inpaint.checkpoint import read_checkpoint
    from wdm_inpaint.cli.main import main

    from _training_helpers import write_dataset

    unet = {"model_channels": 8, "channel_mult": (1, 2), "num_groups": 4}
    torch.manual_seed(0)
    source = WDMUNet(UNetConfig(in_channels=8, **unet))
    uncond_config = WDMConfig(unet=UNetConfig(in_channels=8, **unet), mode=ModeConfig(name="default"))
    uncond = save_checkpoint(tmp_path / "default.pt", source, uncond_config)
    data = tiny_config("akh", write_dataset(tmp_path / "data", n_train=1, n_val=0, size=16), tmp_path / "runs", "init")
    data["model"]["preprocess"]["spatial_size"] = [16, 16, 16]
    data["loop"].update(max_steps=1, deterministic=False)
    data["optim"]["lr"] = 1e-12  # one AdamW step moves each weight by about lr: the loaded values stay visible
    data["logging"]["tensorboard"] = False
    data["init_from"] = str(uncond)
    caplog.set_level(logging.INFO, logger="wdm_inpaint.training.init_from")
    assert main(["train", "-c", str(write_yaml(tmp_path / "c.yaml", data))]) == 0

    ckpt = read_checkpoint(tmp_path / "runs" / "init" / "checkpoints" / "step_00000001.pt")
    trained, src = ckpt["state_dict"], source.state_dict()
    for key, value in src.items():
        if key.startswith("stem."):
            assert trained[key].shape != value.shape or not torch.allclose(trained[key], value), key
        else:
            torch.testing.assert_close(trained[key], value, rtol=0, atol=1e-9, msg=key)
    assert "re-initialised (shape differs): stem.weight, stem.bias" in caplog.text
