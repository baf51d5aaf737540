"""Atomic file writes: write to a temporary name in the same folder, then rename.

Several processes may write into one folder (sharded runs). A process that takes a :class:`FolderLock` on a
folder holds an ``flock`` on a hidden owner file ``.wdm-owner-<token>.lock`` there for as long as it works; every
temporary it writes there carries the same token (``.<final name>.<token>.tmp<suffixes>``). A temporary is then
*live* while its owner file is locked and *stale* once the lock is free (the owner exited or was killed) or the
owner file is gone: :func:`remove_stale_temporaries` removes only stale ones, never another run's live file.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

_FILE_MODE = 0o666
"""Permissions of a new file before the umask is applied (as ``open(..., "w")`` creates files)."""

OWNER_PREFIX = ".wdm-owner-"
"""Name prefix of the owner lock files of :class:`FolderLock`."""

OWNER_SUFFIX = ".lock"
"""Name suffix of the owner lock files."""

TOKEN_BYTES = 6
"""Random bytes in a run token (with the process id: unique across processes and hosts in practice)."""

_TOKEN = re.compile(r"\.(wdm\d+-[0-9a-f]+)\.tmp")
"""Finds the owner token inside a temporary file name."""

_LOCK_ATTEMPTS = 5
"""Tries to create and lock an owner file before giving up (a cleaner may remove a file not yet locked)."""

_ACTIVE: dict[Path, FolderLock] = {}
_ACTIVE_GUARD = threading.Lock()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _new_token() -> str:
    return f"wdm{os.getpid()}-{secrets.token_hex(TOKEN_BYTES)}"


def _owner_file(folder: Path, token: str) -> Path:
    return folder / f"{OWNER_PREFIX}{token}{OWNER_SUFFIX}"


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


class FolderLock:
    """This run's owner lock on ``folder``; while held, :func:`atomic_path` names temporaries there after it.

    Use as a context manager. Creating the owner file is also the probe that the folder is writable.

    Raises:
        OSError: if the owner file cannot be created or locked (read-only folder, no permission).
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.token = _new_token()
        self.path = _owner_file(self.folder, self.token)
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        """Create and lock the owner file (idempotent)."""
        if self._fd is not None:
            return self
        for _ in range(_LOCK_ATTEMPTS):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE & ~_current_umask())
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _same_file(fd, self.path):  # not removed by a cleaner between creation and locking
                self._fd = fd
                break
            os.close(fd)
        else:
            raise OSError(f"{self.path}: cannot create a stable owner lock file")
        with _ACTIVE_GUARD:
            _ACTIVE[self.folder.resolve()] = self
        return self

    def release(self) -> None:
        """Remove this run's temporaries and the owner file, then unlock (idempotent)."""
        if self._fd is None:
            return
        with _ACTIVE_GUARD:
            if _ACTIVE.get(self.folder.resolve()) is self:
                del _ACTIVE[self.folder.resolve()]
        for tmp in self.folder.glob(f".*.{self.token}.tmp*"):
            tmp.unlink(missing_ok=True)
        self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None

    def temporary_name(self, final: Path, ext: str) -> Path:
        """The temporary path of ``final`` owned by this run (unique per call)."""
        return final.parent / f".{final.name}.{self.token}.tmp{secrets.token_hex(2)}{ext}"

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _owner_is_alive(folder: Path, token: str) -> bool:
    """Whether the owner lock of ``token`` in ``folder`` is held; a free lock file is removed (with the lock held)."""
    path = _owner_file(folder, token)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        if not _try_lock(fd):
            return True
        if _same_file(fd, path):
            path.unlink(missing_ok=True)
        return False
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike[str], pattern: str = ".*.tmp*") -> list[Path]:
    """Remove the temporaries matching ``pattern`` in ``folder`` whose owner run is gone, and free owner files.

    A temporary without an owner token was not written under a :class:`FolderLock` (an older version, a crash of a
    plain :func:`atomic_path` write); it is removed as before: writers that share a folder must all lock it.

    Returns:
        The removed temporaries.
    """
    folder = Path(folder)
    removed: list[Path] = []
    alive: dict[str, bool] = {}
    own = {lock.token for lock in _ACTIVE.values()}
    for tmp in sorted(folder.glob(pattern)):
        match = _TOKEN.search(tmp.name)
        token = match.group(1) if match is not None else None
        if token in own:
            continue
        if token is not None and token not in alive:
            alive[token] = _owner_is_alive(folder, token)
        if token is None or not alive[token]:
            logger.info("removing the temporary file of an interrupted run: %s", tmp)
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    for owner in folder.glob(f"{OWNER_PREFIX}*{OWNER_SUFFIX}"):
        token = owner.name[len(OWNER_PREFIX) : -len(OWNER_SUFFIX)]
        if token not in own and token not in alive:
            _owner_is_alive(folder, token)  # removes the file of a run that is gone
    return removed


def _temporary(final: Path, ext: str) -> Path:
    with _ACTIVE_GUARD:
        owner = _ACTIVE.get(final.parent.resolve())
    if owner is None:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{ext}", dir=final.parent)
        os.close(fd)
        return Path(tmp)
    while True:
        tmp = owner.temporary_name(final, ext)
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
        except FileExistsError:
            continue
        return tmp


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success it is renamed to ``final``, on error removed.

    The temporary name starts with ``.`` and keeps ``final``'s suffixes (or ``suffix``) so that writers that
    infer the format from the extension (nibabel, torch) still work; inside a folder under a :class:`FolderLock`
    it carries the lock's token. A reader never sees a partial file under the final name.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    ext = suffix if suffix is not None else "".join(final.suffixes)
    tmp_path = _temporary(final, ext)
    os.chmod(tmp_path, _FILE_MODE & ~_current_umask())  # mkstemp makes 0600; outputs follow the umask
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(final: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``final`` atomically."""
    with atomic_path(final) as tmp:
        tmp.write_text(text)


__all__ = ["FolderLock", "atomic_path", "atomic_write_text", "remove_stale_temporaries"]
