"""Reading one case's inputs for inference, and what to do with inputs that are not as the challenge promises.

Documented behaviour per problem (``CaseInputs.fallback_reason`` set = the case is filled classically):

==============================================  ============================================================
problem                                         behaviour
==============================================  ============================================================
voided scan missing, unreadable, corrupt, 4-D   :class:`~wdm_inpaint.data.cases.CaseError`: no output
NaN/Inf voxels in the voided scan               set to 0, classical fill (fallback)
mask missing, unreadable, or shape mismatch     mask guessed from the voided scan, classical fill (fallback)
mask not binary                                 binarised (>= 0.5 is inside: MASK_THRESHOLD), model runs
empty mask                                      output = input (fallback: nothing to inpaint)
mask covering every voxel                       no known tissue to inpaint from: output = input clamped at 0
                                                (fallback)
mask entirely in the background (no tissue      output = input clamped at 0 (fallback: there is no tissue to
within BACKGROUND_SHELL voxels; an all-zero     continue, so none is invented)
voided scan)
mask voxels outside the model grid (input       those voxels get the harmonic fill; the case counts as a
larger than the grid)                           fallback (``inference/coverage.py``)
float64 voided scan                             output is float32: known voxels equal the input rounded to
                                                float32 (bit for bit for float32 and integer inputs)
negative voxels                                 kept outside the mask; the filled region is >= 0
integer or float on-disk dtypes, odd affines    handled by the model path
==============================================  ============================================================
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
from scipy import ndimage

from wdm_inpaint.data.cases import Case, CaseError
from wdm_inpaint.data.mask_values import MASK_RULE, binarise_mask

logger = logging.getLogger(__name__)

NONFINITE_REPLACEMENT = 0.0
"""Value that replaces NaN/Inf voxels of a voided scan (the challenge's background and voided value)."""

BACKGROUND_SHELL = 2
"""Voxels around the mask searched for tissue; none there (all 0) means the mask lies in the background."""


@dataclass
class CaseInputs:
    """One case, read and checked.

    Attributes:
        case_id: the case ID.
        voided: ``(D, H, W)`` voided scan (float64, finite).
        mask: ``(D, H, W)`` bool region to inpaint.
        affine: ``(4, 4)`` affine of the voided scan.
        reference: the voided scan's NIfTI image (its header is the output's).
        notes: non-fatal problems that were corrected.
        fallback_reason: why the case must be filled classically (``None``: the model may run).
        passthrough: the output is the input unchanged inside the mask too (empty or all-covering mask).
    """

    case_id: str
    voided: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    reference: nib.Nifti1Image
    notes: list[str] = field(default_factory=list)
    fallback_reason: str | None = None
    passthrough: bool = False


def guess_mask(voided: np.ndarray) -> np.ndarray:
    """Guess the voided region of a scan: zero voxels enclosed by tissue (holes of the non-zero region).

    Args:
        voided: ``(D, H, W)`` voided scan (voided voxels are 0).

    Returns:
        ``(D, H, W)`` bool mask.
    """
    tissue = voided != 0
    filled = ndimage.binary_fill_holes(tissue)
    return np.asarray(filled & ~tissue)


def lies_in_background(voided: np.ndarray, mask: np.ndarray) -> bool:
    """Whether every known voxel within :data:`BACKGROUND_SHELL` voxels of ``mask`` is 0 (no tissue to continue).

    Args:
        voided: ``(D, H, W)`` voided scan.
        mask: ``(D, H, W)`` bool region to inpaint (not empty).
    """
    shell = ndimage.binary_dilation(mask, iterations=BACKGROUND_SHELL) & ~mask
    return not np.any(voided[shell] != 0)


def read_case_inputs(case: Case) -> CaseInputs:
    """Read ``t1n-voided`` and ``mask`` of ``case`` and apply the behaviour table of this module.

    Raises:
        CaseError: when the voided scan itself cannot be used (missing, unreadable, not 3-D).
    """
    voided_vol = case.read("t1n_voided", allow_nonfinite=True)
    voided = np.asarray(voided_vol.data, dtype=np.float64)
    notes: list[str] = []
    fallback: str | None = None
    finite = np.isfinite(voided)
    if not finite.all():
        n_bad = int(voided.size - np.count_nonzero(finite))
        voided = np.where(finite, voided, NONFINITE_REPLACEMENT)
        fallback = f"{n_bad} NaN/Inf voxel(s) in {voided_vol.path.name} (set to {NONFINITE_REPLACEMENT:g})"
    if (voided < 0).any():
        notes.append(f"{int((voided < 0).sum())} negative voxel(s) in {voided_vol.path.name} (kept outside the mask)")

    mask: np.ndarray | None = None
    try:
        mask_vol = case.read("mask", allow_nonfinite=True)
        raw = np.nan_to_num(mask_vol.data, nan=0.0)
        if raw.shape != voided.shape:
            fallback = fallback or (
                f"mask {mask_vol.path.name} has shape {raw.shape}, the voided scan {voided.shape}: mask guessed"
            )
        else:
            values = np.unique(raw)
            if not np.isin(values, (0.0, 1.0)).all():
                shown = ", ".join(f"{v:g}" for v in values[:6]) + (", ..." if len(values) > 6 else "")
                notes.append(f"mask {mask_vol.path.name} is not binary (values {shown}); voxels {MASK_RULE} are inside")
            mask = binarise_mask(raw)
            if not np.allclose(mask_vol.affine, voided_vol.affine, atol=1e-3):
                notes.append(f"mask {mask_vol.path.name} has another affine than the voided scan; voxel grid used")
    except CaseError as exc:
        fallback = fallback or f"{exc}; mask guessed from the voided scan"
    if mask is None:
        mask = guess_mask(voided)

    inputs = CaseInputs(case.id, voided, mask, voided_vol.affine, voided_vol.image, notes, fallback)
    if not mask.any():
        inputs.fallback_reason = inputs.fallback_reason or "empty mask: nothing to inpaint, output equals the input"
        inputs.passthrough = True
    elif mask.all():
        inputs.fallback_reason = "mask covers every voxel: no known tissue to inpaint from"
        inputs.passthrough = True
    elif lies_in_background(voided, mask):
        inputs.fallback_reason = inputs.fallback_reason or (
            "the mask lies entirely in the background (no tissue next to it): output equals the input"
        )
        inputs.passthrough = True
    return inputs


__all__ = ["BACKGROUND_SHELL", "NONFINITE_REPLACEMENT", "CaseInputs", "guess_mask", "lies_in_background", "read_case_inputs"]
