"""DDP: two gloo processes with batch 1 each train like one process with batch 2 (same global batch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wdm_inpaint.checkpoint import read_checkpoint
from wdm_inpaint.training.checkpointing import latest_checkpoint
from wdm_inpaint.training.logging_tb import METRICS_FILE, read_metrics

from _training_helpers import cli_env, run_cli, tiny_config, write_dataset, write_yaml

STEPS = 4


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    split = write_dataset(tmp_path / "data", n_train=4, n_val=0, size=16)
    sections = {"loop": {"max_steps": STEPS}, "checkpoint": {"every": STEPS}}
    single = tiny_config("akh", split, tmp_path / "runs", "single", **sections)
    single["model"]["preprocess"]["spatial_size"] = [16, 16, 16]
    single["loop"]["batch_size"] = 2
    single_yaml = write_yaml(tmp_path / "single.yaml", single)
    ddp = {**single, "name": "ddp", "loop": {**single["loop"], "batch_size": 1}}
    ddp_yaml = write_yaml(tmp_path / "ddp.yaml", ddp)

    one = run_cli("train", "-c", str(single_yaml))
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "wdm_inpaint.cli.main", "train", "-c", str(ddp_yaml)],
        env=cli_env(), capture_output=True, text=True, timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert "process 1 of 2 (gloo" in two.stderr

    a = read_metrics(tmp_path / "runs" / "single" / METRICS_FILE)
    b = read_metrics(tmp_path / "runs" / "ddp" / METRICS_FILE)
    assert [r["step"] for r in b] == list(range(1, STEPS + 1))  # one writer only
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        for key in ("loss", "image_mse", "roi_mse"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-5, abs=1e-7), (ra["step"], key)
    wa = read_checkpoint(latest_checkpoint(tmp_path / "runs" / "single"))["state_dict"]
    ddp_ckpt = read_checkpoint(latest_checkpoint(tmp_path / "runs" / "ddp"))
    assert len(ddp_ckpt["training_state"]["rng_per_rank"]) == 2  # every process' RNG state is kept for resume
    wb = ddp_ckpt["state_dict"]
    # all-reduced gradients differ from batch gradients by float rounding; Adam's normalised update turns that into
    # weight differences far below one step (lr): allow 1% of one step
    step_size = single["optim"]["lr"]
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=0, atol=0.01 * step_size, msg=key)
