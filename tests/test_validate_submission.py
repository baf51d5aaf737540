"""``wdm-inpaint validate-submission``: each organiser rule, through the command line."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from _evaluation_helpers import LPS_AFFINE, save, write_case, write_prediction

from wdm_inpaint.cli.main import main
from wdm_inpaint.evaluation.validate import PREDICTION_PATTERN, prediction_id, validate_submission

CASES = ("BraTS-GLI-00000-000", "BraTS-GLI-00001-001")


@pytest.fixture()
def submission(tmp_path: Path) -> tuple[Path, Path]:
    """A data folder with two cases and a valid prediction folder."""
    data, pred = tmp_path / "data", tmp_path / "pred"
    for seed, case_id in enumerate(CASES):
        arrays = write_case(data, case_id, seed, ground_truth=False)
        write_prediction(pred, case_id, arrays["t1n-voided"] + 50.0 * arrays["mask"])
    return data, pred


def run_cli(data: Path, pred: Path, capsys) -> tuple[int, str]:
    code = main(["validate-submission", "-i", str(data), "-p", str(pred)])
    return code, capsys.readouterr().out


def test_organiser_pattern_reads_the_case_id():
    assert PREDICTION_PATTERN.pattern == r"(\d{5}-\d{3})-t1n-inference\.nii\.gz$"
    assert prediction_id("BraTS-GLI-01337-001-t1n-inference.nii.gz") == "01337-001"
    assert prediction_id("BraTS-GLI-01337-001-t1n-inference.nii") is None
    assert prediction_id("BraTS-GLI-01337-001-t1n.nii.gz") is None


def test_valid_folder_passes(submission, capsys):
    code, out = run_cli(*submission, capsys)
    assert code == 0
    assert "VALID: 2 entries" in out and "INVALID" not in out


def violation_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("INVALID: ") and "violation(s)" not in line]


@pytest.mark.parametrize(
    "breakage, expected",
    [
        ("missing", "case BraTS-GLI-00001-001: no prediction"),
        ("extra_file", "run.log: not a .nii.gz file"),
        ("hidden_file", ".DS_Store: hidden file"),
        ("sub_folder", "logs: is a folder"),
        ("bad_name", "case1.nii.gz: name does not match the pattern"),
        ("duplicate", "2 predictions for case ID 00000-000"),
        ("unknown_id", "ID 99999-000 names no input case"),
        ("shape", "shape (16, 16, 11) differs from the input"),
        ("qform", "qform differs from the input"),
        ("affine", "affine differs from the input"),
        ("non_finite", "3 non-finite voxel value(s) (2 NaN, 1 Inf)"),
        ("corrupt", "cannot be read as NIfTI"),
    ],
)
def test_each_violation_is_reported_with_a_non_zero_exit(submission, capsys, breakage, expected):
    data, pred = submission
    good = pred / f"{CASES[0]}-t1n-inference.nii.gz"
    volume = nib.load(good).get_fdata()
    if breakage == "missing":
        (pred / f"{CASES[1]}-t1n-inference.nii.gz").unlink()
    elif breakage == "extra_file":
        (pred / "run.log").write_text("log")
    elif breakage == "hidden_file":
        (pred / ".DS_Store").write_bytes(b"\0")
    elif breakage == "sub_folder":
        (pred / "logs").mkdir()
    elif breakage == "bad_name":
        save(pred / "case1.nii.gz", volume.astype(np.float32))
    elif breakage == "duplicate":
        shutil.copy(good, pred / "copy-00000-000-t1n-inference.nii.gz")
    elif breakage == "unknown_id":
        shutil.copy(good, pred / "BraTS-GLI-99999-000-t1n-inference.nii.gz")
    elif breakage == "shape":
        write_prediction(pred, CASES[0], volume[:, :, :-1])
    elif breakage == "qform":
        shifted = LPS_AFFINE.copy()
        shifted[0, 3] = 5.0
        write_prediction(pred, CASES[0], volume, affine=shifted)
    elif breakage == "affine":
        image = nib.load(good)
        sform = LPS_AFFINE.copy()
        sform[2, 3] = -3.0
        image.set_sform(sform, code=2)  # qform unchanged, sform (the affine nibabel reports) moved
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj), None, header=image.header), good)
    elif breakage == "non_finite":
        volume[0, 0, :3] = [np.nan, np.nan, np.inf]
        write_prediction(pred, CASES[0], volume)
    elif breakage == "corrupt":
        good.write_bytes(gzip.compress(b"not a nifti at all" * 40)[:200])
    code, out = run_cli(data, pred, capsys)
    assert code == 1
    assert any(expected in line for line in violation_lines(out)), out
    assert "violation(s)" in out


def test_all_violations_are_listed_not_only_the_first(submission, capsys):
    data, pred = submission
    (pred / f"{CASES[1]}-t1n-inference.nii.gz").unlink()
    (pred / "notes.txt").write_text("x")
    (pred / ".hidden").write_text("x")
    code, out = run_cli(data, pred, capsys)
    assert code == 1
    lines = violation_lines(out)
    assert len(lines) == 3
    assert "INVALID: 3 violation(s)" in out


def test_missing_prediction_folder_is_a_violation(submission, capsys):
    data, pred = submission
    shutil.rmtree(pred)
    code, out = run_cli(data, pred, capsys)
    assert code == 1
    assert any("prediction folder does not exist" in line for line in violation_lines(out))


def test_missing_data_folder_is_an_error(tmp_path, capsys):
    code = main(["validate-submission", "-i", str(tmp_path / "nope"), "-p", str(tmp_path)])
    assert code == 1


def test_risky_but_accepted_findings_are_warnings(submission, capsys):
    data, pred = submission
    good = pred / f"{CASES[0]}-t1n-inference.nii.gz"
    volume = nib.load(good).get_fdata()
    good.unlink()
    save(pred / "mine-00000-000-t1n-inference.nii.gz", volume.astype(np.int16))  # short name, integer dtype
    code, out = run_cli(data, pred, capsys)
    assert code == 0
    warnings = [line for line in out.splitlines() if line.startswith("WARNING: ")]
    assert any(f"is not named {CASES[0]}-t1n-inference.nii.gz" in w for w in warnings)
    assert any("stored as int16" in w for w in warnings)
    assert any("do not have the BraTS geometry" in w for w in warnings)


def test_report_matches_each_case_to_its_file(submission):
    data, pred = submission
    report = validate_submission(data, pred)
    assert report.ok and report.n_cases == 2 and report.n_predictions == 2
    assert report.matched == {c: pred / f"{c}-t1n-inference.nii.gz" for c in CASES}
