"""Reading and writing NIfTI volumes with clear errors.

:func:`read_nifti` loads a 3-D volume (a 4-D file with a singleton 4th axis is squeezed) and raises
:class:`NiftiError` naming the file when it is missing, not NIfTI, truncated, of the wrong dimensionality or
holds NaN/Inf values. :func:`write_like` writes an array as float32 with the geometry and header of a
reference image, atomically.
"""

from __future__ import annotations

import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError

from wdm_inpaint.io.atomic import atomic_path

logger = logging.getLogger(__name__)

SPATIAL_DIMS = 3
"""Number of spatial axes of every volume the package handles."""

OUTPUT_DTYPE = np.float32
"""On-disk dtype of every written volume (an integer header dtype would round or scale the values)."""

NIFTI_CLASSES: tuple[type, ...] = (nib.Nifti1Image, nib.Nifti2Image)
"""Image classes accepted by :func:`read_nifti` (``.nii``/``.nii.gz``; Analyze or MGH files are rejected)."""

SOURCE_SHAPE_KEY = "wdm_source_shape"
"""Key of ``image.extra`` holding the on-disk shape of a squeezed 4-D file (:func:`write_like` writes it back)."""


class NiftiError(ValueError):
    """A NIfTI file cannot be used; the message names the file and the problem."""


@dataclass
class Volume:
    """A volume read from disk.

    Attributes:
        data: (D, H, W) array in voxel order, scaled by the header slope/intercept.
        image: the nibabel image (3-D header and affine; a squeezed 4-D file gets a 3-D header).
        path: the file it came from.
    """

    data: np.ndarray
    image: nib.Nifti1Image
    path: Path

    @property
    def affine(self) -> np.ndarray:
        """(4, 4) voxel-to-world matrix."""
        return self.image.affine


def _squeeze_to_3d(image: nib.Nifti1Image, path: Path) -> nib.Nifti1Image:
    shape = image.shape
    if len(shape) == SPATIAL_DIMS:
        return image
    if len(shape) < SPATIAL_DIMS:
        raise NiftiError(f"{path}: expected a 3-D volume, got shape {shape}")
    if any(s != 1 for s in shape[SPATIAL_DIMS:]):
        raise NiftiError(
            f"{path}: expected a 3-D volume, got shape {shape} (a 4-D file is only accepted with a single "
            "volume along the 4th axis)"
        )
    header = image.header.copy()
    header.set_data_shape(shape[:SPATIAL_DIMS])
    # Reshape the lazy proxy (no data read yet); the affine equals the header's, so the header is kept as is.
    dataobj = image.dataobj.reshape(shape[:SPATIAL_DIMS])
    return image.__class__(dataobj, image.affine, header=header, extra={SOURCE_SHAPE_KEY: tuple(shape)})


def load_image(path: str | os.PathLike[str]) -> nib.Nifti1Image:
    """Open a NIfTI file and check it is a (squeezable) 3-D volume, without reading the voxel data.

    Raises:
        FileNotFoundError: if the file does not exist.
        NiftiError: if it is not a NIfTI file, its header is unreadable, or it is not 3-D.
    """
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise NiftiError(f"{path}: is a folder, expected a NIfTI file")
        raise FileNotFoundError(f"{path}: file not found")
    try:
        image = nib.load(path)
    except ImageFileError as exc:
        raise NiftiError(f"{path}: not a NIfTI file ({exc})") from exc
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise NiftiError(f"{path}: cannot read the header, the file is corrupt or truncated ({exc})") from exc
    if not isinstance(image, NIFTI_CLASSES):
        raise NiftiError(f"{path}: not a NIfTI file (nibabel reads it as {type(image).__name__})")
    return _squeeze_to_3d(image, path) if len(image.shape) != SPATIAL_DIMS else image


def read_nifti(
    path: str | os.PathLike[str],
    dtype: type[np.floating] = np.float64,
    allow_nonfinite: bool = False,
) -> Volume:
    """Read a 3-D NIfTI volume.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        dtype: floating dtype of the returned data (values are ``get_fdata`` values cast to it).
        allow_nonfinite: log a warning instead of raising when the data holds NaN or Inf.

    Returns:
        The :class:`Volume` with (D, H, W) data.

    Raises:
        FileNotFoundError: if the file does not exist.
        NiftiError: if the file is not NIfTI, is corrupt/truncated, is not 3-D (a singleton 4th axis is
            squeezed) or holds NaN/Inf values (unless ``allow_nonfinite``).
    """
    path = Path(path)
    image = load_image(path)
    try:
        data = np.asarray(image.get_fdata(dtype=np.float64), dtype=dtype)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise NiftiError(f"{path}: cannot read the voxel data, the file is corrupt or truncated ({exc})") from exc
    finite = np.isfinite(data)
    if not finite.all():
        n_bad = int(data.size - np.count_nonzero(finite))
        n_nan = int(np.count_nonzero(np.isnan(data)))
        message = f"{path}: {n_bad} non-finite voxel value(s) ({n_nan} NaN, {n_bad - n_nan} Inf)"
        if not allow_nonfinite:
            raise NiftiError(message)
        logger.warning("%s", message)
    return Volume(data=data, image=image, path=path)


def write_like(path: str | os.PathLike[str], data: np.ndarray, reference_image: nib.Nifti1Image) -> Path:
    """Write ``data`` as float32 NIfTI with the geometry and header of ``reference_image``, atomically.

    The reference header is copied (qform, sform and their codes, pixdim, units, description); only the
    data type becomes float32 with slope 1 and intercept 0, so the written values are exactly the float32
    values of ``data``. A reference read from a 4-D file with a singleton 4th axis gets its on-disk shape back
    (the output has the input's shape).

    Args:
        path: output file (``.nii.gz`` is compressed).
        data: (D, H, W) array with the reference image's shape.
        reference_image: the image whose header and affine the output takes.

    Returns:
        The written path.

    Raises:
        NiftiError: if the shapes differ or ``data`` holds non-finite values.
    """
    path = Path(path)
    data = np.asarray(data)
    ref_shape = tuple(reference_image.shape[:SPATIAL_DIMS])
    if data.shape != ref_shape:
        raise NiftiError(f"{path}: data shape {data.shape} differs from the reference image shape {ref_shape}")
    if not np.all(np.isfinite(data)):
        raise NiftiError(f"{path}: refusing to write non-finite values")
    ref_header = reference_image.header
    header = ref_header.copy()
    source_shape = reference_image.extra.get(SOURCE_SHAPE_KEY) if hasattr(reference_image, "extra") else None
    if source_shape is not None and tuple(source_shape[:SPATIAL_DIMS]) == data.shape:
        data = data.reshape(source_shape)
    header.set_data_shape(data.shape)
    header.set_data_dtype(OUTPUT_DTYPE)
    image_class = type(reference_image) if isinstance(reference_image, NIFTI_CLASSES) else nib.Nifti1Image
    # No affine argument: the copied header's qform/sform fields and codes are written unchanged.
    out = image_class(data.astype(OUTPUT_DTYPE, copy=False), None, header=header)
    # Set after construction (the constructor resets scaling of array data): identity scaling, stored explicitly.
    out.header.set_slope_inter(1.0, 0.0)
    with atomic_path(path) as tmp:
        nib.save(out, tmp)
    logger.debug("wrote %s", path)
    return path


def volume_problem(path: str | os.PathLike[str], expected_shape: tuple[int, ...] | None = None) -> str | None:
    """Why the NIfTI file ``path`` is not a complete, usable volume, or ``None`` when it is.

    Decompresses the whole file (a truncated ``.nii.gz`` whose header is intact fails here) and checks the shape
    (3-D, or ``expected_shape``: the squeezed shape of the case's input), a floating on-disk dtype and finite values.
    """
    path = Path(path)
    try:
        image = load_image(path)
        data = np.asarray(image.dataobj)
    except (NiftiError, OSError, EOFError, zlib.error, ValueError) as exc:
        return f"unreadable ({exc})"
    if expected_shape is not None and tuple(image.shape) != tuple(expected_shape):
        return f"shape {tuple(image.shape)}, expected {tuple(expected_shape)}"
    if not np.issubdtype(image.get_data_dtype(), np.floating):
        return f"on-disk dtype {image.get_data_dtype()}, expected floating point"
    if not np.isfinite(data).all():
        return "holds NaN or Inf values"
    return None


__all__ = [
    "NiftiError",
    "OUTPUT_DTYPE",
    "SOURCE_SHAPE_KEY",
    "Volume",
    "load_image",
    "read_nifti",
    "volume_problem",
    "write_like",
]
