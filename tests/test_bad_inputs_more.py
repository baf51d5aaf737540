"""The bad-input corpus, widened: every kind of ``inference/inputs.py`` plus the cases of issue 16, each beside a good
case, through one run. Each case gets its documented status, the good case is untouched, the outputs keep the input's
shape and header, and the submission checks accept every case that has an output."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from _inference_helpers import LPS_AFFINE, TINY_SHAPE, brain_volume, make_tiny_checkpoint, region_mask
from test_infer import _bad_corpus, _save
from wdm_inpaint.data.mask_values import binarise_mask
from wdm_inpaint.inference.inpainter import Inpainter
from wdm_inpaint.inference.runner import OUTPUT_SUFFIX, run_folder

MIN_KINDS = 25
"""The corpus must hold at least this many kinds of input (issue 16)."""


@pytest.fixture(scope="module")
def inpainter(tmp_path_factory: pytest.TempPathFactory) -> Inpainter:
    ckpt = make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    return Inpainter.from_checkpoint(ckpt, device="cpu", sampler="ddim", steps=1, seed=3)


def _more_corpus(root: Path) -> dict[str, str]:
    """Kinds beyond those of ``test_infer._bad_corpus`` (IDs from 30 on); returns case ID -> expected status."""
    t1n = brain_volume()
    mask = region_mask()
    voided = np.where(mask > 0, 0.0, t1n).astype(np.float32)
    expected: dict[str, str] = {}

    def case(n: int, status: str) -> tuple[str, Path]:
        cid = f"BraTS-GLI-{n:05d}-000"
        (root / cid).mkdir(parents=True)
        expected[cid] = status
        return cid, root / cid

    def both(folder: Path, cid: str, v: np.ndarray, m: np.ndarray, affine: np.ndarray = LPS_AFFINE) -> None:
        _save(folder / f"{cid}-t1n-voided.nii.gz", v, affine)
        _save(folder / f"{cid}-mask.nii.gz", m, affine)

    cid, f = case(30, "model")  # mask values of exactly 0.5 inside the region (>= 0.5 is inside)
    both(f, cid, voided, mask.astype(np.float32) * 0.5)
    cid, f = case(31, "fallback")  # mask entirely in the background
    corner = np.zeros(TINY_SHAPE, np.uint8)
    corner[:3, :3, :3] = 1
    both(f, cid, np.where(corner > 0, 0.0, t1n).astype(np.float32), corner)
    cid, f = case(32, "fallback")  # an all-zero voided scan
    both(f, cid, np.zeros(TINY_SHAPE, np.float32), mask)
    cid, f = case(33, "model")  # float64 values that float32 cannot hold exactly
    both(f, cid, (voided.astype(np.float64) + 0.1) * (voided > 0), mask.astype(np.float64))
    cid, f = case(34, "model")  # 4-D mask with a singleton 4th axis
    both(f, cid, voided, mask[..., None])
    cid, f = case(35, "model")  # both files 4-D with a singleton 4th axis
    both(f, cid, voided[..., None], mask[..., None])
    cid, f = case(36, "model")  # NaN in the mask (outside)
    m = mask.astype(np.float32)
    m[0, 0, 0] = np.nan
    both(f, cid, voided, m)
    cid, f = case(37, "model")  # soft mask (probabilities, some negative)
    both(f, cid, voided, mask.astype(np.float32) * 0.9 - 0.05)
    cid, f = case(38, "model")  # the mask's affine differs from the voided scan's
    _save(f / f"{cid}-t1n-voided.nii.gz", voided)
    _save(f / f"{cid}-mask.nii.gz", mask, LPS_AFFINE + np.diag([0, 0, 0.5, 0]))
    cid, f = case(39, "failed")  # truncated voided scan (header intact)
    _save(f / f"{cid}-t1n-voided.nii.gz", voided)
    raw = (f / f"{cid}-t1n-voided.nii.gz").read_bytes()
    (f / f"{cid}-t1n-voided.nii.gz").write_bytes(raw[: len(raw) // 2])
    _save(f / f"{cid}-mask.nii.gz", mask)
    cid, f = case(40, "model")  # uint8 voided scan
    both(f, cid, np.clip(voided / 4, 0, 255).astype(np.uint8), mask)
    cid, f = case(41, "model")  # int16 with a scale factor in the header
    img = nib.Nifti1Image(voided.astype(np.int16), LPS_AFFINE)
    img.header.set_slope_inter(0.5, 10.0)
    nib.save(img, f / f"{cid}-t1n-voided.nii.gz")
    _save(f / f"{cid}-mask.nii.gz", mask)
    cid, f = case(42, "model")  # NIfTI-2 files
    nib.save(nib.Nifti2Image(voided, LPS_AFFINE), f / f"{cid}-t1n-voided.nii.gz")
    nib.save(nib.Nifti2Image(mask, LPS_AFFINE), f / f"{cid}-mask.nii.gz")
    cid, f = case(43, "failed")  # empty case folder
    cid, f = case(44, "failed")  # the voided scan is a folder
    (f / f"{cid}-t1n-voided.nii.gz").mkdir()
    _save(f / f"{cid}-mask.nii.gz", mask)
    cid, f = case(45, "fallback")  # mask is a gzip of nothing
    _save(f / f"{cid}-t1n-voided.nii.gz", voided)
    (f / f"{cid}-mask.nii.gz").write_bytes(gzip.compress(b""))
    cid, f = case(46, "fallback")  # mask 2-D
    _save(f / f"{cid}-t1n-voided.nii.gz", voided)
    _save(f / f"{cid}-mask.nii.gz", mask[:, :, 0])
    return expected


def test_widened_corpus_gets_documented_behaviour(inpainter: Inpainter, tmp_path: Path) -> None:
    from wdm_inpaint.cli.main import main as cli_main

    data, out = tmp_path / "data", tmp_path / "out"
    expected = _bad_corpus(data) | _more_corpus(data)
    assert len(expected) >= MIN_KINDS + 6
    summary = run_folder(inpainter, data, out, progress=False)
    assert {r.case_id: r.status for r in summary.records} == expected
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{cid}{OUTPUT_SUFFIX}" for cid, status in expected.items() if status != "failed"
    )
    for cid, status in expected.items():
        if status == "failed":
            continue
        src = nib.load(data / cid / f"{cid}-t1n-voided.nii.gz")
        pred_img = nib.load(out / f"{cid}{OUTPUT_SUFFIX}")
        assert pred_img.shape == src.shape, cid
        np.testing.assert_array_equal(pred_img.affine, src.affine)
        assert pred_img.get_data_dtype() == np.float32
        pred = np.asarray(pred_img.dataobj).reshape(TINY_SHAPE)
        assert np.isfinite(pred).all()
    # exactly 0.5 is inside: the region is filled
    cid = "BraTS-GLI-00030-000"
    pred = np.asarray(nib.load(out / f"{cid}{OUTPUT_SUFFIX}").dataobj)
    assert np.abs(pred[region_mask() > 0]).max() > 0
    # the background and all-zero cases are passed through: nothing invented
    for cid in ("BraTS-GLI-00031-000", "BraTS-GLI-00032-000"):
        pred = np.asarray(nib.load(out / f"{cid}{OUTPUT_SUFFIX}").dataobj)
        src = nib.load(data / cid / f"{cid}-t1n-voided.nii.gz").get_fdata(dtype=np.float32)
        np.testing.assert_array_equal(pred, src)
        assert "background" in next(r.reason for r in summary.records if r.case_id == cid)
    # float64: known voxels equal the input rounded to float32 (documented), not the float64 values
    cid = "BraTS-GLI-00033-000"
    src64 = nib.load(data / cid / f"{cid}-t1n-voided.nii.gz").get_fdata(dtype=np.float64)
    pred = np.asarray(nib.load(out / f"{cid}{OUTPUT_SUFFIX}").dataobj)
    known = ~binarise_mask(region_mask())
    np.testing.assert_array_equal(pred[known], src64[known].astype(np.float32))
    assert not np.array_equal(pred[known].astype(np.float64), src64[known])
    # the submission checks accept every case that has an output (only the failed ones are reported)
    assert cli_main(["validate-submission", "-i", str(data), "-p", str(out)]) != 0  # failed cases have no output
    good = data.parent / "good"
    for cid, status in expected.items():
        if status != "failed":
            (good / cid).mkdir(parents=True)
            for file in (data / cid).glob(f"{cid}-*.nii.gz"):
                (good / cid / file.name).symlink_to(file)
    assert cli_main(["validate-submission", "-i", str(good), "-p", str(out)]) == 0
