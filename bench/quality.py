"""Inpainting quality on held-out cases: samplers x steps x averaged samples, against the classical fills.

For every setting the script inpaints all cases of ``--data`` (challenge layout with ground truth: ``t1n``,
``mask-healthy``), scores them with both challenge formulas (``wdm-inpaint evaluate``) and prints one table row:
mean ± std of SSIM, PSNR and MSE inside ``mask-healthy`` and the seconds per case. ``--json`` keeps every figure.

Settings are ``sampler:steps:samples[:strength]`` (``harmonic`` and ``mean`` need no steps; ``strength`` below 1
starts from the model's anchor noised part-way, see ``PipelineConfig.strength``). Several held-out sets can be
given as ``NAME=FOLDER``; each is reported separately, with a per-case table, and every set runs every setting
in the same process (the classical fills ``harmonic`` and ``mean`` are always included)::

    python bench/quality.py --data clean=data/heldout noisy=data/heldout_noisy -m model.pt \\
        --settings ddim:1:1 dpmpp_2m:10:1 dpmpp_2m:10:4 --json quality.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from wdm_inpaint.evaluation.evaluate import evaluate_folder
from wdm_inpaint.inference.acceleration import PRECISIONS
from wdm_inpaint.fill import CLASSICAL_FILLS
from wdm_inpaint.inference.inpainter import Inpainter

BASELINES = ("harmonic", "mean")
"""Classical fills run on every set, whatever ``--settings`` says."""

DEFAULT_SETTINGS = ("ddim:1:1", "ddim:10:1", "dpmpp_2m:10:1", "dpmpp_2m:10:4")
"""The sweep run when ``--settings`` is not given (after :data:`BASELINES`)."""

REPORTED = ("ssim", "psnr", "mse")
"""Metrics shown in the table (both formulas are kept in the JSON)."""


def parse_setting(text: str) -> dict[str, object]:
    """``sampler[:steps[:samples[:strength]]]`` -> keyword arguments of :meth:`Inpainter.from_checkpoint`."""
    parts = text.split(":")
    sampler = parts[0]
    if sampler in CLASSICAL_FILLS:
        return {"sampler": sampler, "steps": None, "samples": 1}
    steps = int(parts[1]) if len(parts) > 1 else 10
    samples = int(parts[2]) if len(parts) > 2 else 1
    kwargs: dict[str, object] = {"sampler": sampler, "steps": steps, "samples": samples}
    if len(parts) > 3:
        kwargs["strength"] = float(parts[3])
    return kwargs


def parse_data(items: list[str]) -> dict[str, Path]:
    """``NAME=FOLDER`` (or ``FOLDER``, named after its last part) -> ordered mapping of held-out sets."""
    sets: dict[str, Path] = {}
    for item in items:
        name, _, folder = item.rpartition("=")
        path = Path(folder)
        sets[name or path.name] = path
    return sets


def run_setting(
    data: Path, checkpoint: Path | None, setting: str, seed: int, device: str, crop: bool | None = None,
    precision: str = "auto",
) -> dict[str, object]:
    """Inpaint and score every case of ``data`` with one setting (``crop``: ``None`` = the checkpoint's)."""
    kwargs = parse_setting(setting)
    inpainter = Inpainter.from_checkpoint(checkpoint, device=device, seed=seed, crop=crop,  # type: ignore[arg-type]
                                          precision=precision, **kwargs)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = inpainter.infer_batch(data, Path(tmp) / "pred", log_dir=Path(tmp) / "logs", progress=False)
        seconds = time.perf_counter() - start
        report = evaluate_folder(data, Path(tmp) / "pred", progress=False)
    cases = max(1, len(summary.records))
    return {
        "setting": setting,
        "precision": inpainter.acceleration.describe(),
        **kwargs,
        "cases": len(summary.records),
        "fallbacks": summary.fallbacks,
        "seconds_per_case": seconds / cases,
        "summary": report.summary,
        "per_case": {r.case_id: r.metrics.as_flat_dict() for r in report.results if r.metrics is not None},
    }


def per_case_table(rows: list[dict[str, object]]) -> str:
    """Markdown table: one line per case, SSIM / PSNR (Synapse formula) of every setting."""
    cases = sorted({case for row in rows for case in row["per_case"]})  # type: ignore[union-attr]
    head = "| case | " + " | ".join(str(row["setting"]) for row in rows) + " |"
    lines = [head, "|" + "---|" * (len(rows) + 1)]
    for case in cases:
        cells = []
        for row in rows:
            m = row["per_case"].get(case)  # type: ignore[union-attr]
            cells.append("—" if m is None else f"{m['synapse_ssim']:.4f} / {m['synapse_psnr']:.2f}")
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(rows: list[dict[str, object]]) -> str:
    """Markdown table of the Synapse-formula and package-formula means ± std."""
    head = "| setting | " + " | ".join(f"{m.upper()} (Synapse)" for m in REPORTED) + " | SSIM (package) | s/case |"
    lines = [head, "|" + "---|" * (len(REPORTED) + 3)]
    for row in rows:
        syn = row["summary"]["synapse"]  # type: ignore[index]
        pac = row["summary"]["package"]  # type: ignore[index]
        cells = [f"{syn[m]['mean']:.4f} ± {syn[m]['std']:.4f}" if m != "psnr" else
                 f"{syn[m]['mean']:.2f} ± {syn[m]['std']:.2f}" for m in REPORTED]
        cells.append(f"{pac['ssim']['mean']:.4f} ± {pac['ssim']['std']:.4f}")
        lines.append(f"| {row['setting']} | " + " | ".join(cells) + f" | {row['seconds_per_case']:.1f} |")
    return "\n".join(lines)


def network_calls(row: dict[str, object]) -> int:
    """Model evaluations per case of a setting (0 for the classical fills)."""
    if row["sampler"] in CLASSICAL_FILLS:
        return 0
    return int(row["steps"]) * int(row["samples"])  # type: ignore[arg-type]


def plot(rows: list[dict[str, object]], path: Path) -> None:
    """SSIM (Synapse formula) and seconds per case against network calls; classical fills as lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), tight_layout=True)
    FigureCanvasAgg(fig)
    ax_ssim, ax_time = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for row in rows:
        ssim = row["summary"]["synapse"]["ssim"]["mean"]  # type: ignore[index]
        calls = network_calls(row)
        if calls == 0:
            ax_ssim.axhline(ssim, linestyle="--", linewidth=1, label=str(row["setting"]), color="grey")
            continue
        ax_ssim.scatter([calls], [ssim], label=str(row["setting"]))
        ax_time.scatter([calls], [row["seconds_per_case"]], label=str(row["setting"]))
    for ax, label in ((ax_ssim, "SSIM in mask-healthy (Synapse formula)"), (ax_time, "seconds per case")):
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlabel("network calls per case")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", required=True, metavar="[NAME=]FOLDER",
                        help="held-out sets with ground truth, each reported separately")
    parser.add_argument("-m", "--checkpoint", type=Path, default=None, help="default: the bundled checkpoint")
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), help="sampler:steps:samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    crop = parser.add_mutually_exclusive_group()
    crop.add_argument("--crop", dest="crop", action="store_true", default=None, help="sample a box around the mask")
    crop.add_argument("--no-crop", dest="crop", action="store_false", help="sample the whole volume")
    parser.add_argument("--precision", default="auto", choices=PRECISIONS, help="network precision (default: auto)")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--plot", type=Path, default=None, help="write the SSIM / time vs network calls PNG here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    args = parser.parse_args()
    settings = list(BASELINES) + [s for s in args.settings if s not in BASELINES]
    results: dict[str, list[dict[str, object]]] = {}
    report = []
    for name, folder in parse_data(args.data).items():
        rows = results.setdefault(name, [])
        for setting in settings:
            rows.append(run_setting(folder, args.checkpoint, setting, args.seed, args.device, args.crop,
                                    args.precision))
            print(f"done: {name} {setting} ({rows[-1]['seconds_per_case']:.1f} s per case)", flush=True)
        report.append(f"## {name} ({folder}, {rows[0]['cases']} cases)\n\n{table(rows)}\n\nPer case, SSIM / PSNR "
                      f"(Synapse formula):\n\n{per_case_table(rows)}\n")
    text = "\n".join(report)
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    if args.markdown is not None:
        args.markdown.write_text(text)
    if args.plot is not None:
        plot([row for rows in results.values() for row in rows][: len(settings)], args.plot)


if __name__ == "__main__":
    main()
