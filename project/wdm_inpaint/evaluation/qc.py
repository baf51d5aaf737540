"""Quality-control images: one PNG per case with the three orthogonal planes through the mask.

Rows are the axial, coronal and sagittal planes through the centroid of the healthy mask (the scored region; the
inpainting mask when there is none). Columns are the voided input, the input with the mask outlines, the
prediction and the ground truth, all with the same grey window (the scorers' percentile window of the voided
input). The inpainting mask is outlined in yellow, the healthy mask in cyan. Volumes are turned to the closest
RAS orientation using the affine, so every image is shown the same way (patient's right on the right, anterior
and superior up); pixels keep the voxel aspect ratio.

Figures are drawn with matplotlib's Agg canvas (no pyplot, no global backend change) and written atomically.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from wdm_inpaint.evaluation.metrics import percentile_window
from wdm_inpaint.io.atomic import atomic_path

logger = logging.getLogger(__name__)

QC_DPI: int = 80
"""Resolution of the PNG."""

QC_PANEL_INCHES: float = 3.0
"""Size of one panel."""

MASK_COLOUR = "yellow"
"""Outline colour of the inpainting mask."""

HEALTHY_COLOUR = "cyan"
"""Outline colour of the healthy (scored) mask."""

OUTLINE_WIDTH: float = 0.8
"""Outline line width, in points."""

PLANES: tuple[tuple[str, int], ...] = (("axial", 2), ("coronal", 1), ("sagittal", 0))
"""Row label and the RAS axis held fixed in that plane."""

COLUMNS: tuple[str, ...] = ("voided input", "mask outline", "prediction", "ground truth")
"""Column titles."""


@dataclass
class QCVolumes:
    """The volumes of one case, all ``(X, Y, Z)`` in the same voxel grid.

    Attributes:
        voided: the input with the mask voided.
        mask: the inpainting mask (non-zero = filled).
        prediction: the filled volume.
        affine: voxel-to-world matrix shared by all volumes.
        ground_truth: the full image, if known.
        healthy_mask: the scored region, if known.
    """

    voided: np.ndarray
    mask: np.ndarray
    prediction: np.ndarray
    affine: np.ndarray
    ground_truth: np.ndarray | None = None
    healthy_mask: np.ndarray | None = None


def _to_ras(volume: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """Reorder and flip voxel axes so they run along R, A, S."""
    return nib.orientations.apply_orientation(volume, orientation)


def _voxel_sizes_ras(affine: np.ndarray, orientation: np.ndarray) -> np.ndarray:
    """Voxel edge lengths along the RAS-ordered axes."""
    sizes = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    ras = np.empty(3)
    for voxel_axis, (ras_axis, _) in enumerate(orientation):
        ras[int(ras_axis)] = sizes[voxel_axis]
    return ras


def _centroid(mask: np.ndarray) -> tuple[int, int, int]:
    """Rounded centroid of a mask (the volume centre for an empty mask)."""
    points = np.argwhere(mask)
    if points.size == 0:
        return tuple(int(n // 2) for n in mask.shape)  # type: ignore[return-value]
    return tuple(int(round(c)) for c in points.mean(axis=0))  # type: ignore[return-value]


def _plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """2-D plane of a RAS volume with the fixed ``axis``, transposed so that rows run along the later axis."""
    return np.take(volume, index, axis=axis).T


def _grey_window(voided: np.ndarray) -> tuple[float, float]:
    """Display window: the scorers' percentile window of the voided input, or its range if that is degenerate."""
    try:
        return percentile_window(voided)
    except ValueError:
        low, high = float(np.nanmin(voided)), float(np.nanmax(voided))
        return low, high if high > low else low + 1.0


def render_qc(volumes: QCVolumes, title: str) -> Figure:
    """Draw the QC figure of one case (see the module docstring for the layout)."""
    orientation = nib.orientations.io_orientation(volumes.affine)
    voided = _to_ras(np.asarray(volumes.voided, dtype=np.float64), orientation)
    mask = _to_ras(np.asarray(volumes.mask) != 0, orientation)
    prediction = _to_ras(np.asarray(volumes.prediction, dtype=np.float64), orientation)
    truth = (
        None
        if volumes.ground_truth is None
        else _to_ras(np.asarray(volumes.ground_truth, dtype=np.float64), orientation)
    )
    healthy = None if volumes.healthy_mask is None else _to_ras(np.asarray(volumes.healthy_mask) != 0, orientation)
    centre = _centroid(healthy if healthy is not None and healthy.any() else mask)
    sizes = _voxel_sizes_ras(volumes.affine, orientation)
    vmin, vmax = _grey_window(voided)

    figure = Figure(figsize=(QC_PANEL_INCHES * len(COLUMNS), QC_PANEL_INCHES * len(PLANES)), dpi=QC_DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(PLANES), len(COLUMNS), squeeze=False)
    panels = (voided, voided, prediction, truth)
    for row, (plane_name, axis) in enumerate(PLANES):
        shown = [a for a in range(3) if a != axis]
        aspect = sizes[shown[1]] / sizes[shown[0]]
        for col, volume in enumerate(panels):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(COLUMNS[col], fontsize=9)
            if col == 0:
                ax.set_ylabel(f"{plane_name} {centre[axis]}", fontsize=9)
            if volume is None:
                ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes, fontsize=9)
                continue
            ax.imshow(
                _plane(volume, axis, centre[axis]),
                cmap="gray",
                vmin=vmin,
                vmax=vmax,
                origin="lower",
                aspect=aspect,
                interpolation="nearest",
            )
            outlines = [(mask, MASK_COLOUR)] + ([(healthy, HEALTHY_COLOUR)] if healthy is not None else [])
            for region, colour in outlines:
                plane = _plane(region, axis, centre[axis]).astype(float)
                if col > 0 and plane.any() and plane.min() < plane.max():
                    ax.contour(plane, levels=[0.5], colors=colour, linewidths=OUTLINE_WIDTH, origin="lower")
    figure.suptitle(title, fontsize=10)
    figure.subplots_adjust(left=0.04, right=0.99, bottom=0.01, top=0.9, wspace=0.03, hspace=0.06)
    return figure


def write_qc_png(path: str | os.PathLike[str], volumes: QCVolumes, title: str) -> Path:
    """Render :func:`render_qc` and write it to ``path`` as PNG, atomically.

    Returns:
        The written path.
    """
    path = Path(path)
    figure = render_qc(volumes, title)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=QC_DPI)
    logger.debug("wrote QC image %s", path)
    return path


__all__ = ["COLUMNS", "PLANES", "QCVolumes", "render_qc", "write_qc_png"]
