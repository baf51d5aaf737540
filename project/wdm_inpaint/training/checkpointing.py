"""Training checkpoints on disk: names, atomic writing, keep-last-N, RNG states and resume look-up.

A run folder holds ``checkpoints/step_<8-digit step>.pt`` (the newest ``checkpoint.keep_last`` are kept) and
``checkpoints/best.pt`` (best validation metric). Every file is written under a temporary name and renamed, so a
process killed at any moment leaves either the previous set of checkpoints or the new one, never a partial file
under a final name. The file content is decided by the task (``TrainingTask.write_checkpoint``); the training
state (step, optimisers, schedulers, EMA, RNG states, data position, resolved config) travels in it.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wdm_inpaint.io.atomic import atomic_path

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
"""Sub-folder of a run folder holding its checkpoints."""
BEST_NAME = "best.pt"
"""File name of the best-validation checkpoint."""
_STEP_PATTERN = re.compile(r"^step_(\d{8,})\.pt$")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    """``<run_dir>/checkpoints/step_<step:08d>.pt``."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Step checkpoints of a run, oldest first (temporary files are ignored)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = _STEP_PATTERN.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest step checkpoint of a run, or ``None``."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it to ``path``."""
    with atomic_path(path) as tmp:
        write(tmp)
    return path


def prune_checkpoints(run_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` step checkpoints; returns the deleted paths."""
    found = list_checkpoints(run_dir)
    removed = [p for _, p in found[: max(0, len(found) - keep_last)]]
    for p in removed:
        p.unlink(missing_ok=True)
        logger.debug("removed old checkpoint %s", p)
    return removed


def remove_stale_temporaries(run_dir: Path) -> list[Path]:
    """Delete temporary files left by a process killed while writing a checkpoint."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    stale = [p for p in folder.glob(".*.tmp*")] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
        logger.info("removed unfinished checkpoint file %s", p)
    return stale


def resolve_resume(target: str | Path) -> tuple[Path, Path]:
    """Find the run folder and the checkpoint to resume from.

    Args:
        target: a run folder (its newest step checkpoint is used) or a checkpoint file inside
            ``<run>/checkpoints/``.

    Returns:
        ``(run_dir, checkpoint)``.

    Raises:
        FileNotFoundError: nothing to resume from at ``target``.
    """
    target = Path(target)
    if target.is_dir():
        ckpt = latest_checkpoint(target)
        if ckpt is None:
            raise FileNotFoundError(f"--resume {target}: the run folder has no checkpoints/step_*.pt to resume from")
        return target, ckpt
    if target.is_file():
        if target.parent.name != CHECKPOINT_DIR:
            raise FileNotFoundError(
                f"--resume {target}: a checkpoint to resume must lie in a run's {CHECKPOINT_DIR}/ folder"
            )
        return target.parent.parent, target
    raise FileNotFoundError(f"--resume {target}: no such run folder or checkpoint file")


# ------------------------------------------------------------------------------------------ RNG states


def capture_rng_state() -> dict[str, Any]:
    """States of the global RNGs (torch CPU, every CUDA device, numpy, python), as tensors and plain types."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "algorithm": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss_next": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`capture_rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(
        (n["algorithm"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            logger.warning("checkpoint has %d CUDA RNG states for %d devices; not restored", len(cuda_states),
                           torch.cuda.device_count())


__all__ = [
    "BEST_NAME",
    "CHECKPOINT_DIR",
    "capture_rng_state",
    "checkpoint_path",
    "latest_checkpoint",
    "list_checkpoints",
    "prune_checkpoints",
    "remove_stale_temporaries",
    "resolve_resume",
    "restore_rng_state",
    "write_atomically",
]
