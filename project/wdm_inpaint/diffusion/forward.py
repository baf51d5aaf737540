"""The forward (noising) process in wavelet space and the training loss it feeds.

One implementation shared by the trainer and the tests:

1. ``x0_w = codec.encode(target)`` (LLL divided by ``lll_scale``);
2. ``noise_w = mode.noise(...)`` = ``dwt3d(eps * region)`` (never LLL-scaled; ``region`` masks in image space);
3. ``x_t = sqrt(abar_t) * x0_w + sqrt(1 - abar_t) * noise_w`` (Ho et al. 2020, eq. 4);
4. model input ``cat(x_t, condition)``; the model predicts ``x0_w``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from wdm_inpaint.diffusion.schedule import NoiseSchedule
from wdm_inpaint.wavelet import WaveletCodec

if TYPE_CHECKING:  # pragma: no cover
    from wdm_inpaint.diffusion.modes import Mode, TrainingExample


def sample_timesteps(
    batch_size: int,
    num_timesteps: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Training timesteps drawn uniformly from ``{0, ..., num_timesteps - 1}``.

    Returns:
        ``(batch_size,)`` LongTensor on ``device``.
    """
    source = generator.device if generator is not None else device
    t = torch.randint(0, num_timesteps, (batch_size,), generator=generator, device=source)
    return t.to(device) if device is not None else t


def training_inputs(
    mode: Mode,
    codec: WaveletCodec,
    schedule: NoiseSchedule,
    example: TrainingExample,
    t: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy model input and clean wavelet target of a training example.

    Args:
        mode: the training mode (decides where the noise goes and the conditioning).
        codec: wavelet codec of the model.
        schedule: noise schedule.
        example: prepared example (image space, ``(B, 1, D, H, W)``).
        t: ``(B,)`` timesteps.
        generator: random source of the noise.

    Returns:
        ``model_input`` ``(B, 8 + mode.condition_channels, D/2, H/2, W/2)`` and ``x0_w`` ``(B, 8, D/2, H/2, W/2)``.
    """
    x0_w = codec.encode(example.target)
    noise_w = mode.noise(codec, example, generator)
    x_t = schedule.q_sample(x0_w, t, noise_w)
    condition = mode.training_condition(codec, example)
    model_input = x_t if condition is None else torch.cat([x_t, condition.to(x_t.dtype)], dim=1)
    return model_input, x0_w


def training_loss(
    model: nn.Module,
    mode: Mode,
    codec: WaveletCodec,
    schedule: NoiseSchedule,
    batch: dict[str, torch.Tensor],
    generator: torch.Generator | None = None,
    t: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """One training forward pass: prepare, noise, predict x0, and score it.

    Args:
        model: the denoiser, ``model(x, t) -> (B, 8, ...)``.
        mode: the training mode.
        codec: wavelet codec.
        schedule: noise schedule.
        batch: image-space tensors (keys as :meth:`Mode.prepare` documents), already on the model's device.
        generator: random source of timesteps and noise.
        t: ``(B,)`` timesteps; drawn uniformly when ``None``.

    Returns:
        Scalar loss terms; ``loss`` is the total to minimise.
    """
    example = mode.prepare(batch)
    if t is None:
        t = sample_timesteps(example.target.shape[0], schedule.num_timesteps, generator, example.target.device)
    model_input, _ = training_inputs(mode, codec, schedule, example, t, generator)
    prediction = model(model_input, t)
    return mode.loss(codec, prediction, example)


__all__ = ["sample_timesteps", "training_inputs", "training_loss"]
