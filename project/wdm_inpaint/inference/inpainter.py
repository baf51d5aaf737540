"""The front door: ``Inpainter`` loads a model once and inpaints single volumes or whole case folders.

Example::

    from wdm_inpaint import Inpainter

    inpainter = Inpainter.from_checkpoint()            # the bundled checkpoint, default sampler
    filled = inpainter.infer_single("case-t1n-voided.nii.gz", "case-mask.nii.gz", output_file="out.nii.gz")
    inpainter.infer_batch("data/", "predictions/")      # challenge layout in, one file per case out

The layers below it, each importing only the ones after it: :mod:`~wdm_inpaint.inference.runner` (folders),
:mod:`~wdm_inpaint.inference.engine` (one volume's stages), :mod:`~wdm_inpaint.inference.options`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from typing import Any

import nibabel as nib
import numpy as np
import torch

from wdm_inpaint.checkpoint import load_checkpoint
from wdm_inpaint.inference.checkpoints import resolve_checkpoint
from wdm_inpaint.inference.engine import InferenceEngine
from wdm_inpaint.inference.options import DEFAULT_SAMPLER, DEFAULT_STEPS, InferenceOptions, resolve_device
from wdm_inpaint.inference.records import RunSummary
from wdm_inpaint.inference.runner import run_folder
from wdm_inpaint.io.nifti import read_nifti, write_like

logger = logging.getLogger(__name__)


class Inpainter(InferenceEngine):
    """Inpaints brain MRI volumes with a trained wavelet diffusion model (or a classical fill).

    Build it with :meth:`from_checkpoint`; the model is loaded once and reused for every volume. The stages
    (``prepare``, ``sample``, ``finish``, ``inpaint_array``) come from
    :class:`~wdm_inpaint.inference.engine.InferenceEngine`.
    """

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
            sampler: see :class:`~wdm_inpaint.inference.options.InferenceOptions`; a classical fill loads no
                checkpoint.
            steps: network calls.
            samples: samples averaged inside the mask.
            seed: run seed.
            **options: further :class:`~wdm_inpaint.inference.options.InferenceOptions` fields.
        """
        opts = InferenceOptions(sampler=sampler, steps=steps, samples=samples, seed=seed, **options)
        dev = resolve_device(device)
        if opts.classical:
            return cls(None, None, opts, dev)
        ckpt = resolve_checkpoint(path)
        model, config = load_checkpoint(ckpt, map_location="cpu")
        logger.info("loaded %s (mode %s) on %s", ckpt, config.mode.name, dev)
        return cls(model, config, opts, dev, checkpoint_path=ckpt)

    def with_options(self, **changes: Any) -> Inpainter:
        """A copy sharing the model, with some :class:`InferenceOptions` fields replaced."""
        return Inpainter(self.model, self.config, replace(self.options, **changes), self.device, self.checkpoint_path)

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
            if reference is None:
                reference = nib.Nifti1Image(np.zeros(out.shape, np.float32), np.eye(4) if affine is None else affine)
            write_like(output_file, out, reference)
        return out

    def infer_batch(
        self,
        data_folder: str | os.PathLike[str],
        output_folder: str | os.PathLike[str],
        log_dir: str | os.PathLike[str] | None = None,
        overwrite: bool = False,
        beg: int | None = None,
        end: int | None = None,
        shard: tuple[int, int] | None = None,
        progress: bool = True,
    ) -> RunSummary:
        """Inpaint every case of a challenge-layout folder (see :func:`~wdm_inpaint.inference.runner.run_folder`).

        Args:
            data_folder: ``<ID>/<ID>-t1n-voided.nii.gz`` and ``<ID>/<ID>-mask.nii.gz`` per case; read only.
            output_folder: receives exactly one ``<ID>-t1n-inference.nii.gz`` per case and nothing else.
            log_dir: run record folder (default: the output folder's name plus ``-logs``, next to it).
            overwrite: redo cases whose output already exists (default: skip them).
            beg: first case index (sorted by ID).
            end: one past the last case index.
            shard: ``(i, n)``: every n-th case starting at i.
            progress: show a progress bar over the cases.

        Returns:
            The :class:`~wdm_inpaint.inference.records.RunSummary` (one record per case).
        """
        return run_folder(
            self, data_folder, output_folder, log_dir=log_dir, overwrite=overwrite, beg=beg, end=end, shard=shard,
            progress=progress,
        )


__all__ = ["Inpainter"]
