"""Entry point of the container image: the MLCube task interface and the plain ``/input`` → ``/output`` run.

Three ways in, one inference call:

* MLCube / MedPerf (BraTS 2023-2024): ``infer --data_path=… --output_path=… [--parameters_file=…]
  [--checkpoint_path=…]``. The mount points (``/mlcube_ioN``) are read from these arguments, never assumed.
  ``hotfix`` is the no-op command that MLCube's typer convention expects.
* Plain Docker (BraTS 2025+): no arguments at all reads :data:`DEFAULT_INPUT_DIR` and writes
  :data:`DEFAULT_OUTPUT_DIR`.
* Any of the above with options only (``--data_path X``) runs ``infer``.

Each run prepares writable HOME/TMPDIR/cache folders, validates ``parameters.yaml``, and calls
``wdm-inpaint infer`` in-process. Started as root with an output folder that belongs to another user, the process
first switches to that user, so the host user owns (and can delete) every file written and nothing needs chown.
"""

from __future__ import annotations

import argparse
import logging
import os
import pwd
import sys
import tempfile
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

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

DEFAULT_LOG_SUBDIR = "wdm-inpaint-logs"
"""Name of the log folder created under the temporary directory when no log folder is given."""

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
"""File suffixes recognised as checkpoints inside a ``--checkpoint_path`` folder."""

PARAMETER_KEYS = ("sampler", "steps", "samples", "seed")
"""Keys of ``parameters.yaml`` that tune the inference run."""

IGNORED_PARAMETER_KEYS = ("task",)
"""Keys the BraTS MLCube parameter files carry for other tools (``task: inpainting``); accepted and ignored."""

WRITABLE_DIR_VARIABLES = ("TMPDIR", "HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR", "TORCH_HOME")
"""Environment variables naming folders that libraries write to; each must be writable by the running user.
``TMPDIR`` comes first because the replacements for the others are created under it."""

USER_NAME_VARIABLES = ("LOGNAME", "USER", "LNAME", "USERNAME")
"""Variables ``getpass.getuser()`` reads, in its order, before it looks the uid up in ``/etc/passwd``."""


class ParametersError(ValueError):
    """``parameters.yaml`` is missing, unreadable or holds an invalid value."""


class ContainerError(RuntimeError):
    """The run cannot start: a folder is missing or not writable, or the checkpoint cannot be chosen."""


@dataclass(frozen=True)
class InferenceParameters:
    """The knobs the challenge runner can set through ``parameters.yaml``; ``None`` keeps the CLI default.

    Attributes:
        sampler: sampler name, as ``wdm-inpaint infer --sampler`` accepts it.
        steps: number of sampling steps (≥ 1).
        samples: number of samples averaged per case (≥ 1).
        seed: random seed (≥ 0).
    """

    sampler: str | None = None
    steps: int | None = None
    samples: int | None = None
    seed: int | None = None

    def to_cli_args(self) -> list[str]:
        """The matching ``wdm-inpaint infer`` options (only the values that are set)."""
        args: list[str] = []
        for key in PARAMETER_KEYS:
            value = getattr(self, key)
            if value is not None:
                args += [f"--{key}", str(value)]
        return args


def _positive_or_zero_int(value: Any, key: str, source: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParametersError(f"{source}: '{key}' must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ParametersError(f"{source}: '{key}' must be at least {minimum}, got {value}")
    return value


def parse_parameters(data: Any, source: str = "parameters.yaml") -> InferenceParameters:
    """Validate the content of a parameters file.

    Args:
        data: the parsed YAML document (``None`` for an empty file).
        source: file name used in error messages.

    Returns:
        The validated parameters.

    Raises:
        ParametersError: if the document is not a mapping, has an unknown key, or a value of the wrong type or range.
    """
    if data is None:
        return InferenceParameters()
    if not isinstance(data, Mapping):
        raise ParametersError(f"{source}: expected a mapping of {', '.join(PARAMETER_KEYS)}, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in PARAMETER_KEYS and k not in IGNORED_PARAMETER_KEYS)
    if unknown:
        raise ParametersError(
            f"{source}: unknown key(s) {', '.join(unknown)}; allowed keys are {', '.join(PARAMETER_KEYS)}"
        )
    values: dict[str, Any] = {}
    sampler = data.get("sampler")
    if sampler is not None:
        from wdm_inpaint.inference.options import SAMPLER_CHOICES

        if sampler not in SAMPLER_CHOICES:
            raise ParametersError(f"{source}: 'sampler' must be one of {', '.join(SAMPLER_CHOICES)}, got {sampler!r}")
        values["sampler"] = sampler
    for key, minimum in (("steps", 1), ("samples", 1), ("seed", 0)):
        if data.get(key) is not None:
            values[key] = _positive_or_zero_int(data[key], key, source, minimum)
    return InferenceParameters(**values)


def load_parameters(path: str | os.PathLike[str] | None) -> InferenceParameters:
    """Read and validate a ``parameters.yaml``; ``None`` gives the defaults.

    Raises:
        ParametersError: if the file does not exist, is not valid YAML, or holds invalid values.
    """
    if path is None:
        return InferenceParameters()
    path = Path(path)
    if not path.is_file():
        raise ParametersError(f"parameters file {path} does not exist (or is not a file)")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ParametersError(f"parameters file {path} cannot be read as YAML: {exc}") from exc
    return parse_parameters(data, source=str(path))


def resolve_checkpoint(path: str | os.PathLike[str] | None) -> Path | None:
    """Choose the checkpoint named by ``--checkpoint_path``.

    Args:
        path: ``None``, a checkpoint file, or a folder (MLCube's ``additional_files``) holding at most one file
            with a suffix of :data:`CHECKPOINT_SUFFIXES`.

    Returns:
        The checkpoint file, or ``None`` to use the image's bundled checkpoint (no path, or a folder without one).

    Raises:
        ContainerError: if the path does not exist or the folder holds several checkpoints.
    """
    if path is None:
        return None
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise ContainerError(f"checkpoint path {path} does not exist")
    found = sorted(
        p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix in CHECKPOINT_SUFFIXES
    )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise ContainerError(f"checkpoint folder {path} holds several checkpoints ({names}); keep exactly one")
    return found[0] if found else None


def prepare_writable_dirs(env: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Make every folder of :data:`WRITABLE_DIR_VARIABLES` exist and be writable by the current user.

    A folder that cannot be created or written (an arbitrary ``--user``, a read-only root file system) is replaced
    by a fresh temporary folder and the variable is updated.

    Args:
        env: the environment to read and update (default ``os.environ``).

    Returns:
        The variables that were replaced, with their new values.
    """
    env = os.environ if env is None else env
    replaced: dict[str, str] = {}
    for name in WRITABLE_DIR_VARIABLES:
        value = env.get(name)
        if not value:
            continue
        folder = Path(value)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            usable = os.access(folder, os.W_OK | os.X_OK)
        except OSError:
            usable = False
        if usable:
            continue
        if name == "TMPDIR":
            env.pop(name)
            tempfile.tempdir = None
            replaced[name] = tempfile.gettempdir()
        else:
            replaced[name] = tempfile.mkdtemp(prefix=f"wdm-{name.lower()}-")
        env[name] = replaced[name]
        logger.info("%s=%s is not writable; using %s", name, value, replaced[name])
    tempfile.tempdir = None
    return replaced


def ensure_user_name(env: MutableMapping[str, str] | None = None) -> str:
    """Give the current user a name through ``LOGNAME``/``USER`` when the environment has none.

    ``getpass.getuser()`` (called by libraries at import time) fails for a uid without an ``/etc/passwd`` entry, as
    with ``docker run --user "$(id -u):$(id -g)"``; it reads these variables first.

    Returns:
        The user name now in the environment.
    """
    env = os.environ if env is None else env
    for name in USER_NAME_VARIABLES:
        if env.get(name):
            return env[name]
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = f"uid{os.getuid()}"
    env["LOGNAME"] = env["USER"] = user
    return user


def drop_privileges_to_owner(folder: str | os.PathLike[str]) -> int | None:
    """When running as root, switch this process to the owner of ``folder`` unless that owner is root.

    Files written afterwards belong to the owner of the output folder (the host user), so they can be managed
    without root.

    Returns:
        The new user id, or ``None`` when nothing changed (not root, or the folder belongs to root).
    """
    if os.geteuid() != 0:
        return None
    info = Path(folder).stat()
    if info.st_uid == 0:
        return None
    os.setgroups([])
    os.setgid(info.st_gid)
    os.setuid(info.st_uid)
    logger.info("running as uid %d, gid %d (owner of %s)", info.st_uid, info.st_gid, folder)
    return info.st_uid


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


def infer_argv(
    data_path: Path,
    output_path: Path,
    log_dir: Path,
    parameters: InferenceParameters,
    checkpoint: Path | None = None,
    device: str | None = None,
) -> list[str]:
    """Arguments of ``wdm-inpaint`` for one inference run.

    ``--fallback-ok``: a case that needed the classical fallback still has its output, and the challenge runners
    treat a non-zero exit as a failed run, so only a case without any output makes the exit code non-zero.
    """
    argv = ["infer", "-i", str(data_path), "-o", str(output_path), "--log-dir", str(log_dir), "--fallback-ok"]
    if checkpoint is not None:
        argv += ["-m", str(checkpoint)]
    argv += parameters.to_cli_args()
    if device:
        argv += ["--device", device]
    return argv


def _check_folders(data_path: Path, output_path: Path) -> None:
    if not data_path.is_dir():
        raise ContainerError(f"input folder {data_path} does not exist or is not a folder (mount the cases there)")
    try:
        output_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ContainerError(f"output folder {output_path} cannot be created: {exc}") from exc


def _check_writable(output_path: Path) -> None:
    if not os.access(output_path, os.W_OK | os.X_OK):
        raise ContainerError(
            f"output folder {output_path} is not writable by uid {os.getuid()} gid {os.getgid()}; run the "
            'container with --user "$(id -u):$(id -g)" (the owner of the folder) or make the folder writable'
        )


def run_infer(args: argparse.Namespace, env: MutableMapping[str, str] | None = None) -> int:
    """Prepare the process and run ``wdm-inpaint infer`` in-process; returns its exit code."""
    from wdm_inpaint.cli.main import main as cli_main

    env = os.environ if env is None else env
    data_path: Path = args.data_path
    output_path: Path = args.output_path
    _check_folders(data_path, output_path)
    drop_privileges_to_owner(output_path)
    _check_writable(output_path)
    ensure_user_name(env)
    prepare_writable_dirs(env)
    parameters_file = args.parameters_file or (Path(env[PARAMETERS_ENV]) if env.get(PARAMETERS_ENV) else None)
    parameters = load_parameters(parameters_file)
    checkpoint = resolve_checkpoint(args.checkpoint_path)
    if args.checkpoint_path is not None and checkpoint is None:
        logger.info("no checkpoint in %s; using the bundled checkpoint", args.checkpoint_path)
    log_dir = args.log_dir or (Path(env[LOG_DIR_ENV]) if env.get(LOG_DIR_ENV) else None)
    if log_dir is None:
        log_dir = Path(env.get("TMPDIR") or tempfile.gettempdir()) / DEFAULT_LOG_SUBDIR
    device = args.device or env.get(DEVICE_ENV) or None
    argv = infer_argv(data_path, output_path, log_dir, parameters, checkpoint, device)
    logger.info("running: wdm-inpaint %s", " ".join(argv))
    return cli_main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the container entry point; returns the process exit code."""
    from wdm_inpaint.cli.main import configure_logging

    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "hotfix":
        return 0
    configure_logging()
    try:
        return run_infer(args)
    except (ParametersError, ContainerError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


__all__ = [
    "DEFAULT_INPUT_DIR",
    "DEFAULT_OUTPUT_DIR",
    "ContainerError",
    "InferenceParameters",
    "ParametersError",
    "build_parser",
    "drop_privileges_to_owner",
    "ensure_user_name",
    "infer_argv",
    "load_parameters",
    "main",
    "parse_args",
    "parse_parameters",
    "prepare_writable_dirs",
    "resolve_checkpoint",
    "run_infer",
]
