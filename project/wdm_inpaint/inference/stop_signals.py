"""Stopping a run cleanly on SIGTERM (``docker stop``, a runner's timeout) or SIGINT (Ctrl-C).

Inside :class:`stop_signals` the first such signal raises :class:`RunInterrupted` in the main thread. The runner
lets the file being written finish (its writer thread completes the atomic rename) and drops the case being
sampled, whose temporary file :class:`~wdm_inpaint.io.atomic.FolderLock` removes; it then writes the run record
with status ``interrupted``, and the command exits with ``128 + signal`` (143 for SIGTERM, 130 for SIGINT). The
previous handlers are restored on exit; outside the main thread nothing is installed.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

logger = logging.getLogger(__name__)

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
"""Signals that stop a run cleanly."""

SIGNAL_EXIT_BASE = 128
"""Shell convention: a process ended by signal N exits with ``128 + N``."""


class RunInterrupted(BaseException):
    """A stop signal arrived; a ``BaseException`` so that per-case ``except Exception`` handlers let it through."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        """``128 + signal number`` (143 for SIGTERM, 130 for SIGINT)."""
        return SIGNAL_EXIT_BASE + self.signum


class stop_signals:  # noqa: N801 - used like a function: ``with stop_signals():``
    """Context manager: turn SIGTERM/SIGINT into :class:`RunInterrupted` (once; later signals are logged only).

    Inside :meth:`critical` (clean-up that must not be cut short) a signal is remembered and raised when the
    outermost critical section ends.
    """

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._critical = 0
        self._raised = False
        self.received: int | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            logger.warning("%s again: still finishing the file being written", name)
            return
        self.received = signum
        logger.warning("%s received: finishing the file being written, then stopping", name)
        if not self._critical:
            self._raised = True
            raise RunInterrupted(signum)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A section a stop signal does not interrupt; a signal received inside is raised at its end."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if not self._critical and self.received is not None and not self._raised:
            self._raised = True
            raise RunInterrupted(self.received)

    def __enter__(self) -> stop_signals:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


__all__ = ["STOP_SIGNALS", "RunInterrupted", "stop_signals"]
