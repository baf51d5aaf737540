"""``wdm-inpaint evaluate``: SSIM, PSNR and MSE inside ``mask-healthy`` with both challenge formulas."""

from __future__ import annotations

import argparse
import math

from wdm_inpaint.evaluation.evaluate import (
    FAILED,
    SCORED,
    SKIPPED,
    EvaluationReport,
    evaluate_folder,
    write_csv,
    write_json,
)

EXIT_OK = 0
"""Every case with ground truth was scored."""

EXIT_INCOMPLETE = 1
"""No case could be scored, or a case with ground truth had no usable prediction."""

TABLE_METRICS: tuple[tuple[str, str, str], ...] = (
    ("synapse", "ssim", "SSIM"),
    ("synapse", "psnr", "PSNR"),
    ("synapse", "mse", "MSE"),
    ("package", "ssim", "SSIM"),
    ("package", "psnr", "PSNR"),
    ("package", "mse", "MSE"),
)
"""Columns of the printed table: formula, metric, header."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``evaluate`` command."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score predictions inside mask-healthy with both challenge formulas",
        description=(
            "Score PRED/<ID>-t1n-inference.nii.gz against DATA/<ID>/<ID>-t1n.nii.gz inside <ID>-mask-healthy "
            "with the 2023/24 Synapse formula and the inpainting-package formula; print per-case scores and "
            "mean +- std. Cases without t1n / mask-healthy / t1n-voided are skipped."
        ),
    )
    parser.add_argument("-i", "--input", dest="data", required=True, metavar="DATA", help="folder of case folders")
    parser.add_argument("-p", "--predictions", dest="pred", required=True, metavar="PRED", help="prediction folder")
    parser.add_argument("--json", metavar="FILE", help="write per-case scores and the summary as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write per-case scores plus mean/std rows as CSV")
    parser.add_argument("--qc-dir", metavar="DIR", help="write one QC PNG per scored case into DIR")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)
    return parser


def _cell(value: float, metric: str) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.5f}" if metric == "mse" else (f"{value:.2f}" if metric == "psnr" else f"{value:.4f}")


def format_table(report: EvaluationReport) -> str:
    """Per-case rows, then mean and std rows, for both formulas."""
    width = max([len("case"), len("mean ± std")] + [len(r.case_id) for r in report.results])
    header = f"{'case':<{width}}  " + "  ".join(f"{f[:3]}-{h}".rjust(11) for f, _, h in TABLE_METRICS)
    lines = [f"{'':<{width}}  {'-- Synapse 2023/24 --':^37}  {'-- inpainting package --':^37}", header]
    for result in report.results:
        if result.metrics is None:
            lines.append(f"{result.case_id:<{width}}  {result.status}: {result.reason}")
            continue
        cells = [_cell(getattr(getattr(result.metrics, f), m), m) for f, m, _ in TABLE_METRICS]
        lines.append(f"{result.case_id:<{width}}  " + "  ".join(c.rjust(11) for c in cells))
    for stat in ("mean", "std"):
        cells = [_cell(report.summary[f][m][stat], m) for f, m, _ in TABLE_METRICS]
        lines.append(f"{stat:<{width}}  " + "  ".join(c.rjust(11) for c in cells))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write the requested files; return the exit code."""
    report = evaluate_folder(args.data, args.pred, qc_dir=args.qc_dir, progress=not args.no_progress)
    print(format_table(report))
    if args.json:
        write_json(report, args.json)
    if args.csv:
        write_csv(report, args.csv)
    scored, skipped, failed = (report.count(s) for s in (SCORED, SKIPPED, FAILED))
    print(f"{scored} scored, {skipped} skipped (no ground truth), {failed} failed")
    if scored == 0 or failed:
        return EXIT_INCOMPLETE
    return EXIT_OK
