"""Console logging for the programs (the command line and the container); library code never configures handlers."""

from __future__ import annotations

import logging

NOISY_LOGGERS = ("matplotlib", "PIL", "h5py", "numexpr")
"""Third-party loggers kept at WARNING unless debug output is asked for."""

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
"""Line format of console log records."""

_DEBUG_VERBOSITY = 2
"""``-vv``: debug output, third-party loggers included."""


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Console logging: INFO by default, WARNING with ``quiet``, DEBUG from ``verbose`` >= 2."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose >= _DEBUG_VERBOSITY else logging.INFO)
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%H:%M:%S")
    if verbose < _DEBUG_VERBOSITY:
        for noisy in NOISY_LOGGERS:
            logging.getLogger(noisy).setLevel(logging.WARNING)


__all__ = ["configure_logging"]
