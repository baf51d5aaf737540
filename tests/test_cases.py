"""Case discovery in the challenge layout."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from wdm_inpaint.data.cases import (
    ALL_KEYS,
    INFERENCE_KEYS,
    TRAINING_KEYS,
    CaseError,
    case_file_name,
    case_from_paths,
    discover_cases,
)


def _nifti(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), np.eye(4)), path)
    return path


def _case(root: Path, cid: str, keys: tuple[str, ...]) -> Path:
    for key in keys:
        _nifti(root / cid / case_file_name(cid, key))
    return root / cid


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    _case(root, "BraTS-GLI-00001-000", ALL_KEYS)
    _case(root, "BraTS-GLI-00000-001", ALL_KEYS)
    _case(root, "BraTS-MEN-00002-000", INFERENCE_KEYS)  # another cohort prefix
    _case(root, "BraTS-GLI-00003-000", ("t1n_voided",))  # mask missing
    _case(root, "patient7", ("t1n_voided", "mask"))  # non-challenge name, recognised by its files
    (root / ".hidden").mkdir()
    _nifti(root / ".hidden" / "x.nii.gz")
    (root / ".DS_Store").write_text("junk")
    (root / "README.txt").write_text("unrelated")
    (root / "notes").mkdir()
    (root / "notes" / "a.txt").write_text("unrelated folder")
    (root / "BraTS-GLI-00009-000.zip").write_bytes(b"PK")  # a file where a case folder is expected
    (root / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-seg.nii.gz").write_bytes(b"ignored extra file")
    return root


def test_discovers_cases_and_ignores_unrelated_entries(data_root: Path) -> None:
    scan = discover_cases(data_root)
    ids = [c.id for c in scan.cases]
    assert ids == [
        "BraTS-GLI-00000-001", "BraTS-GLI-00001-000", "BraTS-GLI-00003-000", "BraTS-MEN-00002-000", "patient7"
    ]
    assert len(scan.problems) == 1 and "BraTS-GLI-00009-000.zip" in scan.problems[0]
    full = {c.id: c for c in scan.cases}["BraTS-GLI-00001-000"]
    assert set(full.paths) == set(ALL_KEYS)
    assert full.paths["mask_healthy"].name == "BraTS-GLI-00001-000-mask-healthy.nii.gz"
    assert full.folder == data_root / "BraTS-GLI-00001-000"


def test_missing_file_is_a_per_case_error_naming_the_file(data_root: Path) -> None:
    scan = discover_cases(data_root)
    broken = {c.id: c for c in scan.cases}["BraTS-GLI-00003-000"]
    assert broken.missing == ["mask"]
    usable = [c.id for c in scan.usable()]
    assert usable == ["BraTS-GLI-00000-001", "BraTS-GLI-00001-000", "BraTS-MEN-00002-000", "patient7"]
    errors = scan.errors()
    assert len(errors) == 1
    assert "BraTS-GLI-00003-000-mask.nii.gz" in str(errors[0])
    with pytest.raises(CaseError, match="BraTS-GLI-00003-000-mask.nii.gz"):
        broken.path("mask")


def test_training_usable_cases(data_root: Path) -> None:
    scan = discover_cases(data_root, expected=INFERENCE_KEYS + TRAINING_KEYS)
    assert [c.id for c in scan.usable(TRAINING_KEYS)] == ["BraTS-GLI-00000-001", "BraTS-GLI-00001-000"]
    men = {c.id: c for c in scan.cases}["BraTS-MEN-00002-000"]
    assert set(men.missing) == set(TRAINING_KEYS)


def test_unreadable_file_is_reported_with_its_path(data_root: Path) -> None:
    cid = "BraTS-GLI-00001-000"
    bad = data_root / cid / case_file_name(cid, "mask")
    bad.write_bytes(b"not a nifti")
    case = {c.id: c for c in discover_cases(data_root).cases}[cid]
    case.require(INFERENCE_KEYS)  # existence only: passes
    with pytest.raises(CaseError, match=f"{cid}.*{bad.name}"):
        case.require(INFERENCE_KEYS, check_readable=True)
    with pytest.raises(CaseError, match=bad.name):
        case.read("mask")
    assert case.read("t1n_voided").data.shape == (3, 3, 3)


def test_root_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        discover_cases(tmp_path / "missing_dir")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CaseError, match="expected a folder"):
        discover_cases(tmp_path / "file")


def test_case_from_explicit_paths(tmp_path: Path) -> None:
    voided = _nifti(tmp_path / "in" / "BraTS-GLI-00042-000-t1n-voided.nii.gz")
    mask = _nifti(tmp_path / "elsewhere" / "m.nii.gz")
    case = case_from_paths({"t1n_voided": voided, "mask": mask})
    assert case.id == "BraTS-GLI-00042-000"
    assert case.path("mask") == mask
    assert case_from_paths({"t1n_voided": voided, "mask": mask}, case_id="x").id == "x"
    with pytest.raises(CaseError, match="gone.nii.gz"):
        case_from_paths({"t1n_voided": voided, "mask": tmp_path / "gone.nii.gz"})
    with pytest.raises(CaseError, match="unknown case file key"):
        case_from_paths({"seg": voided})
