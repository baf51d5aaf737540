"""Score a folder of predictions against the ground truth of a data folder, with both challenge formulas.

For each case folder of the data folder that holds ``t1n``, ``mask-healthy`` and ``t1n-voided``, the prediction
``<case>-t1n-inference.nii.gz`` (or another file the organisers' pattern maps to the same ID) is read and scored
with :func:`~wdm_inpaint.evaluation.metrics.case_metrics`. Cases without that ground truth are skipped with the
reason; cases with ground truth but no usable prediction are reported as failed. The summary gives mean, standard
deviation (``ddof=1``, as the organisers' ``pandas.describe``) and count per metric, ignoring NaN like pandas.

Files are read with ``get_fdata`` (float64). For the package formula every volume is first cast to its header
dtype and back, as the package's reader does, so an integer-typed prediction is scored as the package scores it.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from wdm_inpaint.data.cases import Case, discover_cases, prediction_file_name
from wdm_inpaint.evaluation.metrics import CaseMetrics, PackageMetrics, SynapseMetrics, package_metrics, synapse_metrics
from wdm_inpaint.evaluation.qc import QCVolumes, write_qc_png
from wdm_inpaint.evaluation.validate import case_number, prediction_id
from wdm_inpaint.io.atomic import atomic_write_text
from wdm_inpaint.io.nifti import NiftiError, Volume, read_nifti

logger = logging.getLogger(__name__)

GROUND_TRUTH_KEYS: tuple[str, ...] = ("t1n", "mask_healthy", "t1n_voided")
"""Case files evaluation needs besides the prediction."""

FORMULAS: dict[str, str] = {
    "synapse": "2023/24 Synapse validation scorer: reference t1n with mask-healthy zeroed, 3-D SSIM, "
    "PSNR = 10 log10(1/MSE)",
    "package": "inpainting package: reference t1n-voided, slice-wise 2-D SSIM, PSNR with the target's range",
}
"""Short description of each formula, written into the JSON report."""

SCORED, SKIPPED, FAILED = "scored", "skipped", "failed"
"""Case status values: scored; skipped for lack of ground truth; failed (ground truth but no usable prediction)."""

QC_SUFFIX = "-qc.png"
"""QC image name: ``<case><QC_SUFFIX>``."""


@dataclass
class CaseResult:
    """Evaluation outcome of one case.

    Attributes:
        case_id: the case folder name.
        status: :data:`SCORED`, :data:`SKIPPED` or :data:`FAILED`.
        metrics: both formulas' scores when scored.
        reason: why the case was skipped or failed.
        prediction: the prediction file used.
    """

    case_id: str
    status: str
    metrics: CaseMetrics | None = None
    reason: str = ""
    prediction: Path | None = None


@dataclass
class EvaluationReport:
    """All case results and the summary.

    Attributes:
        results: one per case, sorted by case ID.
        summary: formula -> metric -> ``{"mean", "std", "n"}``.
    """

    results: list[CaseResult] = field(default_factory=list)
    summary: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def count(self, status: str) -> int:
        """Number of cases with ``status``."""
        return sum(r.status == status for r in self.results)


def as_header_dtype(volume: Volume) -> np.ndarray:
    """The volume's data cast to its on-disk dtype and back to float64 (what the package's reader sees)."""
    with np.errstate(invalid="ignore", over="ignore"):
        return volume.data.astype(volume.image.get_data_dtype()).astype(np.float64)


def find_prediction(pred_dir: Path, case: Case) -> Path | None:
    """The prediction file of ``case``: ``<case>-t1n-inference.nii.gz``, else the one file with the same ID."""
    exact = pred_dir / prediction_file_name(case.id)
    if exact.is_file():
        return exact
    number = case_number(case.id)
    if number is None:
        return None
    candidates = [p for p in sorted(pred_dir.iterdir()) if p.is_file() and prediction_id(p.name) == number]
    return candidates[0] if len(candidates) == 1 else None


def _score_case(case: Case, pred_path: Path, qc_dir: Path | None) -> CaseMetrics:
    """Read one case and its prediction; score it; optionally write the QC image."""
    prediction = read_nifti(pred_path, allow_nonfinite=True)
    truth = case.read("t1n")
    healthy = case.read("mask_healthy")
    voided = case.read("t1n_voided")
    for name, volume in (("t1n", truth), ("mask-healthy", healthy), ("t1n-voided", voided)):
        if volume.data.shape != prediction.data.shape:
            raise ValueError(
                f"case {case.id}: prediction {pred_path} has shape {prediction.data.shape}, {name} {volume.data.shape}"
            )
    if not np.all(np.isfinite(prediction.data)):
        logger.warning("case %s: %s holds NaN/Inf values; scores will be NaN", case.id, pred_path)
    metrics = CaseMetrics(
        synapse=synapse_metrics(prediction.data, truth.data, healthy.data),
        package=package_metrics(
            as_header_dtype(prediction), as_header_dtype(truth), as_header_dtype(voided), as_header_dtype(healthy)
        ),
    )
    if qc_dir is not None:
        mask = case.read("mask").data if "mask" in case.paths else healthy.data
        s = metrics.synapse
        write_qc_png(
            qc_dir / f"{case.id}{QC_SUFFIX}",
            QCVolumes(voided.data, mask, prediction.data, voided.affine, truth.data, healthy.data),
            f"{case.id}   SSIM {s.ssim:.4f}   PSNR {s.psnr:.2f} dB   MSE {s.mse:.5f}",
        )
    return metrics


def summarise(results: list[CaseResult]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean, sample std and count of every metric over the scored cases (NaN values left out, like pandas)."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    scored = [r.metrics for r in results if r.metrics is not None]
    for formula, cls in (("synapse", SynapseMetrics), ("package", PackageMetrics)):
        summary[formula] = {}
        for metric in (f.name for f in dataclasses.fields(cls)):
            values = np.array([getattr(getattr(m, formula), metric) for m in scored], dtype=np.float64)
            values = values[~np.isnan(values)]
            with np.errstate(invalid="ignore"):
                mean = float(values.mean()) if values.size else math.nan
                std = float(values.std(ddof=1)) if values.size > 1 else math.nan
            summary[formula][metric] = {"mean": mean, "std": std, "n": int(values.size)}
    return summary


def evaluate_folder(
    data_dir: str | os.PathLike[str],
    pred_dir: str | os.PathLike[str],
    qc_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> EvaluationReport:
    """Score every case of ``data_dir`` that has ground truth against its prediction in ``pred_dir``.

    Args:
        data_dir: folder of case folders with ``t1n``, ``mask-healthy`` and ``t1n-voided``.
        pred_dir: folder of ``<case>-t1n-inference.nii.gz`` files.
        qc_dir: if given, one ``<case>-qc.png`` per scored case is written there.
        progress: show a progress bar.

    Returns:
        The :class:`EvaluationReport`.

    Raises:
        FileNotFoundError: if a folder does not exist.
        ValueError: if a path is not a folder.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        if not pred_dir.exists():
            raise FileNotFoundError(f"{pred_dir}: prediction folder not found")
        raise ValueError(f"{pred_dir}: the prediction path must be a folder")
    scan = discover_cases(data_dir, expected=GROUND_TRUTH_KEYS)
    qc_path = None if qc_dir is None else Path(qc_dir)
    report = EvaluationReport()
    for case in tqdm(scan.cases, desc="evaluate", unit="case", disable=not progress):
        missing = [k for k in GROUND_TRUTH_KEYS if k not in case.paths]
        if missing:
            names = ", ".join(k.replace("_", "-") for k in missing)
            reason = f"no ground truth: missing {names} in {case.folder}"
            logger.warning("case %s skipped: %s", case.id, reason)
            report.results.append(CaseResult(case.id, SKIPPED, reason=reason))
            continue
        pred_path = find_prediction(pred_dir, case)
        if pred_path is None:
            reason = f"no prediction {pred_dir / prediction_file_name(case.id)}"
            logger.error("case %s failed: %s", case.id, reason)
            report.results.append(CaseResult(case.id, FAILED, reason=reason))
            continue
        try:
            metrics = _score_case(case, pred_path, qc_path)
        except (NiftiError, ValueError, OSError) as exc:
            logger.error("case %s failed: %s", case.id, exc)
            report.results.append(CaseResult(case.id, FAILED, reason=str(exc), prediction=pred_path))
            continue
        report.results.append(CaseResult(case.id, SCORED, metrics=metrics, prediction=pred_path))
    report.summary = summarise(report.results)
    return report


def _json_number(value: float) -> float | str:
    """Finite floats as numbers; ``inf``, ``-inf`` and ``nan`` as strings (strict JSON has no such numbers)."""
    return value if math.isfinite(value) else str(value)


def report_to_dict(report: EvaluationReport) -> dict:
    """JSON-ready view of a report (non-finite numbers as the strings ``"inf"``, ``"-inf"``, ``"nan"``)."""
    cases = []
    for result in report.results:
        entry: dict = {"case_id": result.case_id, "status": result.status}
        if result.prediction is not None:
            entry["prediction"] = result.prediction.name
        if result.reason:
            entry["reason"] = result.reason
        if result.metrics is not None:
            for formula in ("synapse", "package"):
                values = dataclasses.asdict(getattr(result.metrics, formula))
                entry[formula] = {k: _json_number(v) for k, v in values.items()}
        cases.append(entry)
    summary = {
        formula: {metric: {k: _json_number(v) for k, v in stats.items()} for metric, stats in metrics.items()}
        for formula, metrics in report.summary.items()
    }
    return {
        "formulas": FORMULAS,
        "counts": {status: report.count(status) for status in (SCORED, SKIPPED, FAILED)},
        "summary": summary,
        "cases": cases,
    }


def write_json(report: EvaluationReport, path: str | os.PathLike[str]) -> None:
    """Write the report as strict JSON, atomically."""
    atomic_write_text(path, json.dumps(report_to_dict(report), indent=2, allow_nan=False) + "\n")


def metric_columns() -> list[str]:
    """CSV metric columns: ``synapse_ssim``, ..., ``package_mae``."""
    return [
        f"{formula}_{f.name}"
        for formula, cls in (("synapse", SynapseMetrics), ("package", PackageMetrics))
        for f in dataclasses.fields(cls)
    ]


def write_csv(report: EvaluationReport, path: str | os.PathLike[str]) -> None:
    """Write one row per case plus ``mean`` and ``std`` rows, atomically (non-finite values as ``inf``/``nan``)."""
    columns = metric_columns()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case_id", "status", "reason", *columns])
    for result in report.results:
        values = result.metrics.as_flat_dict() if result.metrics is not None else {}
        writer.writerow([result.case_id, result.status, result.reason, *(_csv_value(values.get(c)) for c in columns)])
    for stat in ("mean", "std"):
        row = []
        for column in columns:
            formula, metric = column.split("_", 1)
            row.append(_csv_value(report.summary[formula][metric][stat]))
        writer.writerow([stat, "", "", *row])
    atomic_write_text(path, buffer.getvalue())


def _csv_value(value: float | None) -> str:
    """CSV cell: empty for missing, ``repr`` for floats (``inf``/``nan`` spelled out)."""
    return "" if value is None else repr(float(value))


__all__ = [
    "FAILED",
    "FORMULAS",
    "GROUND_TRUTH_KEYS",
    "SCORED",
    "SKIPPED",
    "CaseResult",
    "EvaluationReport",
    "as_header_dtype",
    "evaluate_folder",
    "find_prediction",
    "metric_columns",
    "report_to_dict",
    "summarise",
    "write_csv",
    "write_json",
]
