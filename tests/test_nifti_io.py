"""NIfTI reading/writing: clear errors naming the file, squeezing, float32 output with the reference geometry."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from wdm_inpaint.io.nifti import NiftiError, load_image, read_nifti, write_like

CHALLENGE_AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])


def _save(path: Path, data: np.ndarray, affine: np.ndarray = CHALLENGE_AFFINE, **header: float) -> Path:
    img = nib.Nifti1Image(data, affine)
    if "slope" in header:
        img.header.set_slope_inter(header["slope"], header.get("inter", 0.0))
    nib.save(img, path)
    return path


def _raw_header(path: Path) -> nib.Nifti1Header:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as fh:
        return nib.Nifti1Header.from_fileobj(fh)


def test_read_applies_scaling_and_keeps_affine(tmp_path: Path) -> None:
    raw = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    path = _save(tmp_path / "a.nii.gz", raw, slope=2.0, inter=1.0)
    vol = read_nifti(path)
    assert vol.data.shape == (2, 3, 4)
    assert vol.data.dtype == np.float64
    np.testing.assert_array_equal(vol.data, raw * 2.0 + 1.0)
    np.testing.assert_array_equal(vol.affine, CHALLENGE_AFFINE)
    assert vol.path == path


def test_singleton_fourth_axis_is_squeezed(tmp_path: Path) -> None:
    raw = np.random.default_rng(0).integers(0, 100, size=(5, 6, 7, 1)).astype(np.int16)
    img = nib.Nifti1Image(raw, CHALLENGE_AFFINE)
    img.set_qform(CHALLENGE_AFFINE, code=1)
    nib.save(img, tmp_path / "b.nii")
    vol = read_nifti(tmp_path / "b.nii")
    assert vol.data.shape == (5, 6, 7)
    assert vol.image.shape == (5, 6, 7)
    np.testing.assert_array_equal(vol.data, raw[..., 0])
    np.testing.assert_array_equal(vol.image.get_qform(), CHALLENGE_AFFINE)
    assert int(vol.image.header["qform_code"]) == 1


def test_non_singleton_fourth_axis_is_rejected(tmp_path: Path) -> None:
    path = _save(tmp_path / "c.nii.gz", np.zeros((4, 4, 4, 2), np.float32))
    with pytest.raises(NiftiError, match=r"c\.nii\.gz.*3-D"):
        read_nifti(path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.nii.gz"):
        read_nifti(tmp_path / "nope.nii.gz")


def test_truncated_gzip_is_reported(tmp_path: Path) -> None:
    path = _save(tmp_path / "t.nii.gz", np.random.default_rng(1).normal(size=(20, 20, 20)).astype(np.float32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(NiftiError, match=r"t\.nii\.gz.*(corrupt|truncated)"):
        read_nifti(path)


def test_garbage_with_gz_suffix_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "g.nii.gz"
    path.write_bytes(b"this is not gzip data at all" * 20)
    with pytest.raises(NiftiError, match=r"g\.nii\.gz"):
        read_nifti(path)


def test_not_nifti_is_reported(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(NiftiError, match="notes.txt"):
        read_nifti(text)
    mgh = tmp_path / "vol.mgz"
    nib.save(nib.MGHImage(np.zeros((3, 3, 3), np.float32), np.eye(4)), mgh)
    with pytest.raises(NiftiError, match=r"vol\.mgz.*not a NIfTI"):
        load_image(mgh)


def test_folder_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / "dir.nii.gz").mkdir()
    with pytest.raises(NiftiError, match="is a folder"):
        read_nifti(tmp_path / "dir.nii.gz")


def test_nonfinite_values_are_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = np.ones((3, 3, 3), np.float32)
    data[0, 0, 0] = np.nan
    data[1, 1, 1] = np.inf
    data[2, 2, 2] = -np.inf
    path = _save(tmp_path / "n.nii.gz", data)
    with pytest.raises(NiftiError, match=r"n\.nii\.gz: 3 non-finite.*1 NaN, 2 Inf"):
        read_nifti(path)
    with caplog.at_level(logging.WARNING, logger="wdm_inpaint.io.nifti"):
        vol = read_nifti(path, allow_nonfinite=True)
    assert np.isnan(vol.data[0, 0, 0])
    assert "non-finite" in caplog.text


def test_write_like_float32_identity_scaling_and_geometry(tmp_path: Path) -> None:
    # Reference: integer dtype with scaling and qform_code 0 / sform_code 2 (as a fresh nibabel image).
    ref_path = _save(tmp_path / "ref.nii.gz", np.zeros((6, 5, 4), np.int16), slope=3.0, inter=2.0)
    ref = read_nifti(ref_path).image
    values = np.random.default_rng(2).normal(scale=1000.0, size=(6, 5, 4))
    out = write_like(tmp_path / "out" / "pred.nii.gz", values, ref)
    assert out.is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["pred.nii.gz"]  # no temporary file left
    raw = _raw_header(out)
    ref_raw = _raw_header(ref_path)
    assert raw.get_data_dtype() == np.float32
    assert float(raw["scl_slope"]) == 1.0 and float(raw["scl_inter"]) == 0.0
    for key in ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y",
                "qoffset_z", "srow_x", "srow_y", "srow_z", "pixdim", "xyzt_units"):
        np.testing.assert_array_equal(raw[key], ref_raw[key], err_msg=key)
    back = nib.load(out)
    np.testing.assert_array_equal(back.get_fdata(dtype=np.float64), values.astype(np.float32))
    np.testing.assert_array_equal(back.header.get_qform(), CHALLENGE_AFFINE)
    np.testing.assert_array_equal(back.affine, ref.affine)


def test_write_like_rejects_shape_mismatch_and_nan(tmp_path: Path) -> None:
    ref = read_nifti(_save(tmp_path / "ref.nii.gz", np.zeros((4, 4, 4), np.float32))).image
    with pytest.raises(NiftiError, match=r"bad\.nii\.gz.*shape"):
        write_like(tmp_path / "bad.nii.gz", np.zeros((4, 4, 5)), ref)
    with pytest.raises(NiftiError, match="non-finite"):
        write_like(tmp_path / "nan.nii.gz", np.full((4, 4, 4), np.nan), ref)
    assert not (tmp_path / "bad.nii.gz").exists() and not (tmp_path / "nan.nii.gz").exists()
