"""The prior-anchored mode: the network adds a learned residual to a classical harmonic fill.

The harmonic (Laplace) fill of the hole is the smoothest guess from the surrounding tissue, and on brains a
small model has never seen it is hard to beat. This mode keeps it as an anchor and lets the network add only
what the data supports:

* condition = ``cat(encode(mask), encode(anchor))`` (16 channels), where ``anchor`` is the voided image with the
  hole filled by :func:`~wdm_inpaint.fill.harmonic.harmonic_fill`, computed on the tensor given (the sampled
  crop at inference, the training patch after augmentation in training: both see the same kind of prior);
* x0 estimate = ``encode(anchor + mask * decode(output))``: the output is a residual inside the region, and
  outside it the estimate is the known tissue itself;
* the U-Net's head is zero-initialised (:class:`~wdm_inpaint.models.unet.WDMUNet`), so an untrained model
  returns the harmonic fill exactly and training starts at the classical baseline, never below it;
* noise region, targets and loss as ``akh_context`` (no loss in the tumour).

Sampling can start from pure noise in the region or, with ``PipelineConfig.strength`` below 1, from the anchor
noised to an intermediate timestep (see :mod:`wdm_inpaint.pipeline.inpaint`).
"""

from __future__ import annotations

import numpy as np
import torch

from wdm_inpaint.diffusion.modes import VOID_VALUE, AKHContextMode, TrainingExample
from wdm_inpaint.fill.harmonic import harmonic_fill
from wdm_inpaint.wavelet import WaveletCodec


def harmonic_anchor(known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Harmonic fill of every batch element's mask from its known voxels.

    Args:
        known: ``(B, 1, D, H, W)`` image (values inside the mask are ignored).
        mask: ``(B, 1, D, H, W)``; non-zero marks the voxels to fill.

    Returns:
        ``(B, 1, D, H, W)`` float32 on ``known``'s device; equal to ``known`` outside the mask.
    """
    if known.shape != mask.shape or known.dim() != 5 or known.shape[1] != 1:
        raise ValueError(
            f"harmonic_anchor needs known and mask of one shape (B, 1, D, H, W), got {tuple(known.shape)} and "
            f"{tuple(mask.shape)}"
        )
    values = known.detach().float().cpu().numpy()
    inside = mask.detach().cpu().numpy() != 0
    filled = np.stack([harmonic_fill(values[b, 0], inside[b, 0])[None] for b in range(values.shape[0])])
    return torch.from_numpy(filled.astype(np.float32, copy=False)).to(known.device)


class PriorMode(AKHContextMode):
    """Residual over the harmonic fill, conditioned on the mask and the prior-filled image (see the module)."""

    name = "prior"
    upstream = False
    conditional = True
    required_keys = ("t1n", "mask_healthy", "mask_unhealthy")

    def anchor(self, mask: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """The harmonic fill of ``mask`` from ``known`` ``(B, 1, D, H, W)``."""
        return harmonic_anchor(known, mask)

    def condition(
        self,
        codec: WaveletCodec,
        mask: torch.Tensor | None,
        known: torch.Tensor | None,
        anchor: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """``(B, 16, D/2, H/2, W/2)``: packed DWT of the mask, then of the prior-filled image."""
        if mask is None or (known is None and anchor is None):
            raise ValueError(f"mode {self.name!r} is conditioned on the mask and the voided image; got None")
        m = mask.float() if known is None else mask.to(dtype=known.dtype, device=known.device)
        if anchor is None:
            anchor = self.anchor(m, known)  # type: ignore[arg-type]
        return torch.cat([codec.encode(m), codec.encode(anchor.to(m.dtype))], dim=1)

    def compose(
        self, codec: WaveletCodec, prediction: torch.Tensor, anchor: torch.Tensor | None, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """``encode(anchor + mask * decode(prediction))``: the residual counts only inside the region."""
        if anchor is None or mask is None:
            raise ValueError(f"mode {self.name!r} composes its x0 estimate from the anchor and the mask; got None")
        residual = codec.decode(prediction) * mask.to(prediction.dtype)
        return codec.encode(anchor.to(prediction.dtype) + residual)

    def prepare(self, batch: dict[str, torch.Tensor]) -> TrainingExample:
        """As ``akh_context``, plus the anchor: the harmonic fill of the region from the voided ``t1n``."""
        example = super().prepare(batch)
        region = example.region
        if region is None or example.known is None:  # pragma: no cover - akh_context always sets both
            raise ValueError("the prior mode needs a region and a known image")
        example.anchor = self.anchor(region, example.known)
        return example

    def loss(self, codec: WaveletCodec, prediction: torch.Tensor, example: TrainingExample) -> dict[str, torch.Tensor]:
        """The ``akh_context`` loss of the composed x0 estimate (zero outside the region by construction)."""
        composed = self.compose(codec, prediction.float(), example.anchor, example.region)
        return super().loss(codec, composed, example)


__all__ = ["VOID_VALUE", "PriorMode", "harmonic_anchor"]
