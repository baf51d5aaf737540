"""Training / inpainting modes: what the model sees, where noise goes, and what it is trained to output.

A mode is a small object; the trainer and the inpainting pipeline ask it, instead of branching on names.

Image-space tensors are ``(B, 1, D, H, W)`` in the model's intensity range [-1, 1]; masks are ``(B, 1, D, H, W)``
with 1 marking the region to inpaint. Wavelet-space tensors are ``(B, 8, D/2, H/2, W/2)`` packed by
:class:`~wdm_inpaint.wavelet.WaveletCodec` (LLL divided by ``lll_scale``).

Modes:

* ``default``: unconditional WDM; noise everywhere, wavelet-space MSE on x0 (every band, LLL scaled, equal weight).
* ``akh`` ("always known healthy"): target = t1n with the tumour set to :data:`TUMOUR_FILL_VALUE`; noise only in
  the healthy mask (multiplied in image space, before the DWT); condition = packed DWT of the mask; loss =
  image-space MSE over the whole volume + ``roi_loss_weight`` x mean over all voxels of ``(m * (x0 - x0_hat))^2``.
* ``akh_context``: like ``akh`` but the model also sees the packed DWT of the voided image, the region is the
  whole inpainting mask (healthy and tumour), the tumour (no ground truth) is left out of the loss, and the
  image loss can be L1 and include a (1 - SSIM) term.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

from wdm_inpaint.config import ModeConfig
from wdm_inpaint.diffusion.losses import IMAGE_DATA_RANGE, ssim3d, voxel_mean, wavelet_band_mse, weighted_average
from wdm_inpaint.diffusion.noise import randn_like, region_noise
from wdm_inpaint.wavelet import BAND_ORDER, WAVELET_CHANNELS, WaveletCodec

TUMOUR_FILL_VALUE = 0.0
"""Intensity of the tumour in the ``akh`` target (model range [-1, 1]; 0 is mid grey, as the reference model)."""

VOID_VALUE = -1.0
"""Intensity of voided voxels in the model range: a voided scan holds 0 there, which normalisation maps to -1."""


@dataclass
class TrainingExample:
    """One prepared training batch in image space.

    Attributes:
        target: ``(B, 1, D, H, W)`` the clean image the model must reconstruct (x0).
        region: ``(B, 1, D, H, W)`` where noise is added (1) and the known tissue (0); ``None`` = everywhere.
        known: ``(B, 1, D, H, W)`` the voided input as inference would see it (context modes), else ``None``.
        loss_weight: ``(B, 1, D, H, W)`` voxels that count in the loss (1) and voxels without ground truth (0);
            ``None`` = all voxels.
        anchor: ``(B, 1, D, H, W)`` the image the prediction is a residual over (prior modes), else ``None``.
    """

    target: torch.Tensor
    region: torch.Tensor | None = None
    known: torch.Tensor | None = None
    loss_weight: torch.Tensor | None = None
    anchor: torch.Tensor | None = None


def _as_float(mask: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """A mask as a floating tensor (the dtype of ``like``, else its own floating dtype, else float32)."""
    if like is not None:
        return mask.to(dtype=like.dtype, device=like.device)
    return mask if mask.is_floating_point() else mask.float()


class Mode(ABC):
    """Interface of a training / inpainting mode."""

    name: ClassVar[str] = ""
    upstream: ClassVar[bool] = True
    """Whether the reference (upstream) code has this mode, so that its checkpoints convert to it."""
    conditional: ClassVar[bool] = False
    """Whether the model takes conditioning channels (and inpainting may skip RePaint-style replacement)."""
    required_keys: ClassVar[tuple[str, ...]] = ("t1n",)
    """Batch keys :meth:`prepare` needs."""

    def __init__(self, config: ModeConfig | None = None) -> None:
        config = config or ModeConfig(name=self.name)  # type: ignore[arg-type]
        if config.name != self.name:
            raise ValueError(f"{type(self).__name__} needs ModeConfig(name={self.name!r}), got name={config.name!r}")
        self.config = config

    @property
    @abstractmethod
    def condition_channels(self) -> int:
        """Number of conditioning channels concatenated after the 8 noisy wavelet channels."""

    @property
    def in_channels(self) -> int:
        """Input channels the U-Net needs in this mode (noisy wavelets + conditioning)."""
        return WAVELET_CHANNELS + self.condition_channels

    @abstractmethod
    def condition(
        self,
        codec: WaveletCodec,
        mask: torch.Tensor | None,
        known: torch.Tensor | None,
        anchor: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Conditioning channels ``(B, condition_channels, D/2, H/2, W/2)`` (or ``None`` for unconditional).

        Args:
            codec: the wavelet codec of the model.
            mask: ``(B, 1, D, H, W)`` region to inpaint (1) in image space.
            known: ``(B, 1, D, H, W)`` the voided image in [-1, 1] (values inside the mask are ignored).
            anchor: ``(B, 1, D, H, W)`` the mode's :meth:`anchor` of ``mask`` and ``known``, when already computed
                (prior modes; the others ignore it).
        """

    @abstractmethod
    def prepare(self, batch: dict[str, torch.Tensor]) -> TrainingExample:
        """Build the training example from a batch with keys ``t1n`` and, for masked modes, ``mask_healthy`` and
        ``mask_unhealthy`` (all ``(B, 1, D, H, W)``, images in [-1, 1], masks in {0, 1})."""

    @abstractmethod
    def loss(
        self,
        codec: WaveletCodec,
        prediction: torch.Tensor,
        example: TrainingExample,
    ) -> dict[str, torch.Tensor]:
        """Loss terms of an x0 prediction ``(B, 8, D/2, H/2, W/2)``; the key ``loss`` is the total to minimise."""

    def training_condition(self, codec: WaveletCodec, example: TrainingExample) -> torch.Tensor | None:
        """Conditioning channels during training: :meth:`condition` of the example's region and known image."""
        return self.condition(codec, example.region, example.known, anchor=example.anchor)

    def anchor(self, mask: torch.Tensor, known: torch.Tensor) -> torch.Tensor | None:
        """The image ``(B, 1, D, H, W)`` the network's output is a residual over; ``None`` (the default) when the
        network predicts x0 itself."""
        del mask, known
        return None

    def compose(
        self, codec: WaveletCodec, prediction: torch.Tensor, anchor: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """The packed x0 estimate ``(B, 8, D/2, H/2, W/2)`` from the network's output (the default: the output)."""
        del codec, anchor, mask
        return prediction

    def noise(
        self, codec: WaveletCodec, example: TrainingExample, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Wavelet-space training noise ``dwt3d(eps * region)`` with ``eps ~ N(0, 1)`` in image space.

        The noise is masked at full resolution *before* the transform and never LLL-scaled, so wavelet blocks
        that do not touch the region get exactly zero noise.

        Returns:
            ``(B, 8, D/2, H/2, W/2)``.
        """
        del codec  # the noise is never packed (no LLL scaling)
        eps = randn_like(example.target, generator)
        return region_noise(eps, None if example.region is None else _as_float(example.region, eps))

    def _check_batch(self, batch: dict[str, torch.Tensor]) -> None:
        missing = [k for k in self.required_keys if k not in batch]
        if missing:
            raise ValueError(
                f"mode {self.name!r} needs batch keys {list(self.required_keys)}; missing {missing} "
                f"(got {sorted(batch)})"
            )
        shape = batch["t1n"].shape
        if len(shape) != 5 or shape[1] != 1:
            raise ValueError(f"mode {self.name!r} expects t1n of shape (B, 1, D, H, W), got {tuple(shape)}")
        wrong = {k: tuple(batch[k].shape) for k in self.required_keys if batch[k].shape != shape}
        if wrong:
            raise ValueError(f"mode {self.name!r}: batch tensors must all have t1n's shape {tuple(shape)}, got {wrong}")


class DefaultMode(Mode):
    """Unconditional WDM: noise everywhere, MSE between predicted and true packed wavelets (bands averaged)."""

    name = "default"
    conditional = False
    required_keys = ("t1n",)

    @property
    def condition_channels(self) -> int:
        return 0

    def condition(
        self,
        codec: WaveletCodec,
        mask: torch.Tensor | None,
        known: torch.Tensor | None,
        anchor: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """No conditioning: always ``None``."""
        return None

    def prepare(self, batch: dict[str, torch.Tensor]) -> TrainingExample:
        """Target = ``t1n``; no region (noise everywhere)."""
        self._check_batch(batch)
        return TrainingExample(target=batch["t1n"])

    def loss(self, codec: WaveletCodec, prediction: torch.Tensor, example: TrainingExample) -> dict[str, torch.Tensor]:
        """``loss`` = mean over the 8 bands of the per-band MSE (packed x0, LLL scaled); also each band's MSE."""
        per_band = wavelet_band_mse(prediction.float(), codec.encode(example.target.float()))
        terms = {"loss": per_band.mean(), "wavelet_mse": per_band.mean()}
        terms.update({f"band_{name}": value for name, value in zip(BAND_ORDER, per_band)})
        return terms


class AKHMode(Mode):
    """Always-known-healthy inpainting (the reference BraTS 2024 solution).

    The tumour is replaced by :data:`TUMOUR_FILL_VALUE` in the target, noise is confined to ``mask_healthy``
    and the model is conditioned on the packed DWT of the mask.
    """

    name = "akh"
    conditional = True
    required_keys = ("t1n", "mask_healthy", "mask_unhealthy")

    @property
    def condition_channels(self) -> int:
        return WAVELET_CHANNELS

    def condition(
        self,
        codec: WaveletCodec,
        mask: torch.Tensor | None,
        known: torch.Tensor | None,
        anchor: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """Packed DWT of the binary mask (LLL scaled like an image): ``(B, 8, D/2, H/2, W/2)``."""
        if mask is None:
            raise ValueError(f"mode {self.name!r} is conditioned on the inpainting mask; got mask=None")
        return codec.encode(_as_float(mask))

    def prepare(self, batch: dict[str, torch.Tensor]) -> TrainingExample:
        """Target ``t1n * (1 - mask_unhealthy) + TUMOUR_FILL_VALUE * mask_unhealthy``; region ``mask_healthy``."""
        self._check_batch(batch)
        t1n = batch["t1n"]
        unhealthy = _as_float(batch["mask_unhealthy"], t1n)
        target = t1n * (1 - unhealthy) + TUMOUR_FILL_VALUE * unhealthy
        return TrainingExample(target=target, region=_as_float(batch["mask_healthy"], t1n))

    def loss(self, codec: WaveletCodec, prediction: torch.Tensor, example: TrainingExample) -> dict[str, torch.Tensor]:
        """``mean((x0 - x0_hat)^2) + roi_loss_weight * mean((m*x0 - m*x0_hat)^2)``, both over all voxels."""
        if example.region is None:
            raise ValueError("the akh loss needs the example's region (mask_healthy)")
        x0_hat = codec.decode(prediction.float())
        target = example.target.float()
        m = example.region.float()
        image_mse = (target - x0_hat).square().mean()
        roi_mse = (m * target - m * x0_hat).square().mean()
        return {
            "loss": image_mse + self.config.roi_loss_weight * roi_mse,
            "image_mse": image_mse,
            "roi_mse": roi_mse,
        }


class AKHContextMode(Mode):
    """AKH with the voided image as extra condition, the whole inpainting mask as noise region, and no loss
    in the tumour (which has no ground truth).

    Condition = ``cat(encode(mask), encode(voided))`` (16 channels) with the voided image set to
    :data:`VOID_VALUE` inside the mask, as a normalised ``t1n-voided`` scan looks at inference.
    """

    name = "akh_context"
    conditional = True
    required_keys = ("t1n", "mask_healthy", "mask_unhealthy")

    @property
    def condition_channels(self) -> int:
        return 2 * WAVELET_CHANNELS

    def condition(
        self,
        codec: WaveletCodec,
        mask: torch.Tensor | None,
        known: torch.Tensor | None,
        anchor: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """``(B, 16, D/2, H/2, W/2)``: packed DWT of the mask, then of the voided image (mask voxels = -1)."""
        if mask is None or known is None:
            raise ValueError(f"mode {self.name!r} is conditioned on the mask and the voided image; got None")
        m = _as_float(mask, known)
        voided = known * (1 - m) + VOID_VALUE * m
        return torch.cat([codec.encode(m), codec.encode(voided)], dim=1)

    def prepare(self, batch: dict[str, torch.Tensor]) -> TrainingExample:
        """Region = ``mask_healthy`` or ``mask_unhealthy``; known = ``t1n`` voided there; loss weight excludes
        the tumour."""
        self._check_batch(batch)
        t1n = batch["t1n"]
        healthy = _as_float(batch["mask_healthy"], t1n)
        unhealthy = _as_float(batch["mask_unhealthy"], t1n)
        region = torch.maximum(healthy, unhealthy)
        known = t1n * (1 - region) + VOID_VALUE * region
        return TrainingExample(target=t1n, region=region, known=known, loss_weight=1 - unhealthy)

    def loss(self, codec: WaveletCodec, prediction: torch.Tensor, example: TrainingExample) -> dict[str, torch.Tensor]:
        """``mean(w*e) + roi_loss_weight * mean(w*r*e) [+ ssim_weight * (1 - SSIM inside w*r)]``.

        ``e`` is the per-voxel squared or absolute error (``config.image_loss``), ``w`` the loss weight (no
        tumour), ``r`` the region; means run over all voxels.
        """
        if example.region is None or example.loss_weight is None:
            raise ValueError("the akh_context loss needs the example's region and loss_weight")
        x0_hat = codec.decode(prediction.float())
        target = example.target.float()
        diff = x0_hat - target
        error = diff.abs() if self.config.image_loss == "l1" else diff.square()
        weight = example.loss_weight.float()
        roi = weight * example.region.float()
        image_term = voxel_mean(error, weight)
        roi_term = voxel_mean(error, roi)
        loss = image_term + self.config.roi_loss_weight * roi_term
        terms = {f"image_{self.config.image_loss}": image_term, f"roi_{self.config.image_loss}": roi_term}
        if self.config.ssim_weight > 0:
            ssim_term = 1 - weighted_average(ssim3d(x0_hat, target, IMAGE_DATA_RANGE), roi)
            loss = loss + self.config.ssim_weight * ssim_term
            terms["one_minus_ssim"] = ssim_term
        return {"loss": loss, **terms}


__all__ = [
    "TUMOUR_FILL_VALUE",
    "VOID_VALUE",
    "AKHContextMode",
    "AKHMode",
    "DefaultMode",
    "Mode",
    "TrainingExample",
]
