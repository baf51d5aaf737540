"""``wdm-inpaint validate-submission``: check a prediction folder against the organisers' rules."""

from __future__ import annotations

import argparse

from wdm_inpaint.evaluation.validate import validate_submission

EXIT_OK = 0
"""Exit code when the folder passes."""

EXIT_INVALID = 1
"""Exit code when at least one rule is broken."""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``validate-submission`` command."""
    parser = subparsers.add_parser(
        "validate-submission",
        help="check a prediction folder against the challenge's submission rules",
        description=(
            "Check that PRED holds exactly one <ID>-t1n-inference.nii.gz per case folder of DATA and nothing "
            "else, with unique IDs matching the organisers' pattern, the input's shape, qform and affine, and "
            "finite values. Lists every violation; exits 1 if there is any."
        ),
    )
    parser.add_argument("-i", "--input", dest="data", required=True, metavar="DATA", help="folder of case folders")
    parser.add_argument("-p", "--predictions", dest="pred", required=True, metavar="PRED", help="prediction folder")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the checks, print the findings and return the exit code."""
    report = validate_submission(args.data, args.pred)
    for message in report.warnings:
        print(f"WARNING: {message}")
    for message in report.violations:
        print(f"INVALID: {message}")
    summary = f"{report.n_predictions} entries in {args.pred} for {report.n_cases} input cases"
    if report.ok:
        print(f"VALID: {summary}, {len(report.matched)} predictions checked")
        return EXIT_OK
    print(f"INVALID: {len(report.violations)} violation(s); {summary}")
    return EXIT_INVALID
