"""The inpainting pipeline: owns the sampling loop, the conditioning and every use of the mask.

It works on model-grid tensors: ``image`` ``(B, 1, D, H, W)`` in [-1, 1] (the voided scan) and ``mask``
``(B, 1, D, H, W)`` in {0, 1} (1 = region to inpaint), with D, H, W multiples of the U-Net's ``image_multiple``.
The sampler only sees packed wavelet tensors and never the mask.

Two loops, chosen by the checkpoint's mode:

* conditional modes (``akh``, ``akh_context``, ``prior``): the model gets the mode's conditioning channels at every call,
  noise lives only in the region (``dwt3d(eps * mask)``), and after each step the known tissue is pasted back in
  image space (clean, or scaled by ``sqrt(alpha_bar)`` with ``known_region='matched'``). A mode with an anchor
  (``prior``) turns each network output into its x0 estimate (:meth:`~wdm_inpaint.diffusion.modes.Mode.compose`),
  and ``PipelineConfig.strength < 1`` starts from the anchor noised to an intermediate timestep;
* the unconditional ``default`` mode: RePaint. After each step the known tissue is replaced by the input noised
  to the step's target timestep (noise drawn in wavelet space, as in training), with optional resampling jumps.

The result equals ``image`` bit for bit outside the mask (``torch.where``); inside it is the mean of
``num_samples`` samples.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from wdm_inpaint.config import ConfigError, WDMConfig
from wdm_inpaint.data.mask_values import inside as mask_inside
from wdm_inpaint.diffusion.modes import Mode
from wdm_inpaint.diffusion.registry import build_mode
from wdm_inpaint.diffusion.noise import randn_as, region_noise
from wdm_inpaint.diffusion.schedule import FINAL_TIMESTEP, NoiseSchedule
from wdm_inpaint.pipeline.config import PipelineConfig
from wdm_inpaint.pipeline.jumps import repaint_levels
from wdm_inpaint.samplers.base import Sampler, X0Clip
from wdm_inpaint.samplers.registry import build_sampler
from wdm_inpaint.seeding import spawn_seeds
from wdm_inpaint.wavelet import WaveletCodec

logger = logging.getLogger(__name__)

IMAGE_RANGE = (-1.0, 1.0)
"""Intensity range of the model grid; x0 predictions and the output are clamped to it when clipping is on."""


@dataclass
class RunStats:
    """What the last call did.

    Attributes:
        model_calls: network evaluations (all samples).
        seconds: wall-clock time of the call.
        num_samples: samples averaged.
    """

    model_calls: int = 0
    seconds: float = 0.0
    num_samples: int = 0


def image_space_clip(codec: WaveletCodec, low: float = IMAGE_RANGE[0], high: float = IMAGE_RANGE[1]) -> X0Clip:
    """x0 clip for samplers: decode, clamp to ``[low, high]``, encode (upstream WDM's ``clip_denoised``)."""

    def clip(x0: torch.Tensor) -> torch.Tensor:
        return codec.encode(codec.decode(x0).clamp(low, high))

    return clip


def nearest_timesteps(source: NoiseSchedule, target: NoiseSchedule) -> torch.Tensor:
    """For every timestep of ``source``, the ``target`` timestep with the nearest noise level (in log-SNR).

    Returns:
        ``(source.T,)`` int64.
    """

    def neg_log_snr(s: NoiseSchedule) -> torch.Tensor:  # increases with t
        return (-s.alphas_cumprod).log1p() - s.alphas_cumprod.log()

    key, query = neg_log_snr(target), neg_log_snr(source)
    if len(key) == 1:
        return torch.zeros(len(query), dtype=torch.int64)
    hi = torch.searchsorted(key, query).clamp(1, len(key) - 1)
    lo = hi - 1
    return torch.where((key[hi] - query).abs() <= (query - key[lo]).abs(), hi, lo)


class InpaintingPipeline:
    """Fill the masked region of a model-grid image with a trained wavelet diffusion model.

    Args:
        model: the denoiser, ``model(x, t) -> (B, 8, D/2, H/2, W/2)`` x0 prediction, where ``x`` is the noisy
            wavelets followed by the mode's conditioning channels.
        model_config: the configuration stored with the model (schedule, wavelet packing, mode).
        config: sampling options (defaults: ``PipelineConfig()``).
        codec: wavelet codec; built from ``model_config.wavelet`` when ``None``.
        mode: the model's mode; built from ``model_config.mode`` when ``None``.

    Raises:
        ConfigError: if an option does not apply to the model's mode.
    """

    def __init__(
        self,
        model: nn.Module,
        model_config: WDMConfig,
        config: PipelineConfig | None = None,
        codec: WaveletCodec | None = None,
        mode: Mode | None = None,
    ) -> None:
        self.model = model
        self.model_config = model_config
        self.config = config or PipelineConfig()
        self.codec = codec or WaveletCodec(model_config.wavelet)
        self.mode = mode or build_mode(model_config.mode)
        if self.mode.conditional and self.config.jump_n_sample > 1:
            raise ConfigError(
                f"PipelineConfig.jump_n_sample={self.config.jump_n_sample}: resampling jumps are only used by the "
                f"unconditional 'default' mode, not by mode {self.mode.name!r}; set jump_n_sample=1"
            )
        if not self.mode.conditional and self.config.init == "upstream":
            raise ConfigError(
                f"PipelineConfig.init='upstream' is the reference init of conditional (akh) models; mode "
                f"{self.mode.name!r} starts from pure noise: set init='noised'"
            )
        if self.config.strength < 1 and (not self.mode.conditional or self.config.init == "upstream"):
            raise ConfigError(
                f"PipelineConfig.strength={self.config.strength} starts from a noised prior: it needs a conditional "
                f"mode with init='noised' (mode {self.mode.name!r}, init={self.config.init!r}); set strength=1"
            )
        self.trained_schedule = NoiseSchedule(model_config.schedule)
        if self.config.sampling_schedule is None or self.config.sampling_schedule == model_config.schedule:
            self.schedule = self.trained_schedule
            self._model_timesteps: torch.Tensor | None = None
        else:
            self.schedule = NoiseSchedule(self.config.sampling_schedule)
            self._model_timesteps = (
                None
                if self.config.timestep_input == "raw"
                else nearest_timesteps(self.schedule, self.trained_schedule)
            )
        clip = image_space_clip(self.codec) if self.config.clip_x0 else None
        self.sampler: Sampler = build_sampler(self.config.sampler, self.schedule, clip_x0=clip)
        self.last_run = RunStats()
        self._calls = 0

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, config: PipelineConfig | None = None, device: str | torch.device = "cpu"
    ) -> InpaintingPipeline:
        """Load a checkpoint (it carries its own configuration) and build the pipeline on ``device``."""
        from wdm_inpaint.checkpoint import load_checkpoint

        model, model_config = load_checkpoint(path, map_location=device)
        return cls(model.eval(), model_config, config)

    # ------------------------------------------------------------------ bookkeeping

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters (CPU for a parameter-free model)."""
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def skipped_steps(self) -> int:
        """Grid timesteps skipped at the start of a conditional sample (``strength < 1``; at least one is run)."""
        n = self.sampler.num_model_calls
        return n - max(1, round(n * self.config.strength))

    def grid_levels(self) -> list[int]:
        """Levels visited by one sample (see :func:`~wdm_inpaint.pipeline.jumps.repaint_levels`)."""
        n = self.sampler.num_model_calls
        if self.mode.conditional:
            return list(range(n - self.skipped_steps(), -1, -1))
        return repaint_levels(n, self.config.jump_length, self.config.jump_n_sample)

    def expected_model_calls(self) -> int:
        """Network evaluations of one call: ``num_samples`` x the decreasing moves of :meth:`grid_levels`."""
        levels = self.grid_levels()
        per_sample = sum(1 for a, b in zip(levels, levels[1:]) if b < a)
        return self.config.num_samples * per_sample

    def model_timestep(self, t: int) -> int:
        """The timestep the model is told at sampling timestep ``t``."""
        return t if self._model_timesteps is None else int(self._model_timesteps[t])

    # ------------------------------------------------------------------ main entry

    @torch.inference_mode()
    def __call__(self, image: torch.Tensor, mask: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """Inpaint.

        Args:
            image: ``(B, 1, D, H, W)`` voided scan in [-1, 1] on the model grid.
            mask: ``(B, 1, D, H, W)`` in {0, 1}; 1 = region to fill.
            seed: overrides ``config.seed``.

        Returns:
            ``(B, 1, D, H, W)`` with ``image``'s dtype and device: ``image`` outside the mask (bit for bit), the
            mean of ``num_samples`` samples inside.
        """
        self._check_inputs(image, mask)
        start = time.perf_counter()
        device = self.device
        x_in = image.to(device=device, dtype=torch.float32)
        inside = mask_inside(mask.to(device))
        inside_f = inside.to(torch.float32)
        anchor = self.mode.anchor(inside_f, x_in)
        condition = self.mode.condition(self.codec, inside_f, x_in, anchor=anchor)
        seeds = spawn_seeds(self.config.seed if seed is None else seed, self.config.num_samples)
        self._calls = 0
        total = torch.zeros_like(x_in)
        with tqdm(total=self.expected_model_calls(), desc="inpainting", disable=not self.config.progress) as bar:
            for k, sample_seed in enumerate(seeds):
                bar.set_postfix(sample=f"{k + 1}/{len(seeds)}")
                generator = torch.Generator(device=device).manual_seed(sample_seed)
                if self.mode.conditional:
                    total += self._sample_conditional(x_in, inside, inside_f, condition, anchor, generator, bar)
                else:
                    total += self._sample_repaint(x_in, inside, generator, bar)
        mean = total / len(seeds)
        if self.config.clip_x0:
            mean = mean.clamp(*IMAGE_RANGE)
        result = torch.where(mask_inside(mask.to(image.device)), mean.to(device=image.device, dtype=image.dtype), image)
        self.last_run = RunStats(self._calls, time.perf_counter() - start, len(seeds))
        logger.debug(
            "inpainted %s with %d model calls in %.1f s", tuple(image.shape), self._calls, self.last_run.seconds
        )
        return result

    # ------------------------------------------------------------------ loops

    def _sample_conditional(
        self,
        x_in: torch.Tensor,
        inside: torch.Tensor,
        inside_f: torch.Tensor,
        condition: torch.Tensor | None,
        anchor: torch.Tensor | None,
        generator: torch.Generator,
        bar: tqdm,
    ) -> torch.Tensor:
        """One sample of a conditional (region-noise) model; returns the decoded image ``(B, 1, D, H, W)``.

        With ``strength < 1`` the first grid timesteps are skipped and the region starts as the anchor noised to
        the first remaining timestep (SDEdit-style); otherwise it starts as pure noise.
        """
        sampler = self.sampler
        sampler.reset()
        timesteps = sampler.timesteps.tolist()[self.skipped_steps() :]
        schedule = sampler.schedule
        eps = randn_as(x_in, generator)
        if self.config.init == "upstream":
            x = self.codec.encode(x_in * inside_f + eps * inside_f)
        else:
            t0 = timesteps[0]
            anchored = anchor is not None and self.config.strength < 1
            start = schedule.scale_known(t0) * anchor if anchored else torch.zeros_like(x_in)
            known = torch.where(inside, start, self._known_at(x_in, t0))
            x = self.codec.encode(known) + schedule.noise_std(t0) * region_noise(eps, inside_f)
        for t in timesteps:
            x0 = self.mode.compose(self.codec, self._denoise(x, t, condition), anchor, inside_f)
            out = sampler.step(x0, t, x, generator)
            bar.update(1)
            img = self.codec.decode(out.prev_sample)
            t_prev = sampler.prev_timestep(t)
            if t_prev == FINAL_TIMESTEP:
                return img
            x = self.codec.encode(torch.where(inside, img, self._known_at(x_in, t_prev)))
        raise RuntimeError("the sampler grid did not end at the clean sample")  # pragma: no cover

    def _sample_repaint(
        self, x_in: torch.Tensor, inside: torch.Tensor, generator: torch.Generator, bar: tqdm
    ) -> torch.Tensor:
        """One RePaint sample of an unconditional model; returns the decoded image ``(B, 1, D, H, W)``."""
        sampler = self.sampler
        sampler.reset()
        timesteps = sampler.timesteps.tolist()
        n = len(timesteps)

        def timestep_of(level: int) -> int:
            return FINAL_TIMESTEP if level == 0 else timesteps[n - level]

        known_w = self.codec.encode(x_in)

        def with_known(img: torch.Tensor, t: int) -> torch.Tensor:
            known = self.codec.decode(sampler.schedule.add_noise(known_w, randn_as(known_w, generator), t))
            return self.codec.encode(torch.where(inside, img, known))

        x = with_known(self.codec.decode(randn_as(known_w, generator)), timesteps[0])
        levels = self.grid_levels()
        for level, next_level in zip(levels, levels[1:]):
            t, t_next = timestep_of(level), timestep_of(next_level)
            if next_level > level:  # resampling jump: back up the chain
                x = sampler.schedule.renoise(x, t, t_next, randn_as(x, generator))
                sampler.reset()
                continue
            out = sampler.step(self._denoise(x, t, None), t, x, generator)
            bar.update(1)
            img = self.codec.decode(out.prev_sample)
            if t_next == FINAL_TIMESTEP:
                return img
            x = with_known(img, t_next)
        raise RuntimeError("the RePaint schedule did not end at the clean sample")  # pragma: no cover

    # ------------------------------------------------------------------ helpers

    def _known_at(self, x_in: torch.Tensor, t: int) -> torch.Tensor:
        """Known tissue as the sample at timestep ``t`` should show it (image space)."""
        if self.config.known_region == "upstream" or t == FINAL_TIMESTEP:
            return x_in
        return self.sampler.schedule.scale_known(t) * x_in

    def _denoise(self, x: torch.Tensor, t: int, condition: torch.Tensor | None) -> torch.Tensor:
        """One network evaluation: x0 prediction ``(B, 8, ...)`` in ``x``'s dtype."""
        model_input = x if condition is None else torch.cat([x, condition.to(x.dtype)], dim=1)
        if self.config.channels_last:
            model_input = model_input.contiguous(memory_format=torch.channels_last_3d)
        t_model = torch.full((x.shape[0],), self.model_timestep(t), dtype=torch.long, device=x.device)
        with self._autocast(x.device):
            out = self.model(model_input, t_model)
        self._calls += 1
        return out.to(dtype=x.dtype, memory_format=torch.contiguous_format)

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if not self.config.autocast:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def _check_inputs(self, image: torch.Tensor, mask: torch.Tensor) -> None:
        if image.dim() != 5 or image.shape[1] != 1:
            raise ValueError(f"image must be (B, 1, D, H, W), got shape {tuple(image.shape)}")
        if mask.shape != image.shape:
            raise ValueError(f"mask shape {tuple(mask.shape)} differs from image shape {tuple(image.shape)}")
        multiple = self.model_config.unet.image_multiple
        if any(s % multiple for s in image.shape[2:]):
            raise ValueError(
                f"image spatial size {tuple(image.shape[2:])} must be a multiple of {multiple} for this model "
                f"(DWT and {len(self.model_config.unet.channel_mult) - 1} U-Net downsamplings); pad it first"
            )
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError("mask must hold only 0 and 1 (1 = region to inpaint)")
        if not bool(torch.isfinite(image).all()):
            raise ValueError("image holds NaN or infinite values")


__all__ = ["IMAGE_RANGE", "InpaintingPipeline", "RunStats", "image_space_clip", "nearest_timesteps"]
