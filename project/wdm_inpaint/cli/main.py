"""Entry point of the ``wdm-inpaint`` console script.

Each subcommand lives in its own module of this package and exposes ``add_parser(subparsers)``, which
registers the command and sets ``func`` (a callable taking the parsed arguments and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from wdm_inpaint.console import configure_logging
from wdm_inpaint.version import __version__

COMMAND_MODULES: tuple[str, ...] = (
    "infer",
    "evaluate",
    "validate_submission",
    "make_demo_data",
    "make_split",
    "make_masks",
    "train",
    "train_label_gan",
    "sample_labels",
    "convert_checkpoint",
)
"""Subcommand modules, in the order ``--help`` lists them."""


def _requested_command(argv: Sequence[str]) -> str | None:
    """The command module named by ``argv`` (first non-option word), if it is one of :data:`COMMAND_MODULES`."""
    for word in argv:
        if not word.startswith("-"):
            name = word.replace("-", "_")
            return name if name in COMMAND_MODULES else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand registered (or only the module ``only``, which keeps
    start-up fast: each command imports just what it needs)."""
    parser = argparse.ArgumentParser(
        prog="wdm-inpaint",
        description="Healthy-tissue inpainting of brain MRI with a 3D wavelet diffusion model.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES if only is None else (only,):
        module = importlib.import_module(f"wdm_inpaint.cli.{name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=_requested_command(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    configure_logging(args.verbose, args.quiet)
    from wdm_inpaint.inference.stop_signals import RunInterrupted

    try:
        return int(args.func(args) or 0)
    except RunInterrupted as exc:
        logging.getLogger("wdm_inpaint").error("%s: the run record says which cases are done; rerun to finish", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        logging.getLogger("wdm_inpaint").error("interrupted")
        return 130
    except (OSError, ValueError, RuntimeError) as exc:  # one line naming the path and the problem
        if args.verbose > 1:
            raise
        logging.getLogger("wdm_inpaint").error("%s", exc)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
