"""Entry point of the container image: the MLCube task interface and the plain ``/input`` → ``/output`` run.

Three ways in, one inference call:

* MLCube / MedPerf (BraTS 2023-2024): ``infer --data_path=… --output_path=… [--parameters_file=…]
  [--checkpoint_path=…]``. The mount points (``/mlcube_ioN``) are read from these arguments, never assumed.
  ``hotfix`` is the no-op command that MLCube's typer convention expects.
* Plain Docker (BraTS 2025+): no arguments at all reads :data:`DEFAULT_INPUT_DIR` and writes
  :data:`DEFAULT_OUTPUT_DIR`.
* Any of the above with options only (``--data_path X``) runs ``infer``.

Each run prepares the process (:mod:`~wdm_inpaint.container.environment`), validates ``parameters.yaml``
(:mod:`~wdm_inpaint.container.parameters`) and calls the Python API,
:meth:`Inpainter.infer_batch <wdm_inpaint.inference.inpainter.Inpainter.infer_batch>`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import MutableMapping, Sequence
from pathlib import Path

from wdm_inpaint.console import configure_logging
from wdm_inpaint.container.environment import ContainerError, prepare_process
from wdm_inpaint.container.parameters import PARAMETER_KEYS, ParametersError, load_parameters
from wdm_inpaint.inference.checkpoints import CheckpointError, find_checkpoint

logger = logging.getLogger(__name__)

PROG = "wdm-inpaint-container"
"""Program name shown in usage and error messages."""

DEFAULT_INPUT_DIR = Path("/input")
"""Input folder of the plain-Docker convention (one sub-folder per case)."""

DEFAULT_OUTPUT_DIR = Path("/output")
"""Output folder of the plain-Docker convention (one ``<ID>-t1n-inference.nii.gz`` per case)."""

LOG_DIR_ENV = "WDM_INPAINT_LOG_DIR"
"""Environment variable naming the folder for run logs and provenance (never inside the output folder)."""

PARAMETERS_ENV = "WDM_INPAINT_PARAMETERS"
"""Environment variable naming a parameters file for runs without ``--parameters_file`` (plain Docker, compose)."""

DEVICE_ENV = "WDM_INPAINT_DEVICE"
"""Environment variable forcing the device (``auto``, ``cpu``, ``cuda``, ``cuda:0``…); unset means ``auto``."""

DEFAULT_DEVICE = "auto"
"""Device when neither ``--device`` nor :data:`DEVICE_ENV` names one."""

DEFAULT_LOG_SUBDIR = "wdm-inpaint-logs"
"""Name of the log folder created under the temporary directory when no log folder is given."""

USAGE_ERROR = 2
"""Exit code of a run that could not start (bad parameters, folders or checkpoint)."""


def build_parser() -> argparse.ArgumentParser:
    """Parser of the entry point: ``infer`` (MLCube arguments; ``/input`` → ``/output`` by default) and ``hotfix``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inpaint every case of a folder with the bundled model (MLCube task interface).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    infer = sub.add_parser("infer", help="inpaint every case folder of --data_path into --output_path")
    infer.add_argument(
        "--data_path",
        "--data-path",
        dest="data_path",
        type=Path,
        default=DEFAULT_INPUT_DIR,
        help=f"folder with one sub-folder per case (default {DEFAULT_INPUT_DIR})",
    )
    infer.add_argument(
        "--output_path",
        "--output-path",
        dest="output_path",
        type=Path,
        default=DEFAULT_OUTPUT_DIR,
        help=f"folder for the <ID>-t1n-inference.nii.gz files (default {DEFAULT_OUTPUT_DIR})",
    )
    infer.add_argument(
        "--parameters_file",
        "--parameters-file",
        dest="parameters_file",
        type=Path,
        default=None,
        help=f"YAML file with any of: {', '.join(PARAMETER_KEYS)} (default ${PARAMETERS_ENV}, else none)",
    )
    infer.add_argument(
        "--checkpoint_path",
        "--checkpoint-path",
        dest="checkpoint_path",
        type=Path,
        default=None,
        help="checkpoint file, or a folder holding one (an empty folder keeps the bundled checkpoint)",
    )
    infer.add_argument(
        "--log_dir",
        "--log-dir",
        dest="log_dir",
        type=Path,
        default=None,
        help=f"folder for run logs and provenance (default ${LOG_DIR_ENV}, else a folder under the temp dir)",
    )
    infer.add_argument(
        "--device",
        default=None,
        help=f"auto, cpu, cuda or cuda:N (default ${DEVICE_ENV}, else auto: CUDA when a GPU is visible)",
    )
    sub.add_parser("hotfix", help="no-op kept for MLCube's typer convention (ignores any argument)")
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the entry point's arguments; no arguments, or options only, mean ``infer``."""
    argv = list(argv)
    if argv and argv[0] == "hotfix":
        return argparse.Namespace(command="hotfix")
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["infer", *argv]
    return build_parser().parse_args(argv)


def run_infer(args: argparse.Namespace, env: MutableMapping[str, str] | None = None) -> int:
    """Prepare the process and run :meth:`Inpainter.infer_batch`; returns the run's exit code.

    A case that needed the classical fallback still has its output, and the challenge runners treat a non-zero
    exit as a failed run, so only a case without any output makes the exit code non-zero.

    Raises:
        ContainerError: a folder is missing or not writable.
        ParametersError: an invalid parameters file.
        CheckpointError: a checkpoint path that names no usable file.
    """
    from wdm_inpaint.inference.inpainter import Inpainter

    env = os.environ if env is None else env
    data_path: Path = args.data_path
    output_path: Path = args.output_path
    prepare_process(data_path, output_path, env)
    parameters_file = args.parameters_file or (Path(env[PARAMETERS_ENV]) if env.get(PARAMETERS_ENV) else None)
    parameters = load_parameters(parameters_file)
    checkpoint = find_checkpoint(args.checkpoint_path)
    log_dir = args.log_dir or (Path(env[LOG_DIR_ENV]) if env.get(LOG_DIR_ENV) else None)
    if log_dir is None:
        log_dir = Path(env.get("TMPDIR") or tempfile.gettempdir()) / DEFAULT_LOG_SUBDIR
    device = args.device or env.get(DEVICE_ENV) or DEFAULT_DEVICE
    logger.info("inpainting %s into %s (checkpoint %s, device %s, %s)", data_path, output_path,
                checkpoint or "default", device, parameters.overrides() or "default parameters")
    inpainter = Inpainter.from_checkpoint(checkpoint, device=device, progress=True, **parameters.overrides())
    summary = inpainter.infer_batch(data_path, output_path, log_dir=log_dir)
    print(summary.line())
    return summary.exit_code(fallback_ok=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the container entry point; returns the process exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "hotfix":
        return 0
    configure_logging()
    try:
        return run_infer(args)
    except (ParametersError, ContainerError, CheckpointError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return USAGE_ERROR


__all__ = ["DEFAULT_INPUT_DIR", "DEFAULT_OUTPUT_DIR", "build_parser", "main", "parse_args", "run_infer"]
