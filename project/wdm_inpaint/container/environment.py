"""The container's process environment: writable library folders, a user name, the switch to the output's owner.

Started as root with an output folder that belongs to another user, the process first switches to that user, so
the host user owns (and can delete) every file written and nothing needs chown.
"""

from __future__ import annotations

import logging
import os
import pwd
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

logger = logging.getLogger(__name__)

WRITABLE_DIR_VARIABLES = ("TMPDIR", "HOME", "XDG_CACHE_HOME", "MPLCONFIGDIR", "TORCH_HOME")
"""Environment variables naming folders that libraries write to; each must be writable by the running user.
``TMPDIR`` comes first because the replacements for the others are created under it."""

USER_NAME_VARIABLES = ("LOGNAME", "USER", "LNAME", "USERNAME")
"""Variables ``getpass.getuser()`` reads, in its order, before it looks the uid up in ``/etc/passwd``."""


class ContainerError(RuntimeError):
    """The run cannot start: a folder is missing or not writable, or the checkpoint cannot be chosen."""


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


def check_folders(data_path: Path, output_path: Path) -> None:
    """Raise :class:`ContainerError` unless ``data_path`` is a folder and ``output_path`` exists (or is made)."""
    if not data_path.is_dir():
        raise ContainerError(f"input folder {data_path} does not exist or is not a folder (mount the cases there)")
    try:
        output_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ContainerError(f"output folder {output_path} cannot be created: {exc}") from exc


def check_writable(output_path: Path) -> None:
    """Raise :class:`ContainerError` with the ``--user`` hint unless this process may write ``output_path``."""
    if not os.access(output_path, os.W_OK | os.X_OK):
        raise ContainerError(
            f"output folder {output_path} is not writable by uid {os.getuid()} gid {os.getgid()}; run the "
            'container with --user "$(id -u):$(id -g)" (the owner of the folder) or make the folder writable'
        )


def prepare_process(data_path: Path, output_path: Path, env: MutableMapping[str, str]) -> None:
    """Check the folders, switch to the output's owner when root, and make the environment usable.

    Raises:
        ContainerError: a missing input folder, or an output folder that cannot be created or written.
    """
    check_folders(data_path, output_path)
    drop_privileges_to_owner(output_path)
    check_writable(output_path)
    ensure_user_name(env)
    prepare_writable_dirs(env)


__all__ = [
    "USER_NAME_VARIABLES",
    "WRITABLE_DIR_VARIABLES",
    "ContainerError",
    "check_folders",
    "check_writable",
    "drop_privileges_to_owner",
    "ensure_user_name",
    "prepare_process",
    "prepare_writable_dirs",
]
