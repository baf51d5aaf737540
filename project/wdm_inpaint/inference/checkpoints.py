"""Where inference finds its checkpoint: a file or folder, ``$WDM_INPAINT_CHECKPOINT``, or the bundled file."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)

CHECKPOINT_ENV = "WDM_INPAINT_CHECKPOINT"
"""Environment variable naming the checkpoint to use when none is given (the container sets it)."""

BUNDLED_CHECKPOINT_NAME = "wdm_inpaint_demo.pt"
"""File name of the checkpoint shipped inside the package (``wdm_inpaint/resources/``)."""

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
"""File suffixes recognised as checkpoints inside a checkpoint folder (MLCube's ``additional_files``)."""

_HASH_CHUNK = 1 << 20


class CheckpointError(ValueError):
    """A checkpoint path that names no usable file: it does not exist, or its folder holds several checkpoints."""


def bundled_checkpoint_path() -> Path:
    """Path of the checkpoint shipped with the package (it may be absent in a source checkout)."""
    return Path(__file__).resolve().parents[1] / "resources" / BUNDLED_CHECKPOINT_NAME


def find_checkpoint(path: str | os.PathLike[str] | None) -> Path | None:
    """The checkpoint file that ``path`` names.

    Args:
        path: ``None``, a checkpoint file, or a folder holding at most one file with a suffix of
            :data:`CHECKPOINT_SUFFIXES` (hidden files are ignored).

    Returns:
        The checkpoint file, or ``None`` when ``path`` names none (no path, or a folder without one): the default
        applies.

    Raises:
        CheckpointError: if the path does not exist or the folder holds several checkpoints.
    """
    if path is None:
        return None
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"checkpoint path {path} does not exist")
    found = sorted(
        p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix in CHECKPOINT_SUFFIXES
    )
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise CheckpointError(f"checkpoint folder {path} holds several checkpoints ({names}); keep exactly one")
    if not found:
        logger.info("no checkpoint in %s; using the default checkpoint", path)
    return found[0] if found else None


def resolve_checkpoint(path: str | os.PathLike[str] | None = None) -> Path:
    """The checkpoint to load: the one ``path`` names (a file, or a folder holding one; see
    :func:`find_checkpoint`), else ``$WDM_INPAINT_CHECKPOINT``, else the bundled one.

    Raises:
        FileNotFoundError: naming the file that was looked for and how to supply another.
        CheckpointError: a folder that holds several checkpoints.
    """
    named = find_checkpoint(path) if path is not None and Path(path).is_dir() else path
    if named is not None:
        chosen = Path(named)
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


__all__ = [
    "BUNDLED_CHECKPOINT_NAME",
    "CHECKPOINT_ENV",
    "CHECKPOINT_SUFFIXES",
    "CheckpointError",
    "bundled_checkpoint_path",
    "file_sha256",
    "find_checkpoint",
    "resolve_checkpoint",
]
