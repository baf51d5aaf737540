"""Where inference finds its checkpoint: an explicit path, ``$WDM_INPAINT_CHECKPOINT``, or the bundled file."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHECKPOINT_ENV = "WDM_INPAINT_CHECKPOINT"
"""Environment variable naming the checkpoint to use when none is given (the container sets it)."""

BUNDLED_CHECKPOINT_NAME = "wdm_inpaint_demo.pt"
"""File name of the checkpoint shipped inside the package (``wdm_inpaint/resources/``)."""

_HASH_CHUNK = 1 << 20


def bundled_checkpoint_path() -> Path:
    """Path of the checkpoint shipped with the package (it may be absent in a source checkout)."""
    return Path(__file__).resolve().parents[1] / "resources" / BUNDLED_CHECKPOINT_NAME


def resolve_checkpoint(path: str | os.PathLike[str] | None = None) -> Path:
    """The checkpoint to load: ``path`` if given, else ``$WDM_INPAINT_CHECKPOINT``, else the bundled one.

    Raises:
        FileNotFoundError: naming the file that was looked for and how to supply another.
    """
    if path is not None:
        chosen = Path(path)
        origin = "given"
    elif os.environ.get(CHECKPOINT_ENV):
        chosen = Path(os.environ[CHECKPOINT_ENV])
        origin = f"${CHECKPOINT_ENV}"
    else:
        chosen = bundled_checkpoint_path()
        origin = "bundled"
    if not chosen.is_file():
        raise FileNotFoundError(
            f"checkpoint not found: {chosen} ({origin}); pass one with -m/--checkpoint or set ${CHECKPOINT_ENV}"
        )
    return chosen


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file (for run provenance)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = ["BUNDLED_CHECKPOINT_NAME", "CHECKPOINT_ENV", "bundled_checkpoint_path", "file_sha256", "resolve_checkpoint"]
