"""Kill-and-resume: ``wdm-inpaint train`` SIGKILLed mid-run and resumed reproduces the uninterrupted run exactly."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from wdm_inpaint.checkpoint import read_checkpoint
from wdm_inpaint.config import ConfigError
from wdm_inpaint.training.checkpointing import checkpoint_path, latest_checkpoint, list_checkpoints
from wdm_inpaint.training.config import TrainConfig, load_config
from wdm_inpaint.training.launch import resolve_run
from wdm_inpaint.training.logging_tb import METRICS_FILE, read_metrics
from wdm_inpaint.training.trainer import Trainer
from wdm_inpaint.training.wdm_task import WDMTask

from _training_helpers import (  # noqa: F401 (one_thread: autouse fixture)
    cli_env,
    one_thread,
    run_cli,
    synthetic_batches,
    tiny_config,
    wdm_cli,
    write_dataset,
    write_yaml,
)

KILL_AFTER_STEP = 6
MAX_STEPS = 16
KILL_TIMEOUT_S = 120.0


@pytest.mark.slow
def test_sigkill_then_resume_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    split = write_dataset(tmp_path / "data", n_train=3, n_val=0)
    config = tiny_config(
        "akh",
        split,
        tmp_path / "runs",
        "full",
        loop={"max_steps": MAX_STEPS},
        optim={"lr": 2e-3, "warmup_steps": 3, "lr_schedule": "cosine", "grad_clip_norm": 1.0},
        ema={"enabled": True, "decay": 0.9},
        checkpoint={"every": 3, "keep_last": 2},
        data={"augment": {"flip_prob": 0.5, "affine_prob": 0.5, "bias_field_prob": 0.0, "gamma_prob": 0.5}},
    )
    path = write_yaml(tmp_path / "akh.yaml", config)

    full = run_cli("train", "-c", str(path))
    assert full.returncode == 0, full.stderr

    killed_dir = tmp_path / "runs" / "killed"
    proc = subprocess.Popen(
        wdm_cli("train", "-c", str(path), "name=killed"), env=cli_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while not checkpoint_path(killed_dir, KILL_AFTER_STEP).exists():
        assert proc.poll() is None, f"training ended before it could be killed: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "no checkpoint appeared in time"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not checkpoint_path(killed_dir, MAX_STEPS).exists(), "the run finished before the kill"
    surviving = list_checkpoints(killed_dir)
    for step, ckpt in surviving:  # whatever survives under a final name is complete
        assert read_checkpoint(ckpt)["training_state"]["step"] == step
    assert surviving[-1][0] >= KILL_AFTER_STEP

    resumed = run_cli("train", "--resume", str(killed_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr

    expected = read_metrics(tmp_path / "runs" / "full" / METRICS_FILE)
    assert [r["step"] for r in expected] == list(range(1, MAX_STEPS + 1))
    assert read_metrics(killed_dir / METRICS_FILE) == expected
    a = read_checkpoint(latest_checkpoint(tmp_path / "runs" / "full"))
    b = read_checkpoint(latest_checkpoint(killed_dir))
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])  # EMA weights
    raw_a, raw_b = a["training_state"]["model_weights"], b["training_state"]["model_weights"]
    assert all(torch.equal(raw_a[k], raw_b[k]) for k in raw_a)


def _short_run(tmp_path: Path, name: str = "r") -> tuple[TrainConfig, Path]:
    data = tiny_config("akh", None, tmp_path / "runs", name, loop={"max_steps": 2}, checkpoint={"every": 2})
    data["model"]["preprocess"]["spatial_size"] = [16, 16, 16]
    data["logging"]["tensorboard"] = False
    path = write_yaml(tmp_path / "c.yaml", data)
    config = load_config(TrainConfig, path)
    Trainer(WDMTask(config.model), config, synthetic_batches("akh", n=1, size=16)).fit()
    return config, path


def test_new_run_refuses_a_folder_with_checkpoints(tmp_path: Path) -> None:
    config, path = _short_run(tmp_path)
    with pytest.raises(FileExistsError, match="--resume"):
        resolve_run(TrainConfig, path, [], None)
    other, run_dir, ckpt = resolve_run(TrainConfig, path, ["name=other"], None)
    assert run_dir == config.run_dir.parent / "other" and ckpt is None


def test_resume_uses_the_stored_config_with_overrides(tmp_path: Path) -> None:
    config, path = _short_run(tmp_path)
    resumed, run_dir, ckpt = resolve_run(TrainConfig, None, ["loop.max_steps=5"], config.run_dir)
    assert run_dir == config.run_dir and ckpt == latest_checkpoint(config.run_dir)
    assert resumed.loop.max_steps == 5 and resumed.model == config.model


def test_resume_with_a_disagreeing_config_file_names_the_keys(tmp_path: Path) -> None:
    config, path = _short_run(tmp_path)
    data = tiny_config("akh", None, tmp_path / "runs", "r", loop={"max_steps": 2}, optim={"lr": 0.5})
    data["model"]["preprocess"]["spatial_size"] = [16, 16, 16]
    other = write_yaml(tmp_path / "other.yaml", data)
    with pytest.raises(ConfigError, match=r"optim\.lr"):
        resolve_run(TrainConfig, other, [], config.run_dir)
