"""The diffusion-model training task: one :class:`~wdm_inpaint.diffusion.modes.Mode` drives what is learnt.

Each step (see :mod:`wdm_inpaint.diffusion.forward`): the mode prepares the example (target, noise region,
voided context), timesteps ``t ~ U{0..T-1}`` and image-space noise are drawn, the noisy packed wavelets plus the
mode's conditioning go through the U-Net, and the mode scores the x0 prediction.

Randomness is drawn per sample from ``batch["sample_seed"]`` when the trainer provides it (map-style datasets),
so a step gives the same result whether its global batch runs in one process or is split over DDP processes;
otherwise from the step's generator.

Checkpoints are inference checkpoints (:func:`wdm_inpaint.checkpoint.save_checkpoint`): ``state_dict`` holds the
weights inference should use (the EMA weights when EMA is enabled, else the trained weights) and
``training_state`` everything needed to resume (including the raw trained weights when they differ).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wdm_inpaint.checkpoint import read_checkpoint, save_checkpoint
from wdm_inpaint.config import ConfigError, WDMConfig
from wdm_inpaint.diffusion.forward import sample_timesteps, training_inputs
from wdm_inpaint.diffusion.modes import Mode, TrainingExample
from wdm_inpaint.diffusion.registry import build_mode
from wdm_inpaint.diffusion.schedule import NoiseSchedule
from wdm_inpaint.models.unet import WDMUNet
from wdm_inpaint.training.config import config_differences
from wdm_inpaint.training.task import SAMPLE_SEED_KEY, TrainingTask, unwrap
from wdm_inpaint.wavelet import WaveletCodec

logger = logging.getLogger(__name__)

RAW_WEIGHTS_KEY = "model_weights"
"""Key of the trained (non-EMA) weights inside ``training_state`` when ``state_dict`` holds the EMA weights."""

IMAGE_LOG_TIMESTEP_FRACTIONS: tuple[float, ...] = (0.25, 1.0)
"""Image panels show the x0 prediction from ``t = round(f * (T - 1))`` for each fraction ``f``."""

VALIDATION_MASK_KEY = "mask_healthy"
"""Validation scores the fill inside this mask (the challenge scores the healthy mask)."""

InpaintFn = Callable[[nn.Module, "WDMTask", dict[str, torch.Tensor], torch.Generator], torch.Tensor]
"""``fn(model, task, batch, generator) -> (B, 1, D, H, W)`` inpainted image in [-1, 1] (validation)."""


def _slice_example(example: TrainingExample, i: int) -> TrainingExample:
    def take(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else x[i : i + 1]

    return TrainingExample(
        target=example.target[i : i + 1],
        region=take(example.region),
        known=take(example.known),
        loss_weight=take(example.loss_weight),
        anchor=take(example.anchor),
    )


def one_step_inpaint(
    model: nn.Module, task: WDMTask, batch: dict[str, torch.Tensor], generator: torch.Generator
) -> torch.Tensor:
    """Fill the region with one x0 prediction from pure noise at ``t = T - 1``, keep the known voxels.

    A cheap, deterministic validation proxy for the full sampler (exact for a model trained with T = 1).

    Returns:
        ``(B, 1, D, H, W)`` image in [-1, 1].
    """
    example = task.mode.prepare(batch)
    b = example.target.shape[0]
    t = torch.full((b,), task.schedule.num_timesteps - 1, dtype=torch.long, device=example.target.device)
    model_input, _ = training_inputs(task.mode, task.codec, task.schedule, example, t, generator)
    x0_w = task.mode.compose(task.codec, model(model_input, t).float(), example.anchor, example.region)
    x0 = task.codec.decode(x0_w).clamp(-1, 1)
    if example.region is None:
        return x0
    region = example.region.float()
    return example.target.float() * (1 - region) + x0 * region


class WDMTask(TrainingTask):
    """Trains a :class:`~wdm_inpaint.models.unet.WDMUNet` in one mode.

    Args:
        config: model, diffusion and mode settings (stored in every checkpoint).
        model: the network (``None``: a fresh ``WDMUNet(config.unet)``).
        gradient_checkpointing: recompute activations in the backward pass.
        inpaint_fn: how validation fills the region (default :func:`one_step_inpaint`).

    Raises:
        ConfigError: the U-Net's input channels do not match the mode.
    """

    def __init__(
        self,
        config: WDMConfig,
        model: nn.Module | None = None,
        gradient_checkpointing: bool = False,
        inpaint_fn: InpaintFn | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.mode: Mode = build_mode(config.mode)
        if self.mode.in_channels != config.unet.in_channels:
            raise ConfigError(
                f"model.unet.in_channels is {config.unet.in_channels} but mode {config.mode.name!r} feeds "
                f"{self.mode.in_channels} channels (8 noisy wavelet + {self.mode.condition_channels} conditioning)"
            )
        self.codec = WaveletCodec(config.wavelet)
        self.schedule = NoiseSchedule(config.schedule)
        self.model: nn.Module = model if model is not None else WDMUNet(config.unet)
        if gradient_checkpointing:
            if not hasattr(self.model, "set_gradient_checkpointing"):
                raise ConfigError(f"{type(self.model).__name__} does not support loop.gradient_checkpointing")
            self.model.set_gradient_checkpointing(True)
        self.inpaint_fn = inpaint_fn or one_step_inpaint

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    # ------------------------------------------------------------------ steps

    def model_inputs(
        self, batch: dict[str, Any], generator: torch.Generator
    ) -> tuple[TrainingExample, torch.Tensor, torch.Tensor]:
        """Prepare the example and draw ``t`` and the noise.

        Returns:
            ``(example, model_input (B, in_channels, D/2, H/2, W/2), t (B,))``.
        """
        example = self.mode.prepare(batch)
        device = example.target.device
        seeds = batch.get(SAMPLE_SEED_KEY)
        if seeds is None:
            t = sample_timesteps(example.target.shape[0], self.schedule.num_timesteps, generator, device)
            model_input, _ = training_inputs(self.mode, self.codec, self.schedule, example, t, generator)
            return example, model_input, t
        inputs, ts = [], []
        for i, seed in enumerate(seeds.tolist()):
            g = torch.Generator(device=device).manual_seed(int(seed))
            t_i = sample_timesteps(1, self.schedule.num_timesteps, g, device)
            x_i, _ = training_inputs(self.mode, self.codec, self.schedule, _slice_example(example, i), t_i, g)
            inputs.append(x_i)
            ts.append(t_i)
        return example, torch.cat(inputs), torch.cat(ts)

    @property
    def network(self) -> nn.Module:
        """The model without its DDP wrapper: for forward passes that only this process makes (validation,
        image panels), which must not trigger DDP's collective calls."""
        return unwrap(self.model)

    def _loss(self, model: nn.Module, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        example, model_input, t = self.model_inputs(batch, generator)
        return self.mode.loss(self.codec, model(model_input, t), example)

    def training_step(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Loss terms of one batch (``loss`` is the mode's total)."""
        return self._loss(self.model, batch, generator)

    def validation_step(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, float]:
        """The training loss at seeded timesteps, plus challenge metrics of :attr:`inpaint_fn`'s fill.

        Returns:
            ``loss`` and its terms (prefixed as the mode names them); with a ``mask_healthy`` in the batch and a
            conditional mode also ``ssim``, ``psnr`` and ``mse`` (Synapse 2023/24 formula on [0, 1] intensities,
            averaged over the batch).
        """
        from wdm_inpaint.evaluation.metrics import synapse_metrics

        terms = {k: float(v) for k, v in self._loss(self.network, batch, generator).items()}
        if not self.mode.conditional or VALIDATION_MASK_KEY not in batch:
            return terms
        filled = self.inpaint_fn(self.network, self, batch, generator)
        scores: dict[str, list[float]] = {"ssim": [], "psnr": [], "mse": []}
        for i in range(filled.shape[0]):
            mask = batch[VALIDATION_MASK_KEY][i, 0].cpu().numpy() > 0
            if not mask.any():
                continue
            pred = (filled[i, 0].float().cpu().numpy() + 1) / 2
            truth = (batch["t1n"][i, 0].float().cpu().numpy() + 1) / 2
            m = synapse_metrics(pred, truth, mask)
            for k in scores:
                scores[k].append(getattr(m, k))
        terms.update({k: float(np.mean(v)) for k, v in scores.items() if v})
        return terms

    @torch.no_grad()
    def log_images(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Panels of the first sample, one per timestep in :data:`IMAGE_LOG_TIMESTEP_FRACTIONS`.

        Each panel is a row of slices through the centre of the noise region (axial = last axis):
        target | model context (voided image, or the noisy input at ``t``) | region mask | x0 prediction | |error|.
        """
        net = self.network
        was_training = net.training
        net.eval()
        single = {k: v[:1] for k, v in batch.items() if isinstance(v, torch.Tensor)}
        example = self.mode.prepare(single)
        target = example.target.float()
        region = example.region.float() if example.region is not None else torch.ones_like(target)
        index = _centre_index(region[0, 0])
        panels = {}
        generator = torch.Generator(device=target.device).manual_seed(0)
        for fraction in IMAGE_LOG_TIMESTEP_FRACTIONS:
            t_val = round(fraction * (self.schedule.num_timesteps - 1))
            t = torch.full((1,), t_val, dtype=torch.long, device=target.device)
            model_input, _ = training_inputs(self.mode, self.codec, self.schedule, example, t, generator)
            with self.autocast():
                out = net(model_input, t).float()
            x0 = self.codec.decode(self.mode.compose(self.codec, out, example.anchor, example.region))
            context = example.known if example.known is not None else self.codec.decode(model_input[:, :8].float())
            row = [target, context.float(), region * 2 - 1, x0, (x0 - target).abs() - 1]
            slices = [((r[0, 0, :, :, index].clamp(-1, 1) + 1) / 2).T.flip(0) for r in row]
            panels[f"t{t_val:04d}"] = torch.cat(slices, dim=1)
        net.train(was_training)
        return panels

    # ------------------------------------------------------------------ checkpoints

    def write_checkpoint(
        self,
        path: Path,
        module_states: dict[str, dict[str, torch.Tensor]],
        ema_states: dict[str, dict[str, torch.Tensor]] | None,
        training_state: dict[str, Any],
    ) -> None:
        """An inference checkpoint (EMA weights when present) with the training state inside."""
        state = dict(training_state)
        weights = module_states["model"]
        source = "trained"
        if ema_states and "model" in ema_states:
            state[RAW_WEIGHTS_KEY] = weights
            weights = ema_states["model"]
            source = "ema"
        save_checkpoint(
            path,
            weights,
            self.config,
            step=int(state.get("step", 0)),
            metadata={"weights": source},
            training_state=state,
        )

    def read_checkpoint(self, path: Path) -> tuple[dict[str, dict], dict[str, dict] | None, dict[str, Any]]:
        """Read a checkpoint written by :meth:`write_checkpoint`.

        Raises:
            ValueError: the checkpoint's model config differs from this task's.
        """
        ckpt = read_checkpoint(path)
        changed = config_differences(ckpt["config"], self.config)
        if changed:
            raise ValueError(
                f"{path}: the model config differs from the run's at {['model.' + k for k in changed]}; "
                "resume with the model config the checkpoint was trained with"
            )
        state = dict(ckpt.get("training_state") or {})
        if RAW_WEIGHTS_KEY in state:
            return {"model": state.pop(RAW_WEIGHTS_KEY)}, {"model": ckpt["state_dict"]}, state
        return {"model": ckpt["state_dict"]}, None, state


def _centre_index(region: torch.Tensor) -> int:
    """Index along the last axis through the centre of mass of ``region`` ``(D, H, W)`` (the middle if empty)."""
    weights = region.sum(dim=(0, 1))
    if weights.sum() <= 0:
        return region.shape[-1] // 2
    positions = torch.arange(region.shape[-1], dtype=weights.dtype, device=weights.device)
    return int(round(float((weights * positions).sum() / weights.sum())))


__all__ = ["IMAGE_LOG_TIMESTEP_FRACTIONS", "RAW_WEIGHTS_KEY", "InpaintFn", "WDMTask", "one_step_inpaint"]
