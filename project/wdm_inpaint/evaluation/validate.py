"""Submission checks: the organisers' rules for a folder of predictions, applied to a data folder.

A prediction folder passes when (``challenge.md`` §2, §7, §8):

* every entry is a regular file whose name matches :data:`PREDICTION_PATTERN` (searched, as the Synapse
  validator does; the test-phase metrics cube crashes on any other entry, hidden files included);
* the IDs (``#####-###``) taken from the names are unique and each names an input case;
* every input case has exactly one prediction;
* every prediction is a readable NIfTI whose stored shape equals the input's, whose qform and affine equal the
  input's exactly, and whose voxels are all finite.

Every violation is reported, not only the first. Deviations that the organisers do not reject but that are
risky (a name other than ``<case>-t1n-inference.nii.gz``, an integer on-disk dtype, negative values, a geometry
other than the BraTS standard) are warnings.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from wdm_inpaint.data.cases import PREDICTION_SUFFIX, Case, discover_cases, prediction_file_name

logger = logging.getLogger(__name__)

PREDICTION_PATTERN = re.compile(r"(\d{5}-\d{3})-t1n-inference\.nii\.gz$")
"""The organisers' prediction file pattern (used with ``search``); group 1 is the case ID."""

CASE_NUMBER_PATTERN = re.compile(r"(\d{5}-\d{3})$")
"""Numeric ID at the end of an input case folder name (``BraTS-GLI-00000-000`` -> ``00000-000``)."""

BRATS_SHAPE: tuple[int, int, int] = (240, 240, 155)
"""Shape the Synapse validator requires."""

BRATS_QFORM = np.array([[-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 239.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
"""qform the Synapse validator requires (LPS, 1 mm, origin (0, -239, 0))."""


def prediction_id(file_name: str) -> str | None:
    """Case ID (``#####-###``) the organisers read from a prediction file name, or ``None`` if it does not match."""
    match = PREDICTION_PATTERN.search(file_name)
    return match.group(1) if match else None


def case_number(case_id: str) -> str | None:
    """The ``#####-###`` part of an input case ID, or ``None``."""
    match = CASE_NUMBER_PATTERN.search(case_id)
    return match.group(1) if match else None


@dataclass
class ValidationReport:
    """Outcome of :func:`validate_submission`.

    Attributes:
        violations: one message per broken rule (the submission fails if there is any).
        warnings: risky but accepted findings.
        n_cases: input cases found.
        n_predictions: entries found in the prediction folder.
        matched: case ID -> prediction path, for each case with exactly one prediction.
    """

    violations: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_cases: int = 0
    n_predictions: int = 0
    matched: dict[str, Path] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """``True`` when there is no violation."""
        return not self.violations


def index_predictions(pred_dir: Path, report: ValidationReport) -> dict[str, list[Path]]:
    """List ``pred_dir``; record naming violations in ``report``; return ID -> matching files."""
    by_id: dict[str, list[Path]] = {}
    entries = sorted(pred_dir.iterdir())
    report.n_predictions = len(entries)
    for entry in entries:
        if entry.is_dir():
            report.violations.append(f"{entry}: is a folder; the prediction folder must hold only prediction files")
            continue
        if not entry.is_file():
            report.violations.append(f"{entry}: is not a regular file")
            continue
        if entry.name.startswith("."):
            report.violations.append(f"{entry}: hidden file; the test-phase scorer fails on any extra file")
            continue
        if not entry.name.endswith(".nii.gz"):
            report.violations.append(f"{entry}: not a .nii.gz file; only predictions may be in the folder")
            continue
        found = prediction_id(entry.name)
        if found is None:
            report.violations.append(
                f"{entry}: name does not match the pattern {PREDICTION_PATTERN.pattern} "
                f"(expected BraTS-GLI-#####-###{PREDICTION_SUFFIX})"
            )
            continue
        by_id.setdefault(found, []).append(entry)
    return by_id


def _geometry_reference(case: Case) -> Path | None:
    """The input file whose geometry a prediction must copy (``t1n-voided``, else ``mask``)."""
    for key in ("t1n_voided", "mask"):
        if key in case.paths:
            return case.paths[key]
    return None


@dataclass
class FileCheck:
    """Findings for one prediction file.

    Attributes:
        violations: broken rules, each naming the file.
        warnings: risky findings, each naming the file.
        brats_geometry: whether the file has the BraTS shape and qform.
    """

    violations: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    brats_geometry: bool = False


def check_prediction_file(path: Path, reference: Path | None) -> FileCheck:
    """Content checks of one prediction against its input.

    Args:
        path: the prediction file.
        reference: the input file with the expected geometry (``None``: only readability and finiteness).
    """
    check = FileCheck()
    try:
        image = nib.load(path)
        if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
            check.violations.append(f"{path}: not a NIfTI image (read as {type(image).__name__})")
            return check
        values = image.get_fdata()
    except Exception as exc:  # nibabel raises many types for broken files; all mean "unreadable"
        check.violations.append(f"{path}: cannot be read as NIfTI ({type(exc).__name__}: {exc})")
        return check
    shape = tuple(int(s) for s in image.header.get_data_shape())
    qform = image.header.get_qform()
    check.brats_geometry = shape == BRATS_SHAPE and np.array_equal(qform, BRATS_QFORM)
    if reference is not None:
        ref = nib.load(reference)
        ref_shape = tuple(int(s) for s in ref.header.get_data_shape())
        if shape != ref_shape:
            check.violations.append(f"{path}: shape {shape} differs from the input {reference.name} {ref_shape}")
        else:
            ref_qform = ref.header.get_qform()
            if not np.array_equal(qform, ref_qform):
                check.violations.append(
                    f"{path}: qform differs from the input {reference.name}: {_matrix(qform)} vs {_matrix(ref_qform)}"
                )
            if not np.array_equal(image.affine, ref.affine):
                check.violations.append(
                    f"{path}: affine differs from the input {reference.name}: "
                    f"{_matrix(image.affine)} vs {_matrix(ref.affine)}"
                )
    finite = np.isfinite(values)
    if not finite.all():
        n_nan = int(np.isnan(values).sum())
        n_bad = int(values.size - finite.sum())
        check.violations.append(f"{path}: {n_bad} non-finite voxel value(s) ({n_nan} NaN, {n_bad - n_nan} Inf)")
    elif values.size and float(values.min()) < 0:
        check.warnings.append(f"{path}: negative values (min {float(values.min()):.4g}); intensities should be >= 0")
    dtype = image.get_data_dtype()
    if not np.issubdtype(dtype, np.floating):
        check.warnings.append(
            f"{path}: stored as {dtype}; a scorer that casts to the header dtype may round or wrap values "
            "(save predictions as float32)"
        )
    return check


def _matrix(matrix: np.ndarray) -> str:
    """One-line rendering of a 4x4 matrix for messages."""
    return np.array2string(np.asarray(matrix), precision=4, separator=",", max_line_width=1000).replace("\n", "")


def validate_submission(data_dir: str | os.PathLike[str], pred_dir: str | os.PathLike[str]) -> ValidationReport:
    """Check a prediction folder against the cases of a data folder.

    Args:
        data_dir: folder of ``<ID>/`` case folders (the inference input).
        pred_dir: the folder of predictions to check.

    Returns:
        A :class:`ValidationReport` listing every violation and warning.

    Raises:
        FileNotFoundError: if the data folder does not exist.
        ValueError: if the data path is not a folder.
    """
    data_dir, pred_dir = Path(data_dir), Path(pred_dir)
    scan = discover_cases(data_dir)
    report = ValidationReport()
    report.n_cases = len(scan.cases)
    report.warnings.extend(scan.problems)
    if not scan.cases:
        report.violations.append(f"{data_dir}: no case folders found; nothing to check the predictions against")

    cases_by_number: dict[str, Case] = {}
    for case in scan.cases:
        number = case_number(case.id)
        if number is None:
            report.violations.append(
                f"input case {case.id}: its name has no #####-### ID, so no output name can match "
                f"{PREDICTION_PATTERN.pattern}"
            )
        elif number in cases_by_number:
            report.violations.append(
                f"input cases {cases_by_number[number].id} and {case.id} share the ID {number}; their outputs "
                "cannot be told apart"
            )
        else:
            cases_by_number[number] = case

    if not pred_dir.is_dir():
        what = "is not a folder" if pred_dir.exists() else "does not exist"
        report.violations.append(f"{pred_dir}: the prediction folder {what}")
        by_id: dict[str, list[Path]] = {}
    else:
        by_id = index_predictions(pred_dir, report)
    for number, files in sorted(by_id.items()):
        if len(files) > 1:
            names = ", ".join(f.name for f in files)
            report.violations.append(f"{pred_dir}: {len(files)} predictions for case ID {number}: {names}")
        if number not in cases_by_number:
            for file in files:
                report.violations.append(f"{file}: ID {number} names no input case in {data_dir}")
    checked = non_brats = 0
    for number, case in sorted(cases_by_number.items()):
        files = by_id.get(number, [])
        if not files:
            expected = pred_dir / prediction_file_name(case.id)
            report.violations.append(f"case {case.id}: no prediction (expected {expected})")
            continue
        for file in files:
            if file.name != prediction_file_name(case.id):
                report.warnings.append(
                    f"{file}: matches case {case.id} but is not named {prediction_file_name(case.id)} "
                    "(tools that look for the full case name will miss it)"
                )
            check = check_prediction_file(file, _geometry_reference(case))
            report.violations.extend(check.violations)
            report.warnings.extend(check.warnings)
            checked += 1
            non_brats += not check.brats_geometry
        if len(files) == 1:
            report.matched[case.id] = files[0]
    if non_brats:
        report.warnings.append(
            f"{non_brats} of {checked} predictions do not have the BraTS geometry (shape {BRATS_SHAPE}, qform LPS "
            "with origin (0, -239, 0)); the Synapse validator rejects such files"
        )
    return report


__all__ = [
    "BRATS_QFORM",
    "BRATS_SHAPE",
    "PREDICTION_PATTERN",
    "FileCheck",
    "ValidationReport",
    "case_number",
    "check_prediction_file",
    "index_predictions",
    "prediction_id",
    "validate_submission",
]
