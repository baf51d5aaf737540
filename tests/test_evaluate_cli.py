"""``wdm-inpaint evaluate``: per-case scores, summary, JSON/CSV/QC outputs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from _evaluation_helpers import SHAPE, save, write_case, write_prediction

from wdm_inpaint.cli.main import main
from wdm_inpaint.evaluation.evaluate import as_header_dtype, evaluate_folder
from wdm_inpaint.evaluation.metrics import case_metrics
from wdm_inpaint.io.nifti import read_nifti

PERFECT, ZERO, NOISY, NO_TRUTH = (
    "BraTS-GLI-00000-000",
    "BraTS-GLI-00001-000",
    "BraTS-GLI-00002-000",
    "BraTS-GLI-00003-000",
)


@pytest.fixture()
def folders(tmp_path: Path) -> tuple[Path, Path, dict[str, dict[str, np.ndarray]]]:
    """Four cases: an exact copy, a zero fill, a noisy fill, and one without ground truth."""
    data, pred = tmp_path / "data", tmp_path / "pred"
    arrays = {}
    for seed, case_id in enumerate((PERFECT, ZERO, NOISY)):
        arrays[case_id] = write_case(data, case_id, seed)
    write_case(data, NO_TRUTH, 3, ground_truth=False)
    write_prediction(pred, PERFECT, arrays[PERFECT]["t1n"])
    write_prediction(pred, ZERO, arrays[ZERO]["t1n-voided"])
    rng = np.random.default_rng(11)
    noisy = arrays[NOISY]
    write_prediction(pred, NOISY, noisy["t1n-voided"] + noisy["mask"] * (noisy["t1n"] + rng.normal(0, 60, SHAPE)))
    write_prediction(pred, NO_TRUTH, np.zeros(SHAPE))
    return data, pred, arrays


def run_evaluate(data: Path, pred: Path, *extra: str) -> int:
    return main(["evaluate", "-i", str(data), "-p", str(pred), "--no-progress", *extra])


def test_json_csv_and_qc_outputs(folders, tmp_path, capsys):
    data, pred, arrays = folders
    out_json, out_csv, qc_dir = tmp_path / "out" / "scores.json", tmp_path / "out" / "scores.csv", tmp_path / "qc"
    code = run_evaluate(data, pred, "--json", str(out_json), "--csv", str(out_csv), "--qc-dir", str(qc_dir))
    printed = capsys.readouterr().out
    assert code == 0
    assert "3 scored, 1 skipped (no ground truth), 0 failed" in printed
    assert "mean" in printed and PERFECT in printed

    report = json.loads(out_json.read_text())
    assert report["counts"] == {"scored": 3, "skipped": 1, "failed": 0}
    cases = {c["case_id"]: c for c in report["cases"]}
    assert cases[NO_TRUTH]["status"] == "skipped" and "no ground truth" in cases[NO_TRUTH]["reason"]
    perfect = cases[PERFECT]
    for formula in ("synapse", "package"):
        assert perfect[formula]["ssim"] == pytest.approx(1.0) and perfect[formula]["mse"] == 0.0
        assert perfect[formula]["psnr"] == "inf"  # strict JSON: non-finite values are strings
    # the scores in the report are those of the metric functions on the same arrays
    zero = arrays[ZERO]
    expected = case_metrics(zero["t1n-voided"], zero["t1n"], zero["t1n-voided"], zero["mask-healthy"])
    assert cases[ZERO]["synapse"]["ssim"] == pytest.approx(expected.synapse.ssim, rel=1e-9)
    assert cases[ZERO]["package"]["mse"] == pytest.approx(expected.package.mse, rel=1e-9)
    # summary: mean and sample std over the scored cases
    ssims = [cases[c]["synapse"]["ssim"] for c in (PERFECT, ZERO, NOISY)]
    summary = report["summary"]["synapse"]["ssim"]
    assert summary["n"] == 3
    assert summary["mean"] == pytest.approx(np.mean(ssims), rel=1e-12)
    assert summary["std"] == pytest.approx(np.std(ssims, ddof=1), rel=1e-12)
    assert report["summary"]["synapse"]["psnr"]["mean"] == "inf"  # the exact copy makes the mean infinite

    with out_csv.open(newline="") as fh:
        rows = {row["case_id"]: row for row in csv.DictReader(fh)}
    assert set(rows) == {PERFECT, ZERO, NOISY, NO_TRUTH, "mean", "std"}
    assert float(rows[NOISY]["package_ssim"]) == pytest.approx(cases[NOISY]["package"]["ssim"], rel=1e-12)
    assert rows[PERFECT]["synapse_psnr"] == "inf"
    assert rows[NO_TRUTH]["status"] == "skipped" and rows[NO_TRUTH]["synapse_ssim"] == ""
    assert float(rows["mean"]["synapse_ssim"]) == pytest.approx(summary["mean"], rel=1e-12)

    pngs = sorted(p.name for p in qc_dir.iterdir())
    assert pngs == [f"{c}-qc.png" for c in (PERFECT, ZERO, NOISY)]  # no temporary files left behind
    image = matplotlib.image.imread(qc_dir / pngs[0])
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > image.shape[0]
    assert image[..., :3].std() > 0.05  # panels were drawn, not a blank canvas


def test_case_with_ground_truth_but_no_prediction_fails(folders, capsys):
    data, pred, _ = folders
    (pred / f"{NOISY}-t1n-inference.nii.gz").unlink()
    assert run_evaluate(data, pred) == 1
    printed = capsys.readouterr().out
    assert f"{NOISY}" in printed and "failed: no prediction" in printed
    assert "2 scored, 1 skipped (no ground truth), 1 failed" in printed


def test_prediction_with_the_wrong_shape_fails_with_the_file_named(folders):
    data, pred, _ = folders
    bad = write_prediction(pred, ZERO, np.zeros((16, 16, 11)))
    report = evaluate_folder(data, pred, progress=False)
    result = next(r for r in report.results if r.case_id == ZERO)
    assert result.status == "failed" and str(bad) in result.reason and "shape" in result.reason


def test_no_scorable_case_exits_non_zero(tmp_path, capsys):
    data, pred = tmp_path / "data", tmp_path / "pred"
    write_case(data, NO_TRUTH, 0, ground_truth=False)
    write_prediction(pred, NO_TRUTH, np.zeros(SHAPE))
    assert run_evaluate(data, pred) == 1
    assert "0 scored, 1 skipped" in capsys.readouterr().out


def test_missing_prediction_folder_is_an_error(folders, tmp_path):
    data, _, _ = folders
    assert run_evaluate(data, tmp_path / "absent") == 1


def test_package_formula_sees_the_header_dtype(tmp_path):
    path = save(tmp_path / "int.nii.gz", np.full(SHAPE, 7, dtype=np.int16))
    volume = read_nifti(path)
    volume.data = volume.data + 0.75  # a value the int16 header cannot hold
    assert np.all(as_header_dtype(volume) == 7.0)
    float_path = save(tmp_path / "float.nii.gz", np.full(SHAPE, 7.25, dtype=np.float32))
    assert np.all(as_header_dtype(read_nifti(float_path)) == 7.25)


def test_prediction_found_by_the_organisers_pattern(folders):
    data, pred, _ = folders
    (pred / f"{ZERO}-t1n-inference.nii.gz").rename(pred / "other-00001-000-t1n-inference.nii.gz")
    report = evaluate_folder(data, pred, progress=False)
    result = next(r for r in report.results if r.case_id == ZERO)
    assert result.status == "scored" and result.prediction.name == "other-00001-000-t1n-inference.nii.gz"
    assert not math.isnan(result.metrics.synapse.ssim)
