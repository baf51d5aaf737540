"""Plot the loss curves of a training run (its ``metrics.jsonl``, the same values TensorBoard shows) as a PNG.

    python bench/plot_training.py runs/demo_akh_context_cpu -o docs/demo_model_training.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

SMOOTHING_WINDOW = 25
"""Steps of the moving average drawn over the raw curves."""

SKIPPED_KEYS = ("step",)

COLUMNS = 4
"""Panels per row of the figure."""
"""Keys of ``metrics.jsonl`` rows that are not curves."""


def load_metrics(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Curve name -> (steps, values) from ``run_dir/metrics.jsonl``."""
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        for key, value in row.items():
            if key in SKIPPED_KEYS or not isinstance(value, (int, float)):
                continue
            steps, values = curves.setdefault(key, ([], []))
            steps.append(int(row["step"]))
            values.append(float(value))
    return {k: (np.asarray(s), np.asarray(v)) for k, (s, v) in curves.items()}


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (shorter at the start)."""
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    out = np.empty_like(values)
    for i in range(len(values)):
        lo = max(0, i + 1 - window)
        out[i] = (cumsum[i + 1] - cumsum[lo]) / (i + 1 - lo)
    return out


def plot(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> Figure:
    """One panel per curve, raw values faint and the moving average bold."""
    names = sorted(curves)
    rows = -(-len(names) // COLUMNS)
    fig = Figure(figsize=(4 * COLUMNS, 3.0 * rows), tight_layout=True)
    FigureCanvasAgg(fig)
    for i, name in enumerate(names, start=1):
        ax = fig.add_subplot(rows, COLUMNS, i)
        steps, values = curves[name]
        if len(values) < SMOOTHING_WINDOW:  # sparse curves (validation): points and lines
            ax.plot(steps, values, marker="o")
        else:
            ax.plot(steps, values, alpha=0.25, linewidth=0.8)
            ax.plot(steps, smooth(values, SMOOTHING_WINDOW), linewidth=1.6)
        ax.set_title(name)
        ax.set_xlabel("step")
        if name not in ("grad_norm",) and not name.startswith("lr") and (values > 0).all():
            ax.set_yscale("log")
    fig.suptitle(title)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    fig = plot(load_metrics(args.run_dir), f"training curves: {args.run_dir.name}")
    fig.savefig(args.output, dpi=90)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
