"""Run observability: a JSONL metrics file, TensorBoard event files and a console progress bar.

Files in the run folder:

* ``metrics.jsonl``: one JSON object per optimiser step, ``{"step": s, "loss": ..., <every term>..., "lr/<opt>": ...}``
  (floats written exactly), plus ``{"step": s, "val/<metric>": ...}`` lines after validations. On resume the lines
  after the checkpoint's step are dropped, so the file always reads like one uninterrupted run.
* ``tensorboard/``: scalars ``train/<term>``, ``lr/<optimiser>``, ``perf/step_time_s``, ``perf/samples_per_s``,
  ``perf/gpu_mem_gb`` and ``perf/gpu_mem_peak_gb`` (CUDA) every ``logging.log_every`` steps; image panels
  ``images/<tag>`` every ``logging.image_every`` steps; ``val/<metric>`` after each validation.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from wdm_inpaint.io.atomic import atomic_write_text
from wdm_inpaint.training.config import LoggingConfig

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
"""Per-step metrics file of a run folder."""
TENSORBOARD_DIR = "tensorboard"
"""TensorBoard sub-folder of a run folder."""
_BYTES_PER_GB = 1024**3


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Parse a metrics file, skipping a partial last line (a process killed mid-write)."""
    records = []
    if not Path(path).is_file():
        return records
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("%s: skipped an incomplete line", path)
    return records


def truncate_metrics(path: Path, last_step: int) -> int:
    """Keep only records with ``step <= last_step`` (atomically); returns the number of dropped records."""
    records = read_metrics(path)
    kept = [r for r in records if int(r.get("step", 0)) <= last_step]
    if Path(path).is_file():
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return len(records) - len(kept)


class RunLogger:
    """Writes metrics, TensorBoard events and the progress bar for the process that owns the run folder.

    Args:
        run_dir: run folder; ``None`` (non-main DDP processes) disables every file output.
        config: logging settings.
        start_step: steps already done (resume); later steps are purged from TensorBoard and the metrics file.
        max_steps: total steps (progress bar length).
    """

    def __init__(self, run_dir: Path | None, config: LoggingConfig, start_step: int, max_steps: int) -> None:
        self.config = config
        self.run_dir = run_dir
        self._metrics = None
        self._writer = None
        if run_dir is not None:
            path = run_dir / METRICS_FILE
            dropped = truncate_metrics(path, start_step)
            if dropped:
                logger.info(
                    "dropped %d metric records written after step %d (not in the checkpoint)", dropped, start_step
                )
            self._metrics = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            if config.tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(run_dir / TENSORBOARD_DIR), purge_step=start_step + 1)
        self._bar = tqdm(
            total=max_steps,
            initial=start_step,
            disable=run_dir is None or not config.progress,
            dynamic_ncols=True,
            desc="train",
            unit="step",
        )

    def log_step(self, step: int, terms: dict[str, float], lrs: dict[str, float], perf: dict[str, float]) -> None:
        """Record one optimiser step (``step`` counts completed steps, from 1)."""
        loss = terms.get("loss", math.nan)
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        if self._metrics is not None:
            record = {"step": step, **terms, **{f"lr/{k}": v for k, v in lrs.items()}}
            self._metrics.write(json.dumps(record) + "\n")
            self._metrics.flush()
        if self._writer is not None and step % self.config.log_every == 0:
            for k, v in terms.items():
                self._writer.add_scalar(f"train/{k}", v, step)
            for k, v in lrs.items():
                self._writer.add_scalar(f"lr/{k}", v, step)
            for k, v in perf.items():
                self._writer.add_scalar(f"perf/{k}", v, step)

    def log_validation(self, step: int, metrics: dict[str, float]) -> None:
        """Record validation metrics."""
        if self._metrics is not None:
            self._metrics.write(json.dumps({"step": step, **{f"val/{k}": v for k, v in metrics.items()}}) + "\n")
            self._metrics.flush()
        if self._writer is not None:
            for k, v in metrics.items():
                self._writer.add_scalar(f"val/{k}", v, step)
        self._bar.write(f"step {step}: validation " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))

    def wants_images(self, step: int) -> bool:
        """Whether image panels are due at ``step``."""
        return self._writer is not None and self.config.image_every > 0 and step % self.config.image_every == 0

    def log_images(self, step: int, images: dict[str, torch.Tensor]) -> None:
        """Write image panels: ``(H, W)`` or ``(3, H, W)`` tensors in [0, 1]."""
        if self._writer is None:
            return
        for tag, img in images.items():
            img = img.detach().float().cpu().clamp(0, 1)
            self._writer.add_image(f"images/{tag}", img, step, dataformats="HW" if img.dim() == 2 else "CHW")

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        self._bar.close()
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def gpu_memory(device: torch.device) -> dict[str, float]:
    """Allocated and peak CUDA memory (GiB) of ``device``; empty on CPU."""
    if device.type != "cuda":
        return {}
    return {
        "gpu_mem_gb": torch.cuda.memory_allocated(device) / _BYTES_PER_GB,
        "gpu_mem_peak_gb": torch.cuda.max_memory_allocated(device) / _BYTES_PER_GB,
    }


__all__ = ["METRICS_FILE", "TENSORBOARD_DIR", "RunLogger", "gpu_memory", "read_metrics", "truncate_metrics"]
