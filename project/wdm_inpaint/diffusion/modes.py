"""Training / inpainting modes: what the model sees, where noise goes, and what it is trained to output.

A mode is a small object; the trainer and the inpainting pipeline ask it, instead of branching on names.

Image-space tensors are ``(B, 1, D, H, W)`` in the model's intensity range [-1, 1]; masks are ``(B, 1, D, H, W)``
with 1 marking the region to inpaint. Wavelet-space tensors are ``(B, 8, D/2, H/2, W/2)`` packed by
:class:`~wdm_inpaint.wavelet.WaveletCodec` (LLL divided by ``lll_scale``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from wdm_inpaint.config import ModeConfig
from wdm_inpaint.wavelet import WaveletCodec


@dataclass
class TrainingExample:
    """One prepared training batch in image space.

    Attributes:
        target: ``(B, 1, D, H, W)`` the clean image the model must reconstruct (x0).
        region: ``(B, 1, D, H, W)`` where noise is added (1) and the known tissue (0); ``None`` = everywhere.
        known: ``(B, 1, D, H, W)`` the voided input as inference would see it (context modes), else ``None``.
        loss_weight: ``(B, 1, D, H, W)`` voxels that count in the loss (1) and voxels without ground truth (0);
            ``None`` = all voxels.
    """

    target: torch.Tensor
    region: torch.Tensor | None = None
    known: torch.Tensor | None = None
    loss_weight: torch.Tensor | None = None


class Mode(ABC):
    """Interface of a training / inpainting mode."""

    name: str = ""
    conditional: bool = False
    """Whether the model takes conditioning channels (and inpainting may skip RePaint-style replacement)."""

    def __init__(self, config: ModeConfig | None = None) -> None:
        self.config = config or ModeConfig(name=self.name)  # type: ignore[arg-type]

    @property
    @abstractmethod
    def condition_channels(self) -> int:
        """Number of conditioning channels concatenated after the 8 noisy wavelet channels."""

    @abstractmethod
    def condition(
        self, codec: WaveletCodec, mask: torch.Tensor | None, known: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Conditioning channels ``(B, condition_channels, D/2, H/2, W/2)`` (or ``None`` for unconditional).

        Args:
            codec: the wavelet codec of the model.
            mask: ``(B, 1, D, H, W)`` region to inpaint (1) in image space.
            known: ``(B, 1, D, H, W)`` the voided image in [-1, 1] (values inside the mask are ignored).
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
