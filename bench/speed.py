"""Speed and memory of inference: per-network-call time, seconds per case end to end, peak RSS and CUDA memory.

Models (``--models``):

* ``bundled``: the bundled demo checkpoint (or ``-m PATH``);
* ``full``: the published full-size AKH architecture (``WDMConfig()``: 83 M parameters, 16 input channels) with
  random weights, saved as a checkpoint so that it runs through exactly the same code as a trained one.

Cases: a challenge-layout folder (``--data``, default the committed demo case, 240 x 240 x 155 on the BraTS grid).

Three measurements per model:

1. **Per network call**, for each fast-path variant (``--variants``: ``fp32`` eager is the reference, ``bf16``,
   ``channels_last``, ``compile`` and ``+`` combinations) on the grids the inpainter really samples (``crop``: the
   case's boxes around the mask; ``whole``: the whole padded volume). Variants are timed round-robin, one call each
   per round, so a busy machine slows them alike; the ratio to ``fp32`` in the same process is the robust figure.
   The first call of a variant (compilation included) is reported apart.
2. **End to end** (``Inpainter.infer_batch``: read, preprocess, sample, restore, write, with the next case read
   while the current one samples), for each ``sampler:steps`` setting (``--settings``) with the ``--e2e`` variants.
   Settings with more than ``--max-measured-calls`` network calls are extrapolated from a straight-line fit of the
   measured ones and marked so.
3. **Peak memory** of each end-to-end run: resident set (``VmHWM``, reset before the run) and CUDA
   (``torch.cuda.max_memory_allocated``).

Example (the figures in ``docs/performance.md``)::

    OMP_NUM_THREADS=1 python bench/speed.py --json speed_cpu.json --markdown speed_cpu.md
    python bench/speed.py --device cuda --variants fp32 bf16 bf16+channels_last bf16+channels_last+compile \\
        --grids crop whole --json speed_cuda.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from wdm_inpaint.checkpoint import save_checkpoint
from wdm_inpaint.config import WDMConfig
from wdm_inpaint.inference.acceleration import AccelerationConfig, prepare_model, resolve_acceleration
from wdm_inpaint.inference.inpainter import Inpainter
from wdm_inpaint.inference.options import resolve_device
from wdm_inpaint.io.nifti import read_nifti
from wdm_inpaint.models.unet import WDMUNet, count_parameters

DEMO_DATA = Path(__file__).resolve().parents[1] / "demo"
"""Default cases: the committed demo case."""

REFERENCE_VARIANT = "fp32"
"""Plain float32 eager: every ratio is against this variant, timed in the same process."""

VARIANT_PARTS = {"fp32", "bf16", "channels_last", "compile"}
"""Parts a variant name is made of, joined by ``+``."""

DEFAULT_SETTINGS = ("ddim:1", "dpmpp_2m:5", "dpmpp_2m:10", "dpmpp_2m:25", "ddpm:1000")
"""``sampler:steps`` settings run end to end."""

TIMESTEP = 500
"""Timestep fed to the network when timing single calls (the cost does not depend on it)."""

PIPELINE_STEPS = 10
"""Steps timed with the zero-cost stand-in network."""

PIPELINE_VARIANT = "pipeline work, no network"
"""Row label of the pipeline's own work per step."""

KIB = 1024


# --------------------------------------------------------------------------- memory


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux ``clear_refs``); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_gib() -> float:
    """Peak resident set of this process since the last reset (``VmHWM``), GiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / KIB**2
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB**2


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- models and inputs


def variant_options(name: str) -> dict[str, Any]:
    """``bf16+channels_last`` -> the :class:`InferenceOptions` fields of that variant (everything explicit)."""
    parts = set(name.split("+"))
    unknown = parts - VARIANT_PARTS
    if unknown:
        raise SystemExit(f"unknown variant part(s) {sorted(unknown)} in {name!r}; use {sorted(VARIANT_PARTS)}")
    return {
        "precision": "bfloat16" if "bf16" in parts else "float32",
        "channels_last": "channels_last" in parts,
        "compile": "compile" in parts,
    }


def model_checkpoint(name: str, checkpoint: Path | None, workdir: Path) -> Path | None:
    """Checkpoint of model ``name``: the bundled one (``None`` = default resolution) or the random full-size one."""
    if name == "bundled":
        return checkpoint
    if name == "full":
        torch.manual_seed(0)
        config = WDMConfig()
        config = replace(config, preprocess=replace(config.preprocess, crop=True))  # random weights: crop as bundled
        return save_checkpoint(workdir / "full_size_random.pt", WDMUNet(config.unet), config,
                               metadata={"purpose": "speed benchmark, random weights"})
    raise SystemExit(f"unknown model {name!r}; use bundled or full")


def sampled_grids(inpainter: Inpainter, case_dir: Path, grids: list[str]) -> dict[str, list[tuple[int, ...]]]:
    """Image shapes the inpainter samples for one case: its crop boxes, and/or the whole model grid."""
    voided = read_nifti(case_dir / f"{case_dir.name}-t1n-voided.nii.gz")
    mask = read_nifti(case_dir / f"{case_dir.name}-mask.nii.gz").data
    prepared = inpainter.prepare(voided.data, mask, voided.affine)
    if prepared.mask_grid is None:
        raise SystemExit(f"{case_dir}: nothing to sample (empty mask or no model)")
    shapes: dict[str, list[tuple[int, ...]]] = {}
    if "crop" in grids:
        boxes = inpainter.with_options(crop=True).crop_boxes(prepared.mask_grid)
        shapes["crop"] = [tuple(b.size) for b in boxes or []]
    if "whole" in grids:
        shapes["whole"] = [tuple(prepared.mask_grid.shape[2:])]
    return shapes


def parse_setting(setting: str) -> tuple[str, int]:
    """``sampler:steps`` (steps default 1) -> (sampler, steps)."""
    sampler, _, steps = setting.partition(":")
    return sampler, int(steps or 1)


def network_calls(inpainter: Inpainter, steps: int) -> int:
    """Network calls per sample: ``steps``, capped at the model's trained timesteps (as inference does)."""
    if inpainter.config is None:
        return 0
    return min(steps, inpainter.config.schedule.num_timesteps)


@dataclass
class CallTiming:
    """Per-network-call figures of one model, grid and variant."""

    model: str
    grid: str
    shape: list[int]
    variant: str
    first_call_s: float
    median_s: float
    calls_timed: int
    ratio_to_fp32: float = float("nan")


def time_calls(
    model_name: str, grid: str, shape: tuple[int, ...], model: torch.nn.Module, config: WDMConfig,
    variants: list[str], device: torch.device, rounds: int,
) -> list[CallTiming]:
    """Round-robin per-call timing of every variant on one image shape (``(D, H, W)`` of the sampled box)."""
    wavelet_shape = tuple(s // 2 for s in shape)
    x = torch.randn(1, config.unet.in_channels, *wavelet_shape, device=device)
    t = torch.full((1,), TIMESTEP, dtype=torch.long, device=device)
    runners, first, times = {}, {}, {v: [] for v in variants}
    layouts: dict[bool, torch.nn.Module] = {}  # one copy of the weights per memory format
    for variant in variants:
        accel = resolve_acceleration(AccelerationConfig(**variant_options(variant)), device)
        if accel.channels_last not in layouts:
            layouts[accel.channels_last] = copy.deepcopy(model) if layouts else model
        runners[variant] = (prepare_model(layouts[accel.channels_last], accel, device), accel)
    for r in range(rounds + 1):
        for variant in variants:
            network, accel = runners[variant]
            inp = x.contiguous(memory_format=torch.channels_last_3d) if accel.channels_last else x
            ctx = torch.autocast(device.type, dtype=torch.bfloat16) if accel.autocast else torch.autocast(
                device.type, enabled=False)
            synchronize(device)
            start = time.perf_counter()
            with torch.inference_mode(), ctx:
                network(inp, t)
            synchronize(device)
            elapsed = time.perf_counter() - start
            if r == 0:
                first[variant] = elapsed
            else:
                times[variant].append(elapsed)
    model.to(memory_format=torch.contiguous_format)
    del layouts, runners
    rows = [CallTiming(model_name, grid, list(shape), v, first[v], statistics.median(times[v]), rounds)
            for v in variants]
    reference = next((row.median_s for row in rows if row.variant == REFERENCE_VARIANT), None)
    for row in rows:
        if reference:
            row.ratio_to_fp32 = row.median_s / reference
    return rows


class NoNetwork(torch.nn.Module):
    """Zero-cost stand-in network (x0 = the noisy wavelets) to time the pipeline's own work per step."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x[:, :8] + self.anchor


def time_pipeline_work(
    model_name: str, grid: str, shape: tuple[int, ...], config: WDMConfig, device: torch.device, steps: int
) -> CallTiming:
    """Seconds per step of everything but the network (DWT/IDWT, x0 clip, sampler update, known-region paste)."""
    from wdm_inpaint.pipeline import InpaintingPipeline, PipelineConfig
    from wdm_inpaint.samplers import SamplerConfig

    gen = torch.Generator().manual_seed(0)
    image = (torch.rand(1, 1, *shape, generator=gen) * 2 - 1).to(device)
    mask = torch.zeros_like(image)
    mask[(..., *[slice(s // 4, 3 * s // 4) for s in shape])] = 1
    pipe = InpaintingPipeline(NoNetwork().to(device), config,
                              PipelineConfig(sampler=SamplerConfig(name="dpmpp_2m", num_steps=steps), progress=False))
    pipe(image, mask)  # warm-up
    synchronize(device)
    start = time.perf_counter()
    pipe(image, mask)
    synchronize(device)
    per_step = (time.perf_counter() - start) / steps
    return CallTiming(model_name, grid, list(shape), PIPELINE_VARIANT, float("nan"), per_step, steps)


# --------------------------------------------------------------------------- end to end


@dataclass
class CaseTiming:
    """End-to-end figures of one model, setting and variant."""

    model: str
    setting: str
    variant: str
    network_calls: int
    seconds_per_case: float
    peak_rss_gib: float | None
    peak_cuda_gib: float | None
    measured: bool
    ratio_to_fp32: float = float("nan")
    cases: int = 0
    boxes: list[list[int]] = field(default_factory=list)


def run_end_to_end(
    model_name: str, base: Inpainter, data: Path, setting: str, variant: str, device: torch.device, warmup: bool,
    repeats: int = 1,
) -> CaseTiming:
    """Inpaint every case of ``data`` ``repeats`` times with one setting and variant.

    Returns the median seconds per case over the repeats and the peak memory over all of them.
    """
    sampler, steps = parse_setting(setting)
    inpainter = base.with_options(sampler=sampler, steps=steps, **variant_options(variant))
    calls = network_calls(inpainter, steps)
    with tempfile.TemporaryDirectory() as tmp:
        if warmup:  # the first case once more, not counted (CUDA context, allocator, compiled kernels)
            inpainter.infer_batch(data, Path(tmp) / "warm", log_dir=Path(tmp) / "warm-logs", progress=False, end=1)
        rss_ok = reset_peak_rss()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        per_case = []
        for k in range(repeats):
            synchronize(device)
            start = time.perf_counter()
            summary = inpainter.infer_batch(data, Path(tmp) / f"pred{k}", log_dir=Path(tmp) / f"logs{k}",
                                            progress=False)
            synchronize(device)
            per_case.append((time.perf_counter() - start) / max(1, len(summary.records)))
            if summary.fallbacks or summary.failed:
                raise SystemExit(f"{model_name} {setting} {variant}: {summary.line()}")
    cases = len(summary.records)
    return CaseTiming(
        model_name, setting, variant, calls, statistics.median(per_case),
        peak_rss_gib() if rss_ok else None,
        torch.cuda.max_memory_allocated(device) / KIB**3 if device.type == "cuda" else None,
        measured=True, cases=cases, boxes=[list(b.size) for b in inpainter.last_crop_boxes],
    )


def extrapolate(
    rows: list[CaseTiming], model_name: str, setting: str, variant: str, calls: int, seconds_per_call: float
) -> CaseTiming | None:
    """Seconds per case of an unmeasured setting: the measured fixed cost plus ``calls`` x ``seconds_per_call``.

    The fixed cost (reading, preparing, restoring, writing) is the median over the measured settings of
    ``seconds - calls * seconds_per_call``; ``seconds_per_call`` comes from the per-call timing (network plus the
    pipeline's own work), which is steadier than differences of whole runs.
    """
    points = [(r.network_calls, r.seconds_per_case) for r in rows
              if r.model == model_name and r.variant == variant and r.measured]
    if not points:
        return None
    fixed = statistics.median(sec - c * seconds_per_call for c, sec in points)
    return CaseTiming(model_name, setting, variant, calls, fixed + calls * seconds_per_call, None, None, measured=False)


def seconds_per_step(calls: list[CallTiming], model_name: str, variant: str) -> float | None:
    """Network call plus pipeline work per step on the crop grid (summed over the case's boxes)."""
    crop = [c for c in calls if c.model == model_name and c.grid == "crop"]
    network = [c.median_s for c in crop if c.variant == variant]
    work = [c.median_s for c in crop if c.variant == PIPELINE_VARIANT]
    if not network:
        return None
    return sum(network) + sum(work)


# --------------------------------------------------------------------------- report


def markdown(info: dict[str, Any], calls: list[CallTiming], cases: list[CaseTiming]) -> str:
    """The two tables of ``docs/performance.md``."""
    lines = [f"Device: {info['device_name']}; torch {info['torch']}; {info['threads']} CPU thread(s).", "",
             "| model | grid | sampled image shape | variant | s per call | vs fp32 | first call (s) |",
             "|---|---|---|---|---|---|---|"]
    for c in calls:
        ratio = f"{c.ratio_to_fp32:.2f}" if c.ratio_to_fp32 == c.ratio_to_fp32 else "–"
        first = f"{c.first_call_s:.1f}" if c.first_call_s == c.first_call_s else "–"
        lines.append(f"| {c.model} | {c.grid} | {'×'.join(map(str, c.shape))} | {c.variant} | {c.median_s:.3f} | "
                     f"{ratio} | {first} |")
    lines += ["", "| model | setting | network calls | variant | s per case | vs fp32 | peak RSS (GiB) | "
              "peak CUDA (GiB) | how |", "|---|---|---|---|---|---|---|---|---|"]
    for r in cases:
        rss = f"{r.peak_rss_gib:.2f}" if r.peak_rss_gib is not None else "–"
        cuda = f"{r.peak_cuda_gib:.2f}" if r.peak_cuda_gib is not None else "–"
        ratio = f"{r.ratio_to_fp32:.2f}" if r.ratio_to_fp32 == r.ratio_to_fp32 else "–"
        how = "measured" if r.measured else "extrapolated"
        lines.append(f"| {r.model} | {r.setting} | {r.network_calls} | {r.variant} | {r.seconds_per_case:.2f} | "
                     f"{ratio} | {rss} | {cuda} | {how} |")
    return "\n".join(lines)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEMO_DATA, help="challenge-layout cases (default: demo/)")
    parser.add_argument("-m", "--checkpoint", type=Path, default=None, help="checkpoint of the 'bundled' model")
    parser.add_argument("--models", nargs="+", default=["bundled", "full"], choices=["bundled", "full"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--variants", nargs="+", default=None,
                        help="per-call variants (default: fp32 channels_last bf16 on CPU; on CUDA also "
                             "bf16+channels_last and bf16+channels_last+compile)")
    parser.add_argument("--grids", nargs="+", default=None, choices=["crop", "whole"],
                        help="grids for per-call timing (default: crop on CPU, crop and whole on CUDA)")
    parser.add_argument("--rounds", type=int, default=None, help="timed calls per variant (default 3 CPU, 20 CUDA)")
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), help="sampler:steps end to end")
    parser.add_argument("--e2e", nargs="+", default=None,
                        help="variants run end to end (default: fp32 and bf16 on CPU, fp32 and bf16+channels_last on CUDA)")
    parser.add_argument("--max-measured-calls", type=int, default=None,
                        help="settings with more network calls are extrapolated (default 10 on CPU, 1000 on CUDA)")
    parser.add_argument("--repeats", type=int, default=3, help="end-to-end runs per setting; the median counts")
    parser.add_argument("--warmup", action=argparse.BooleanOptionalAction, default=None,
                        help="run the first case once before timing end to end (default: on CUDA only)")
    parser.add_argument("--no-crop", action="store_true", help="end to end: sample the whole volume, not a crop")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the tables here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    variants = args.variants or (["fp32", "channels_last", "bf16", "bf16+channels_last", "bf16+channels_last+compile"]
                                 if cuda else ["fp32", "channels_last", "bf16"])
    if REFERENCE_VARIANT not in variants:
        variants = [REFERENCE_VARIANT, *variants]
    grids = args.grids or (["crop", "whole"] if cuda else ["crop"])
    rounds = args.rounds or (20 if cuda else 3)
    e2e_variants = args.e2e or (["fp32", "bf16+channels_last"] if cuda else ["fp32", "bf16"])
    max_calls = args.max_measured_calls or (1000 if cuda else 10)
    info = {"device": str(device), "device_name": device_name(device), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "data": str(args.data)}
    print(f"{info['device_name']}, torch {info['torch']}, {info['threads']} thread(s)", flush=True)

    call_rows: list[CallTiming] = []
    case_rows: list[CaseTiming] = []
    with tempfile.TemporaryDirectory() as workdir:
        for model_name in args.models:
            ckpt = model_checkpoint(model_name, args.checkpoint, Path(workdir))
            base = Inpainter.from_checkpoint(ckpt, device=device, precision="float32", channels_last=False,
                                             crop=False if args.no_crop else None)
            if base.model is None or base.config is None:
                raise SystemExit(f"{model_name}: not a diffusion model")
            info[f"{model_name}_parameters"] = count_parameters(base.model)
            case_dir = next(p for p in sorted(args.data.iterdir()) if p.is_dir())
            for grid, shapes in sampled_grids(base, case_dir, grids).items():
                for shape in shapes:
                    rows = time_calls(model_name, grid, shape, base.model, base.config, variants, device, rounds)
                    rows.append(time_pipeline_work(model_name, grid, shape, base.config, device, PIPELINE_STEPS))
                    call_rows += rows
                    for row in rows:
                        print(f"  {model_name} {grid} {row.shape} {row.variant}: {row.median_s:.3f} s "
                              f"({row.ratio_to_fp32:.2f} x fp32)", flush=True)
            for variant in e2e_variants:
                for setting in args.settings:
                    calls = network_calls(base, parse_setting(setting)[1])
                    if calls > max_calls:
                        step = seconds_per_step(call_rows, model_name, variant)
                        row = extrapolate(case_rows, model_name, setting, variant, calls, step) if step else None
                        if row is None:
                            continue
                    else:
                        row = run_end_to_end(model_name, base, args.data, setting, variant, device,
                                             warmup=args.warmup if args.warmup is not None else cuda,
                                             repeats=args.repeats)
                    case_rows.append(row)
                    print(f"  {model_name} {setting} {variant}: {row.seconds_per_case:.2f} s/case "
                          f"({'measured' if row.measured else 'extrapolated'})", flush=True)
            for row in case_rows:
                ref = next((r for r in case_rows if r.model == row.model and r.setting == row.setting
                            and r.variant == REFERENCE_VARIANT), None)
                if ref is not None:
                    row.ratio_to_fp32 = row.seconds_per_case / ref.seconds_per_case
            del base
            if cuda:
                torch.cuda.empty_cache()
    table = markdown(info, call_rows, case_rows)
    print(table)
    if args.json is not None:
        args.json.write_text(json.dumps({"info": info, "calls": [asdict(r) for r in call_rows],
                                         "cases": [asdict(r) for r in case_rows]}, indent=2))
    if args.markdown is not None:
        args.markdown.write_text(table + "\n")


if __name__ == "__main__":
    main()
