"""The front door: ``Inpainter`` loads a model once and inpaints single volumes or whole case folders.

Example::

    from wdm_inpaint import Inpainter

    inpainter = Inpainter.from_checkpoint()            # the bundled checkpoint, default sampler
    filled = inpainter.infer_single("case-t1n-voided.nii.gz", "case-mask.nii.gz", output_file="out.nii.gz")
    inpainter.infer_batch("data/", "predictions/")      # challenge layout in, one file per case out
"""

from __future__ import annotations

import logging
import os
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wdm_inpaint.config import WDMConfig
from wdm_inpaint.data.cropping import CropBox, crop, mask_crop_box, mask_crop_boxes
from wdm_inpaint.data.preprocess import (
    INTENSITY_FLOOR,
    PreprocessState,
    binarise_mask,
    postprocess,
    preprocess,
)
from wdm_inpaint.fill import CLASSICAL_FILLS, classical_fill
from wdm_inpaint.inference.acceleration import (
    AccelerationConfig,
    ResolvedAcceleration,
    prepare_model,
    resolve_acceleration,
)
from wdm_inpaint.io.nifti import read_nifti, write_like
from wdm_inpaint.pipeline.config import PipelineConfig
from wdm_inpaint.samplers.base import SamplerConfig

logger = logging.getLogger(__name__)

DEFAULT_SAMPLER = "dpmpp_2m"
"""Default sampler of inference (chosen by measurement; see ``docs/performance.md``)."""

DEFAULT_STEPS = 10
"""Default number of network calls of the default sampler (chosen by measurement)."""

DIFFUSION_SAMPLERS = ("ddpm", "ddim", "dpmpp_2m")
"""Samplers that run the diffusion model."""

SAMPLER_CHOICES = DIFFUSION_SAMPLERS + tuple(CLASSICAL_FILLS)
"""Every value ``--sampler`` accepts: the diffusion samplers and the classical fills (no model)."""


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``auto``/``None`` -> CUDA when available, else CPU; anything else as given.

    Raises:
        RuntimeError: if CUDA is asked for but not available.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but no CUDA device is visible; use --device cpu or auto")
    return device


def classical_inpaint(name: str, voided: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill ``mask`` of ``voided`` with the classical fill ``name``; the filled region is clamped at the floor.

    Returns:
        ``(D, H, W)`` float32: ``voided`` (as float32) outside the mask, the fill (>= 0) inside.
    """
    voided32 = voided.astype(np.float32, copy=False)
    filled = np.maximum(classical_fill(name, voided.astype(np.float64, copy=False), mask), INTENSITY_FLOOR)
    return np.where(mask, filled.astype(np.float32), voided32)


def case_seed(seed: int, case_id: str) -> int:
    """Per-case seed derived from the run seed and the case ID (independent of order and sharding)."""
    return (seed * 1_000_003 + zlib.crc32(case_id.encode())) % (2**31)


@dataclass(frozen=True)
class InferenceOptions:
    """How :class:`Inpainter` samples.

    Attributes:
        sampler: a diffusion sampler (``ddpm``, ``ddim``, ``dpmpp_2m``) or a classical fill (``harmonic``,
            ``mean``: no model is loaded).
        steps: network calls of the diffusion sampler (``None``: every trained timestep for ``ddpm``/``ddim``).
        samples: K independent samples averaged inside the mask.
        seed: run seed; each case samples with :func:`case_seed` of it.
        known_region: ``upstream`` (clean known tissue) or ``matched`` (scaled as in training).
        strength: fraction of the sampler's grid that is run; below 1 sampling starts from the mode's anchor
            noised to an intermediate timestep (``PipelineConfig.strength``).
        crop: sample only boxes around the mask (``None``: the checkpoint's ``preprocess.crop``; one box per
            group of far-apart components when the checkpoint's ``preprocess.crop_split`` is on).
        precision: network precision, ``auto`` (bfloat16 autocast on CUDA, float32 on CPU), ``float32`` or
            ``bfloat16`` (see :class:`~wdm_inpaint.inference.acceleration.AccelerationConfig`).
        channels_last: channels-last 3-D memory format (``None``: on CUDA).
        compile: ``torch.compile`` the network (a compilation per new crop size).
        compile_mode: ``torch.compile`` mode (``None``: its default).
        progress: per-step progress bars.
    """

    sampler: str = DEFAULT_SAMPLER
    steps: int | None = DEFAULT_STEPS
    samples: int = 1
    seed: int = 0
    known_region: str = "upstream"
    strength: float = 1.0
    crop: bool | None = None
    precision: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    compile_mode: str | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLER_CHOICES:
            raise ValueError(f"unknown sampler {self.sampler!r}; choose one of {list(SAMPLER_CHOICES)}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        self.acceleration()  # validates precision

    def acceleration(self) -> AccelerationConfig:
        """The fast-path switches of these options."""
        return AccelerationConfig(
            precision=self.precision,  # type: ignore[arg-type]
            channels_last=self.channels_last,
            compile=self.compile,
            compile_mode=self.compile_mode,
        )

    @property
    def classical(self) -> bool:
        """Whether the sampler is a classical fill (no model)."""
        return self.sampler in CLASSICAL_FILLS


@dataclass
class PreparedVolume:
    """A volume between the stages of :class:`Inpainter` (see :meth:`Inpainter.prepare`).

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


class Inpainter:
    """Inpaints brain MRI volumes with a trained wavelet diffusion model (or a classical fill).

    Build it with :meth:`from_checkpoint`; the model is loaded once and reused for every volume.
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

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str] | None = None,
        device: str | torch.device | None = "auto",
        sampler: str = DEFAULT_SAMPLER,
        steps: int | None = DEFAULT_STEPS,
        samples: int = 1,
        seed: int = 0,
        **options: Any,
    ) -> Inpainter:
        """Load a checkpoint (``None``: ``$WDM_INPAINT_CHECKPOINT`` or the bundled one) and build an inpainter.

        Args:
            path: checkpoint file written by ``wdm-inpaint train`` or ``convert-checkpoint``.
            device: ``auto`` (CUDA if visible), ``cpu``, ``cuda`` or ``cuda:N``.
            sampler: see :class:`InferenceOptions`; a classical fill loads no checkpoint.
            steps: network calls.
            samples: samples averaged inside the mask.
            seed: run seed.
            **options: further :class:`InferenceOptions` fields.
        """
        from wdm_inpaint.checkpoint import load_checkpoint
        from wdm_inpaint.inference.checkpoints import resolve_checkpoint

        opts = InferenceOptions(sampler=sampler, steps=steps, samples=samples, seed=seed, **options)
        dev = resolve_device(device)
        if opts.classical:
            return cls(None, None, opts, dev)
        ckpt = resolve_checkpoint(path)
        model, config = load_checkpoint(ckpt, map_location="cpu")
        logger.info("loaded %s (mode %s) on %s", ckpt, config.mode.name, dev)
        return cls(model, config, opts, dev, checkpoint_path=ckpt)

    def to(self, device: str | torch.device) -> Inpainter:
        """Move the model to ``device`` (used to retry on CPU after a CUDA out-of-memory error).

        The ``auto`` fast paths are resolved again for the new device.
        """
        self._place(torch.device(device))
        return self

    # ------------------------------------------------------------------ core

    def pipeline_config(self, seed: int) -> PipelineConfig:
        """The :class:`PipelineConfig` used for one volume sampled with ``seed``."""
        o = self.options
        steps = o.steps
        trained = self.config.schedule.num_timesteps if self.config is not None else None
        if steps is not None and trained is not None and steps > trained:
            logger.warning("%d steps asked for, but the model was trained with T=%d: using %d", steps, trained, trained)
            steps = trained
        return PipelineConfig(
            sampler=SamplerConfig(name=o.sampler, num_steps=steps),  # type: ignore[arg-type]
            num_samples=o.samples,
            seed=seed,
            known_region=o.known_region,  # type: ignore[arg-type]
            strength=o.strength,
            autocast=self.acceleration.autocast,
            channels_last=self.acceleration.channels_last,
            progress=o.progress,
        )

    def crop_boxes(self, mask: torch.Tensor) -> list[CropBox] | None:
        """The boxes sampled for a model-grid ``mask`` ``(1, 1, D, H, W)``; ``None``: the whole volume."""
        if self.config is None:
            raise RuntimeError(f"sampler {self.options.sampler!r} needs a model, but none is loaded")
        pre = self.config.preprocess
        if not (pre.crop if self.options.crop is None else self.options.crop):
            return None
        multiple = self.config.unet.image_multiple
        if pre.crop_split:
            return mask_crop_boxes(mask, pre.crop_margin, multiple)
        return [mask_crop_box(mask, pre.crop_margin, multiple)]

    def _sample_model_grid(self, image: torch.Tensor, mask: torch.Tensor, seed: int) -> torch.Tensor:
        """Run the diffusion pipeline on model-grid tensors ``(1, 1, D, H, W)``; returns the same shape.

        Each crop box is sampled on its own (box k > 0 with its own seed spawned from ``seed``); voxels
        outside every box keep ``image``.
        """
        from wdm_inpaint.pipeline.inpaint import InpaintingPipeline, spawn_seeds

        if self.config is None or self._network is None:
            raise RuntimeError(f"sampler {self.options.sampler!r} needs a model, but none is loaded")
        pipe = InpaintingPipeline(self._network, self.config, self.pipeline_config(seed))
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

    def prepare(
        self,
        voided: np.ndarray,
        mask: np.ndarray,
        affine: np.ndarray | None = None,
    ) -> PreparedVolume:
        """First stage of :meth:`inpaint_array` (CPU): check the inputs and bring them to the model grid.

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
        if self.config is None:
            raise RuntimeError(f"sampler {self.options.sampler!r} needs a model, but none is loaded")
        affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
        image_t, mask_t, state = preprocess(
            voided32, mask_bin, affine, self.config.preprocess, self.config.unet.image_multiple
        )
        return PreparedVolume(voided32, mask_bin, image_t, mask_t, state)

    def sample(self, prepared: PreparedVolume, seed: int | None = None) -> torch.Tensor:
        """Second stage (the model's device): sample the prepared volume.

        Returns:
            ``(1, 1, D', H', W')`` float32 CPU tensor on the model grid.
        """
        if prepared.image is None or prepared.mask_grid is None:
            raise ValueError("this volume needs no sampling: its result is already in prepared.result")
        return self._sample_model_grid(prepared.image, prepared.mask_grid, self.options.seed if seed is None else seed)

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
            mask: ``(D, H, W)`` region to inpaint (values >= 0.5 count as inside).
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

    # ------------------------------------------------------------------ front door

    def infer_single(
        self,
        t1n_voided: str | os.PathLike[str] | np.ndarray,
        mask: str | os.PathLike[str] | np.ndarray,
        output_file: str | os.PathLike[str] | None = None,
        affine: np.ndarray | None = None,
        seed: int | None = None,
    ) -> np.ndarray:
        """Inpaint one volume given as NIfTI paths or arrays.

        Args:
            t1n_voided: path or ``(D, H, W)`` array of the voided scan.
            mask: path or ``(D, H, W)`` array of the region to inpaint.
            output_file: where to write the result (NIfTI, float32, the voided scan's header); needs
                ``t1n_voided`` as a path, or ``affine``.
            affine: orientation of array inputs (ignored for paths, whose header is used).
            seed: sampling seed (``None``: the run seed).

        Returns:
            ``(D, H, W)`` float32 inpainted volume.
        """
        reference = None
        if isinstance(t1n_voided, (str, os.PathLike)):
            vol = read_nifti(t1n_voided)
            voided, affine, reference = vol.data, vol.affine, vol.image
        else:
            voided = np.asarray(t1n_voided)
        mask_arr = read_nifti(mask).data if isinstance(mask, (str, os.PathLike)) else np.asarray(mask)
        out = self.inpaint_array(voided, mask_arr, affine, seed)
        if output_file is not None:
            import nibabel as nib

            if reference is None:
                reference = nib.Nifti1Image(np.zeros(out.shape, np.float32), np.eye(4) if affine is None else affine)
            write_like(output_file, out, reference)
        return out

    def infer_batch(
        self,
        data_folder: str | os.PathLike[str],
        output_folder: str | os.PathLike[str],
        **kwargs: Any,
    ) -> Any:
        """Inpaint every case of a challenge-layout folder; see :func:`wdm_inpaint.inference.runner.run_folder`.

        Returns:
            The :class:`~wdm_inpaint.inference.runner.RunSummary`.
        """
        from wdm_inpaint.inference.runner import run_folder

        return run_folder(self, data_folder, output_folder, **kwargs)

    def describe(self) -> dict[str, Any]:
        """Provenance of this inpainter (resolved options, checkpoint, device)."""
        from wdm_inpaint.config import to_dict
        from wdm_inpaint.inference.checkpoints import file_sha256

        info: dict[str, Any] = {
            "options": to_dict(self.options),
            "device": str(self.device),
            "acceleration": self.acceleration.describe(),
            "checkpoint": str(self.checkpoint_path) if self.checkpoint_path else None,
            "checkpoint_sha256": file_sha256(self.checkpoint_path) if self.checkpoint_path else None,
            "config": to_dict(self.config) if self.config is not None else None,
        }
        if not self.options.classical:
            info["pipeline"] = to_dict(self.pipeline_config(self.options.seed))
        return info

    def with_options(self, **changes: Any) -> Inpainter:
        """A copy sharing the model, with some :class:`InferenceOptions` fields replaced."""
        return Inpainter(self.model, self.config, replace(self.options, **changes), self.device, self.checkpoint_path)


__all__ = [
    "DEFAULT_SAMPLER",
    "DEFAULT_STEPS",
    "DIFFUSION_SAMPLERS",
    "SAMPLER_CHOICES",
    "InferenceOptions",
    "Inpainter",
    "PreparedVolume",
    "case_seed",
    "classical_inpaint",
    "resolve_device",
]
