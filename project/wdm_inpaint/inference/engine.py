"""The inference engine: the prepare / sample / finish stages of one volume on a loaded model.

:class:`InferenceEngine` holds the network, its config and the :class:`InferenceOptions`; it knows nothing
about folders (that is :mod:`wdm_inpaint.inference.runner`) or checkpoint files (that is the front door,
:class:`~wdm_inpaint.inference.inpainter.Inpainter`). Also here: the classical fill with its intensity floor
and the CUDA out-of-memory retry on the CPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wdm_inpaint.config import WDMConfig, to_dict
from wdm_inpaint.data.cropping import CropBox, crop, mask_crop_box, mask_crop_boxes
from wdm_inpaint.data.intensity import INTENSITY_FLOOR
from wdm_inpaint.data.preprocess import PreprocessState, binarise_mask, postprocess, preprocess
from wdm_inpaint.fill import classical_fill
from wdm_inpaint.inference.acceleration import ResolvedAcceleration, prepare_model, resolve_acceleration
from wdm_inpaint.inference.checkpoints import file_sha256
from wdm_inpaint.inference.options import InferenceOptions
from wdm_inpaint.pipeline.config import PipelineConfig
from wdm_inpaint.pipeline.inpaint import InpaintingPipeline
from wdm_inpaint.samplers.base import SamplerConfig
from wdm_inpaint.seeding import spawn_seeds

logger = logging.getLogger(__name__)


def classical_inpaint(name: str, voided: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill ``mask`` of ``voided`` with the classical fill ``name``; the filled region is clamped at the floor.

    Returns:
        ``(D, H, W)`` float32: ``voided`` (as float32) outside the mask, the fill (>= 0) inside.
    """
    voided32 = voided.astype(np.float32, copy=False)
    filled = np.maximum(classical_fill(name, voided.astype(np.float64, copy=False), mask), INTENSITY_FLOOR)
    return np.where(mask, filled.astype(np.float32), voided32)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a (CUDA) out-of-memory error."""
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


@dataclass
class PreparedVolume:
    """A volume between the stages of :class:`InferenceEngine` (see :meth:`InferenceEngine.prepare`).

    Attributes:
        voided: ``(D, H, W)`` float32 voided scan, native grid.
        mask: ``(D, H, W)`` bool region to inpaint, native grid.
        image: ``(1, 1, D', H', W')`` model-grid image in [-1, 1] (``None`` when no sampling is needed).
        mask_grid: ``(1, 1, D', H', W')`` model-grid mask.
        state: what :func:`~wdm_inpaint.data.preprocess.postprocess` needs to undo the preprocessing.
        result: the final output when no sampling is needed (empty mask, classical fill).
    """

    voided: np.ndarray
    mask: np.ndarray
    image: torch.Tensor | None = None
    mask_grid: torch.Tensor | None = None
    state: PreprocessState | None = None
    result: np.ndarray | None = None


class InferenceEngine:
    """Runs the three stages of inpainting one volume with a loaded model (or a classical fill).

    Args:
        model: the denoising network (``None`` for a classical fill).
        config: the checkpoint's :class:`~wdm_inpaint.config.WDMConfig` (``None`` for a classical fill).
        options: how to sample.
        device: where the network runs.
        checkpoint_path: the checkpoint file (provenance only).

    Raises:
        ValueError: a diffusion sampler without a model or config.
    """

    def __init__(
        self,
        model: nn.Module | None,
        config: WDMConfig | None,
        options: InferenceOptions,
        device: torch.device,
        checkpoint_path: Path | None = None,
    ) -> None:
        if not options.classical and (model is None or config is None):
            raise ValueError(f"sampler {options.sampler!r} needs a model and its config")
        self.model = model
        self.config = config
        self.options = options
        self.checkpoint_path = checkpoint_path
        self.last_crop_boxes: list[CropBox] = []
        self._place(device)

    def _place(self, device: torch.device) -> None:
        """Resolve the fast paths for ``device`` and prepare the network there."""
        self.device = device
        self.acceleration: ResolvedAcceleration = resolve_acceleration(self.options.acceleration(), device)
        self._network = prepare_model(self.model, self.acceleration, device) if self.model is not None else None

    def to(self, device: str | torch.device) -> InferenceEngine:
        """Move the model to ``device`` (used to retry on CPU after a CUDA out-of-memory error).

        The ``auto`` fast paths are resolved again for the new device.
        """
        self._place(torch.device(device))
        return self

    def _needs_model(self) -> WDMConfig:
        if self.config is None:
            raise RuntimeError(f"sampler {self.options.sampler!r} needs a model, but none is loaded")
        return self.config

    # ------------------------------------------------------------------ settings

    def pipeline_config(self, seed: int | None = None) -> PipelineConfig:
        """The :class:`PipelineConfig` of one volume sampled with ``seed`` (``None``: the run seed).

        The steps are capped at the checkpoint's trained number of timesteps.
        """
        o = self.options
        steps = o.steps
        trained = self.config.schedule.num_timesteps if self.config is not None else None
        if steps is not None and trained is not None and steps > trained:
            logger.warning("%d steps asked for, but the model was trained with T=%d: using %d", steps, trained, trained)
            steps = trained
        return PipelineConfig(
            sampler=SamplerConfig(name=o.sampler, num_steps=steps),  # type: ignore[arg-type]
            num_samples=o.samples,
            seed=o.seed if seed is None else seed,
            known_region=o.known_region,  # type: ignore[arg-type]
            strength=o.strength,
            autocast=self.acceleration.autocast,
            channels_last=self.acceleration.channels_last,
            progress=o.progress,
        )

    def crop_boxes(self, mask: torch.Tensor) -> list[CropBox] | None:
        """The boxes sampled for a model-grid ``mask`` ``(1, 1, D, H, W)``; ``None``: the whole volume."""
        pre = self._needs_model().preprocess
        if not (pre.crop if self.options.crop is None else self.options.crop):
            return None
        multiple = self._needs_model().unet.image_multiple
        if pre.crop_split:
            return mask_crop_boxes(mask, pre.crop_margin, multiple)
        return [mask_crop_box(mask, pre.crop_margin, multiple)]

    # ------------------------------------------------------------------ stages

    def prepare(
        self,
        voided: np.ndarray,
        mask: np.ndarray,
        affine: np.ndarray | None = None,
    ) -> PreparedVolume:
        """First stage (CPU): check the inputs and bring them to the model grid.

        Runs without the model, so a runner can prepare the next case while the current one samples.

        Raises:
            ValueError: on shape mismatch, a non-3-D array or non-finite values.
        """
        voided = np.asarray(voided)
        mask_bin = binarise_mask(np.asarray(mask))
        if voided.ndim != 3:
            raise ValueError(f"the voided scan must be 3-D, got shape {voided.shape}")
        if mask_bin.shape != voided.shape:
            raise ValueError(f"mask shape {mask_bin.shape} differs from the voided scan's {voided.shape}")
        if not np.isfinite(voided).all():
            raise ValueError("the voided scan holds NaN or Inf values")
        voided32 = voided.astype(np.float32, copy=False)
        if not mask_bin.any():
            logger.warning("empty mask: nothing to inpaint, the output equals the input")
            return PreparedVolume(voided32, mask_bin, result=voided32.copy())
        if self.options.classical:
            return PreparedVolume(voided32, mask_bin, result=classical_inpaint(self.options.sampler, voided32, mask_bin))
        config = self._needs_model()
        affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
        image_t, mask_t, state = preprocess(voided32, mask_bin, affine, config.preprocess, config.unet.image_multiple)
        return PreparedVolume(voided32, mask_bin, image_t, mask_t, state)

    def sample(self, prepared: PreparedVolume, seed: int | None = None) -> torch.Tensor:
        """Second stage (the model's device): sample the prepared volume.

        Each crop box is sampled on its own (box k > 0 with its own seed spawned from ``seed``); voxels
        outside every box keep the model-grid image.

        Returns:
            ``(1, 1, D', H', W')`` float32 CPU tensor on the model grid.
        """
        if prepared.image is None or prepared.mask_grid is None:
            raise ValueError("this volume needs no sampling: its result is already in prepared.result")
        config = self._needs_model()
        if self._network is None:
            raise RuntimeError(f"sampler {self.options.sampler!r} needs a model, but none is loaded")
        seed = self.options.seed if seed is None else seed
        image, mask = prepared.image, prepared.mask_grid
        pipe = InpaintingPipeline(self._network, config, self.pipeline_config(seed))
        boxes = self.crop_boxes(mask)
        self.last_crop_boxes = list(boxes) if boxes is not None else []
        with torch.inference_mode():
            if boxes is None:
                return pipe(image.to(self.device), mask.to(self.device), seed=seed).float().cpu()
            seeds = [seed] if len(boxes) == 1 else [seed] + spawn_seeds(seed, len(boxes))[1:]
            out = image.clone()
            for box, box_seed in zip(boxes, seeds):
                sample = pipe(crop(image, box).to(self.device), crop(mask, box).to(self.device), seed=box_seed)
                out[(..., *box.slices)] = sample.float().cpu()
        return out

    def sample_or_retry_on_cpu(self, prepared: PreparedVolume, seed: int, case_id: str) -> tuple[torch.Tensor, str]:
        """:meth:`sample`; a CUDA out-of-memory error retries on the CPU (and moves back afterwards).

        Returns:
            The model-grid output and the device that produced it.
        """
        try:
            return self.sample(prepared, seed), str(self.device)
        except RuntimeError as exc:
            if self.device.type != "cuda" or not is_out_of_memory(exc):
                raise
            logger.warning("case %s: CUDA out of memory; retrying on the CPU", case_id)
            torch.cuda.empty_cache()
            cuda = self.device
            self.to("cpu")
            try:
                return self.sample(prepared, seed), "cpu"
            finally:
                self.to(cuda)

    def finish(self, prepared: PreparedVolume, model_output: torch.Tensor) -> np.ndarray:
        """Third stage (CPU): back to the native grid and intensities, pasted into the voided scan.

        Returns:
            ``(D, H, W)`` float32, bit-identical to the voided scan outside the mask.
        """
        if prepared.state is None:
            raise ValueError("this volume was not sampled: its result is already in prepared.result")
        return postprocess(model_output, prepared.state, prepared.voided, prepared.mask)  # float32, pasted

    def inpaint_array(
        self,
        voided: np.ndarray,
        mask: np.ndarray,
        affine: np.ndarray | None = None,
        seed: int | None = None,
    ) -> np.ndarray:
        """Inpaint one native volume (:meth:`prepare`, :meth:`sample`, :meth:`finish`).

        Args:
            voided: ``(D, H, W)`` voided scan, native intensities.
            mask: ``(D, H, W)`` region to inpaint (binarised by
                :func:`~wdm_inpaint.data.mask_values.binarise_mask`).
            affine: ``(4, 4)`` voxel-to-world matrix (orientation); ``None``: identity.
            seed: sampling seed (``None``: the run seed).

        Returns:
            ``(D, H, W)`` float32: bit-identical to ``voided`` (as float32) outside the mask, inpainted
            (>= 0) inside.

        Raises:
            ValueError: on shape mismatch, a non-3-D array or non-finite values.
        """
        prepared = self.prepare(voided, mask, affine)
        if prepared.result is not None:
            return prepared.result
        return self.finish(prepared, self.sample(prepared, seed))

    def describe(self) -> dict[str, Any]:
        """Provenance of this engine (resolved options, checkpoint, device)."""
        info: dict[str, Any] = {
            "options": to_dict(self.options),
            "device": str(self.device),
            "acceleration": self.acceleration.describe(),
            "checkpoint": str(self.checkpoint_path) if self.checkpoint_path else None,
            "checkpoint_sha256": file_sha256(self.checkpoint_path) if self.checkpoint_path else None,
            "config": to_dict(self.config) if self.config is not None else None,
        }
        if not self.options.classical:
            info["pipeline"] = to_dict(self.pipeline_config())
        return info


__all__ = ["InferenceEngine", "PreparedVolume", "classical_inpaint", "is_out_of_memory"]
