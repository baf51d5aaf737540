"""The output folder of a run: made ready before anything is sampled, shared safely with other runs.

:func:`open_output_folder` checks and prepares the folder in one go and raises :class:`OutputFolderError` with one
line naming the path and the problem (an existing file, a read-only parent, no write permission). It takes this
run's owner lock (:class:`~wdm_inpaint.io.atomic.FolderLock`: creating the lock file is the writability probe) and
removes only the temporaries of runs that are gone, so several runs (``--shard i/n``) can write into one folder at
once. :func:`output_problem` decides whether an existing output may be skipped on resume: the whole file is
decompressed and checked against the case's input shape.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from wdm_inpaint.data.cases import Case
from wdm_inpaint.inference.stop_signals import RunInterrupted, stop_signals
from wdm_inpaint.io.atomic import FolderLock, remove_stale_temporaries
from wdm_inpaint.io.nifti import NiftiError, load_image, volume_problem

logger = logging.getLogger(__name__)

TEMPORARY_PATTERN = ".*-t1n-inference.nii.gz.*.tmp*"
"""Names of the temporaries of output files (``.<ID>-t1n-inference.nii.gz.<token>.tmp….nii.gz``)."""


class OutputFolderError(RuntimeError):
    """The output folder cannot be used; the message names the path and the problem in one line."""


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def open_output_folder(folder: str | os.PathLike[str]) -> FolderLock:
    """Create ``folder`` if needed, check it is a writable folder, lock it for this run and clean up after dead runs.

    Returns:
        The held :class:`~wdm_inpaint.io.atomic.FolderLock`; release it (or use it as a context manager) when the
        run ends.

    Raises:
        OutputFolderError: if the path is a file, cannot be created, or cannot be written.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"output folder {folder} is an existing file, not a folder: choose another -o")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputFolderError(f"output folder {folder} cannot be created: {_reason(exc)}") from exc
    lock = FolderLock(folder)
    try:
        lock.acquire()
    except OSError as exc:
        raise OutputFolderError(f"output folder {folder} is not writable: {_reason(exc)}") from exc
    remove_stale_temporaries(folder, TEMPORARY_PATTERN)
    return lock


def expected_output_shape(case: Case) -> tuple[int, ...] | None:
    """The (squeezed 3-D) shape an output of ``case`` must have: its voided scan's, or ``None`` if unreadable."""
    try:
        return tuple(load_image(case.path("t1n_voided")).shape)
    except (NiftiError, OSError, ValueError):
        return None


def output_problem(path: Path, case: Case) -> str | None:
    """Why the existing output ``path`` of ``case`` must be redone, or ``None`` when it is complete and valid.

    Returns ``"missing"`` when there is no file.
    """
    if not path.is_file():
        return "missing"
    problem = volume_problem(path, expected_output_shape(case))
    if problem is not None:
        logger.warning("%s exists but is not a valid output (%s): it is redone", path, problem)
    return problem


def written_meanwhile(path: Path, known: os.stat_result | None) -> bool:
    """Whether ``path`` was (re)written after it was seen as ``known`` (``None``: it did not exist): by another run.

    Outputs appear atomically (rename), so a file that appeared during this run is complete.
    """
    try:
        now = path.stat()
    except FileNotFoundError:
        return False
    return known is None or not os.path.samestat(now, known) or now.st_mtime_ns != known.st_mtime_ns


class OutputRun:
    """A run's hold on its output folder: stop signals handled, folder locked, clean-up never cut short.

    ``with OutputRun(folder) as run:`` prepares the folder (:func:`open_output_folder`) under
    :class:`~wdm_inpaint.inference.stop_signals.stop_signals`. The body catches
    :class:`~wdm_inpaint.inference.stop_signals.RunInterrupted` into :attr:`interrupted` (:meth:`stopped`) so that
    it can write its record; on exit the lock is released (this run's temporaries removed) and a stop is raised again.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.signals = stop_signals()
        self.lock: FolderLock | None = None
        self.interrupted: RunInterrupted | None = None

    @property
    def status(self) -> str:
        """``complete`` or ``interrupted``."""
        return "complete" if self.interrupted is None else "interrupted"

    def stopped(self, exc: RunInterrupted) -> None:
        """Record a stop signal caught by the run's body."""
        self.interrupted = exc

    def __enter__(self) -> OutputRun:
        self.signals.__enter__()
        try:
            with self.signals.critical():
                self.lock = open_output_folder(self.folder)
        except BaseException:
            self.signals.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            with self.signals.critical():
                if self.lock is not None:
                    self.lock.release()
        except RunInterrupted as late:
            self.interrupted = self.interrupted or late
        finally:
            self.signals.__exit__(None, None, None)
        if self.interrupted is not None and exc is None:
            raise self.interrupted


__all__ = [
    "TEMPORARY_PATTERN",
    "OutputFolderError",
    "OutputRun",
    "expected_output_shape",
    "open_output_folder",
    "output_problem",
    "written_meanwhile",
]
