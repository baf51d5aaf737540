"""What a folder run records: one :class:`CaseRecord` per case, the :class:`RunSummary`, the run record file."""

from __future__ import annotations

import json
import logging
import platform
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from wdm_inpaint.io.atomic import atomic_write_text
from wdm_inpaint.version import __version__

logger = logging.getLogger(__name__)

FALLBACK_FILL = "harmonic"
"""Classical fill used when the model cannot handle a case."""

EXIT_FALLBACK = 3
"""Exit code when every case has an output but some came from the classical fallback."""

EXIT_FAILED = 1
"""Exit code when some case got no output at all (its voided scan was unusable)."""

LOG_DIR_SUFFIX = "-logs"
"""Default log folder: the output folder's name plus this suffix, next to it (never inside it)."""


@dataclass
class CaseRecord:
    """What happened to one case."""

    case_id: str
    status: str  # "model", "fallback", "skipped", "failed"
    output: str | None = None
    seconds: float = 0.0
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    device: str | None = None


@dataclass
class RunSummary:
    """Outcome of a folder run."""

    records: list[CaseRecord]
    seconds: float
    log_dir: Path | None = None
    method: str = "the model"
    status: str = "complete"  # or "interrupted" (a stop signal; see inference/stop_signals.py)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.records)

    @property
    def fallbacks(self) -> int:
        return self.count("fallback")

    @property
    def failed(self) -> int:
        return self.count("failed")

    def exit_code(self, fallback_ok: bool = False) -> int:
        """Process exit code: :data:`EXIT_FAILED` if a case has no output, :data:`EXIT_FALLBACK` if some case used
        the fallback (0 with ``fallback_ok``), else 0."""
        if self.failed:
            return EXIT_FAILED
        if self.fallbacks and not fallback_ok:
            return EXIT_FALLBACK
        return 0

    def line(self) -> str:
        """One-line summary: cases, seconds per case, fallbacks."""
        done = [r for r in self.records if r.status in ("model", "fallback")]
        per_case = sum(r.seconds for r in done) / len(done) if done else 0.0
        return (
            f"{len(self.records)} case(s): {self.count('model')} inpainted by {self.method}, {self.fallbacks} by the "
            f"{FALLBACK_FILL} fallback, {self.count('skipped')} skipped (output exists), {self.failed} failed; "
            f"{per_case:.1f} s per case, {self.seconds:.1f} s in all"
        )


def default_log_dir(output_folder: Path) -> Path:
    """The folder next to ``output_folder`` that holds run records."""
    output_folder = Path(output_folder).resolve()
    return output_folder.parent / f"{output_folder.name}{LOG_DIR_SUFFIX}"


def write_run_record(
    summary: RunSummary, provenance: dict[str, Any], data: Path, out_dir: Path, logs: Path, args: dict[str, Any]
) -> None:
    """Write ``run-<UTC stamp>.json`` into ``logs``; a log folder that cannot be made only warns."""
    try:
        logs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        logger.warning("cannot create the log folder %s (%s): no run record written", logs, exc)
        summary.log_dir = None
        return
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    record = {
        "version": __version__,
        "time_utc": stamp,
        "data_folder": str(data.resolve()),
        "output_folder": str(out_dir.resolve()),
        "arguments": args,
        "inpainter": provenance,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "status": summary.status,
        "summary": summary.line(),
        "cases": [asdict(r) for r in summary.records],
    }
    atomic_write_text(logs / f"run-{stamp}.json", json.dumps(record, indent=2, default=str))


__all__ = [
    "EXIT_FAILED",
    "EXIT_FALLBACK",
    "FALLBACK_FILL", "LOG_DIR_SUFFIX",
    "CaseRecord",
    "RunSummary",
    "default_log_dir",
    "write_run_record",
]
