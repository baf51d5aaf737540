"""The generic trainer driving the diffusion task (and a two-optimiser task) on in-memory synthetic data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from wdm_inpaint.checkpoint import load_checkpoint, read_checkpoint
from wdm_inpaint.config import to_dict
from wdm_inpaint.training.checkpointing import BEST_NAME, CHECKPOINT_DIR, latest_checkpoint, list_checkpoints
from wdm_inpaint.training.config import TrainConfig, TrainerConfig, load_config
from wdm_inpaint.training.logging_tb import METRICS_FILE, TENSORBOARD_DIR, read_metrics
from wdm_inpaint.training.task import OptimizerSetup, TrainingTask, build_adamw
from wdm_inpaint.training.trainer import CONFIG_FILE, Trainer
from wdm_inpaint.training.wdm_task import WDMTask

from _training_helpers import one_thread, synthetic_batches, tiny_config  # noqa: F401 (autouse fixture)

SIZE = 16
"""Image side of the in-memory volumes (8^3 wavelet grid)."""


def make_config(tmp_path: Path, mode: str = "akh", name: str = "run", **sections: Any) -> TrainConfig:
    data = tiny_config(mode, None, tmp_path, name, **sections)
    data["model"]["preprocess"]["spatial_size"] = [SIZE] * 3
    data["logging"]["tensorboard"] = sections.get("logging", {}).get("tensorboard", False)
    return load_config(TrainConfig, data)


def make_task(config: TrainConfig, seed: int = 0) -> WDMTask:
    torch.manual_seed(seed)
    return WDMTask(config.model)


def fixed_loss(task: WDMTask, batches: list[dict[str, torch.Tensor]], seeds: int = 4) -> float:
    """Mean loss over the batches at fixed timesteps and noise (a deterministic yardstick)."""
    task.model.eval()
    total = 0.0
    with torch.no_grad():
        for i, batch in enumerate(batches):
            for s in range(seeds):
                total += float(task.training_step(batch, torch.Generator().manual_seed(1000 * i + s))["loss"])
    return total / (len(batches) * seeds)


@pytest.mark.parametrize("mode", ["default", "akh", "akh_context"])
def test_loss_falls_for_each_mode(tmp_path: Path, mode: str) -> None:
    batches = synthetic_batches(mode, n=1, size=SIZE)
    config = make_config(tmp_path, mode, loop={"max_steps": 15}, optim={"lr": 3e-3}, checkpoint={"every": 15})
    task = make_task(config)
    before = fixed_loss(task, batches)
    summary = Trainer(task, config, batches).fit()
    after = fixed_loss(task, batches)
    assert summary.final_step == 15
    assert after < 0.6 * before, (before, after)


def test_tensorboard_metrics_config_and_checkpoint_contents(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = make_config(
        tmp_path,
        loop={"max_steps": 4},
        logging={"log_every": 2, "image_every": 2, "tensorboard": True},
        checkpoint={"every": 2, "keep_last": 1},
        ema={"enabled": True, "decay": 0.5},
    )
    Trainer(make_task(config), config, synthetic_batches("akh", n=2, size=SIZE)).fit()
    run = config.run_dir

    events = EventAccumulator(str(run / TENSORBOARD_DIR))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/image_mse", "train/roi_mse", "lr/main", "perf/step_time_s"} <= scalars
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4]
    assert events.Tags()["images"], "image panels were not written"

    records = read_metrics(run / METRICS_FILE)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all({"loss", "image_mse", "roi_mse", "lr/main"} <= set(r) for r in records)

    assert load_config(TrainConfig, run / CONFIG_FILE) == config
    assert [s for s, _ in list_checkpoints(run)] == [4]  # keep_last=1
    ckpt = read_checkpoint(latest_checkpoint(run))
    assert ckpt["training_state"]["config"] == to_dict(config)
    assert ckpt["training_state"]["step"] == 4
    assert ckpt["metadata"]["extra"]["weights"] == "ema"
    model, model_config = load_checkpoint(latest_checkpoint(run))  # also an inference checkpoint
    assert model_config == config.model
    assert torch.equal(model.state_dict()["stem.weight"], ckpt["state_dict"]["stem.weight"])
    # the EMA (inference) weights differ from the trained weights kept for resuming
    assert not torch.equal(ckpt["state_dict"]["stem.weight"], ckpt["training_state"]["model_weights"]["stem.weight"])


def _weights(task: TrainingTask) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.clone() for n, m in task.modules().items() for k, v in m.state_dict().items()}


def test_stop_and_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    sections = {
        "loop": {"max_steps": 8},
        "optim": {"lr": 2e-3, "warmup_steps": 2, "lr_schedule": "cosine", "grad_clip_norm": 0.5},
        "ema": {"enabled": True, "decay": 0.8},
        "checkpoint": {"every": 3},
    }
    batches = synthetic_batches("akh", n=3, size=SIZE, seed=4)
    full_cfg = make_config(tmp_path, name="full", **sections)
    full_task = make_task(full_cfg)
    Trainer(full_task, full_cfg, batches).fit()

    cfg = make_config(tmp_path, name="split", **sections)
    Trainer(make_task(cfg), cfg, batches).fit(until_step=5)
    resumed_task = make_task(cfg, seed=99)  # different init: everything must come from the checkpoint
    trainer = Trainer(resumed_task, cfg, batches)
    trainer.restore(latest_checkpoint(cfg.run_dir))
    assert trainer.step == 5
    trainer.fit()

    assert read_metrics(cfg.run_dir / METRICS_FILE) == read_metrics(full_cfg.run_dir / METRICS_FILE)
    a, b = _weights(full_task), _weights(resumed_task)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ema_a = read_checkpoint(latest_checkpoint(full_cfg.run_dir))["state_dict"]
    ema_b = read_checkpoint(latest_checkpoint(cfg.run_dir))["state_dict"]
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)


def test_validation_keeps_the_best_checkpoint(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        loop={"max_steps": 6},
        validation={"every": 2, "metric": "ssim", "higher_is_better": True},
        checkpoint={"every": 6},
    )
    val = synthetic_batches("akh", n=2, size=SIZE, seed=7)
    summary = Trainer(make_task(config), config, synthetic_batches("akh", n=2, size=SIZE), val_data=val).fit()
    vals = [r for r in read_metrics(config.run_dir / METRICS_FILE) if "val/ssim" in r]
    assert [r["step"] for r in vals] == [2, 4, 6]
    assert all({"val/loss", "val/psnr", "val/mse"} <= set(r) for r in vals)
    best = max(vals, key=lambda r: r["val/ssim"])
    assert summary.best_metric == best["val/ssim"]
    best_ckpt = read_checkpoint(config.run_dir / CHECKPOINT_DIR / BEST_NAME)
    assert best_ckpt["training_state"]["step"] == best["step"]
    assert best_ckpt["training_state"]["best_metric"] == best["val/ssim"]


def test_non_finite_loss_stops_with_a_clear_error(tmp_path: Path) -> None:
    batches = synthetic_batches("akh", n=1, size=SIZE)
    batches[0]["t1n"][0, 0, 0, 0, 0] = float("nan")
    config = make_config(tmp_path)
    with pytest.raises(FloatingPointError, match="non-finite loss at step 1"):
        Trainer(make_task(config), config, batches).fit()


# ------------------------------------------------------------------------------------------ manual optimisation


class TwoPlayerTask(TrainingTask):
    """A tiny adversarial task with two optimisers (the shape of a GAN task)."""

    manual_optimization = True

    def __init__(self) -> None:
        super().__init__()
        self.generator = nn.Linear(4, 4)
        self.critic = nn.Linear(4, 1)

    def modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "critic": self.critic}

    def configure_optimizers(self, config: Any, max_steps: int) -> dict[str, OptimizerSetup]:
        return {
            "generator": build_adamw(self.generator.parameters(), config, max_steps),
            "critic": build_adamw(self.critic.parameters(), config, max_steps),
        }

    def training_step(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        z = torch.randn(batch["x"].shape, generator=generator)
        opt_c = self.optimizers["critic"]
        opt_c.zero_grad()
        critic_loss = (self.critic(self.generator(z).detach()) - self.critic(batch["x"])).mean()
        critic_loss.backward()
        self.clip_gradients("critic")
        opt_c.step()
        opt_g = self.optimizers["generator"]
        opt_g.zero_grad()
        gen_loss = -self.critic(self.generator(z)).mean()
        gen_loss.backward()
        opt_g.step()
        return {"loss": gen_loss.detach(), "critic_loss": critic_loss.detach()}


def test_manual_two_optimiser_task_resumes_exactly(tmp_path: Path) -> None:
    batches = [{"x": torch.randn(3, 4, generator=torch.Generator().manual_seed(i))} for i in range(3)]
    base = {
        "loop": {"max_steps": 7, "device": "cpu"},
        "optim": {"lr": 1e-2, "lr_schedule": "cosine", "grad_clip_norm": 1.0},
        "checkpoint": {"every": 10},
        "logging": {"progress": False, "tensorboard": False},
    }
    full_cfg = load_config(TrainerConfig, {**base, "name": "full", "output_dir": str(tmp_path)})
    torch.manual_seed(0)
    full = TwoPlayerTask()
    Trainer(full, full_cfg, batches).fit()

    cfg = load_config(TrainerConfig, {**base, "name": "split", "output_dir": str(tmp_path)})
    torch.manual_seed(0)
    Trainer(TwoPlayerTask(), cfg, batches).fit(until_step=3)
    torch.manual_seed(5)
    resumed = TwoPlayerTask()
    trainer = Trainer(resumed, cfg, batches)
    trainer.restore(latest_checkpoint(cfg.run_dir))
    trainer.fit()

    records = read_metrics(cfg.run_dir / METRICS_FILE)
    assert records == read_metrics(full_cfg.run_dir / METRICS_FILE)
    assert {"loss", "critic_loss", "lr/generator", "lr/critic"} <= set(records[-1])
    assert records[-1]["lr/critic"] < records[0]["lr/critic"]  # the trainer stepped both schedulers
    a, b = _weights(full), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_automatic_style_refuses_two_optimisers(tmp_path: Path) -> None:
    class Confused(TwoPlayerTask):
        manual_optimization = False

    cfg = load_config(TrainerConfig, {"output_dir": str(tmp_path), "loop": {"device": "cpu"}})
    with pytest.raises(ValueError, match="exactly one"):
        Trainer(Confused(), cfg, [{"x": torch.zeros(1, 4)}])


def test_metrics_after_the_checkpoint_are_dropped_on_resume(tmp_path: Path) -> None:
    config = make_config(tmp_path, loop={"max_steps": 4}, checkpoint={"every": 2})
    batches = synthetic_batches("akh", n=2, size=SIZE)
    Trainer(make_task(config), config, batches).fit(until_step=2)
    path = config.run_dir / METRICS_FILE
    with open(path, "a") as fh:  # what a process killed after step 3 (before its checkpoint) leaves behind
        fh.write(json.dumps({"step": 3, "loss": 123.0}) + "\n" + '{"step": 4, "lo')
    trainer = Trainer(make_task(config), config, batches)
    trainer.restore(latest_checkpoint(config.run_dir))
    trainer.fit()
    records = read_metrics(path)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert records[2]["loss"] != 123.0
