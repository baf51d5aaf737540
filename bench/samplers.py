"""Network calls and seconds per case for each sampler, on a random-weight U-Net of the published size.

The model is ``WDMUNet(UNetConfig())`` (64 channels, mult (1,2,2,4,4,4), 2 residual blocks, 16 input channels: the
AKH model) with random weights. The default case is a 240 x 240 x 155 volume padded to 256^3 (wavelet grid 128^3)
with an ellipsoidal mask; ``--size S`` uses an S^3 volume instead (S a multiple of 64, e.g. 128 for quick runs).

Two ways to get the seconds per case:

* ``estimate`` (default): time ``--time-calls`` network forwards and, separately, the per-step pipeline work
  (DWT/IDWT, paste, sampler arithmetic) with a zero-cost stand-in network over ``--overhead-steps`` steps; then
  ``seconds = calls * (forward + per-step work)``. Labelled ``extrapolated``. This is the only practical way on a CPU,
  where one full-size forward takes tens of seconds.
* ``--full``: run the whole pipeline for every case and report the measured wall time (GPU).

Run ``python bench/samplers.py [--device cuda] [--size 128] [--steps 10 50] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from wdm_inpaint.config import UNetConfig, WDMConfig
from wdm_inpaint.models.unet import WDMUNet, count_parameters
from wdm_inpaint.pipeline import InpaintingPipeline, PipelineConfig
from wdm_inpaint.samplers import SamplerConfig

BRATS_SHAPE = (240, 240, 155)
"""BraTS volume shape; padded to the model grid for the default ``--size 256``."""

BRATS_GRID = 256
"""Model grid of the published model (240 x 240 x 155 padded to 256^3)."""

MASK_RADII_FRACTION = (0.12, 0.10, 0.10)
"""Semi-axes of the ellipsoidal mask as a fraction of the grid size (about 50k voxels at 256^3)."""

SIZE_MULTIPLE = UNetConfig().image_multiple
"""Image sizes must be multiples of this for the published U-Net."""


@dataclass
class Case:
    """One benchmark row."""

    sampler: str
    steps: int
    num_samples: int
    model_calls: int
    seconds: float
    seconds_per_call: float
    extrapolated: bool
    device: str
    size: int


class PassThrough(nn.Module):
    """Zero-cost stand-in network (returns the noisy wavelets) to time the pipeline's own per-step work."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x[:, :8] + self.anchor


def make_case(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth random volume in [-1, 1] (BraTS shape padded with -1 at 256) and an ellipsoidal mask."""
    rng = np.random.default_rng(0)
    inner = BRATS_SHAPE if size == BRATS_GRID else (size, size, size)
    body = np.tanh(rng.normal(size=inner)).astype(np.float32) * 0.5
    image = np.full((size, size, size), -1.0, dtype=np.float32)
    offsets = [(size - n) // 2 for n in inner]
    image[tuple(slice(o, o + n) for o, n in zip(offsets, inner))] = body
    grids = np.ogrid[tuple(slice(0, size) for _ in range(3))]
    radii = [f * size for f in MASK_RADII_FRACTION]
    mask = sum(((g - size / 2) / r) ** 2 for g, r in zip(grids, radii)) <= 1.0
    image[mask] = -1.0
    return torch.from_numpy(image)[None, None], torch.from_numpy(mask.astype(np.float32))[None, None]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(model: nn.Module, size: int, device: torch.device, calls: int, warmup: int, autocast: bool) -> float:
    """Median seconds of one full-size network forward."""
    grid = size // 2
    x = torch.randn(1, model.config.in_channels, grid, grid, grid, device=device)
    t = torch.full((1,), 500, dtype=torch.long, device=device)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if autocast and device.type == "cuda" else torch.no_grad()
    times = []
    with torch.inference_mode(), ctx:
        for i in range(warmup + calls):
            synchronize(device)
            start = time.perf_counter()
            model(x, t)
            synchronize(device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_overhead(config: WDMConfig, sampler: SamplerConfig, image, mask, device, steps: int) -> float:
    """Seconds per step of the pipeline without the network (stand-in model)."""
    cfg = SamplerConfig(**{**sampler.__dict__, "num_steps": steps})
    pipe = InpaintingPipeline(PassThrough().to(device), config, PipelineConfig(sampler=cfg, progress=False))
    pipe(image, mask)  # warm-up (allocations)
    synchronize(device)
    start = time.perf_counter()
    pipe(image, mask)
    synchronize(device)
    return (time.perf_counter() - start) / steps


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--size", type=int, default=BRATS_GRID, help="image grid edge (default 256 = BraTS padded)")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 50], help="steps per case for the fast samplers")
    parser.add_argument(
        "--samplers", nargs="+", default=["ddpm", "ddim", "dpmpp_2m"], choices=["ddpm", "ddim", "dpmpp_2m"]
    )
    parser.add_argument("--num-samples", type=int, default=1, help="samples averaged per case")
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the reference case (5000 ancestral steps, T=5000)"
    )
    parser.add_argument("--time-calls", type=int, default=None, help="forwards timed (default 2 on cpu, 10 on cuda)")
    parser.add_argument("--overhead-steps", type=int, default=3, help="stand-in steps to time the pipeline's work")
    parser.add_argument("--full", action="store_true", help="run every case end to end instead of extrapolating")
    parser.add_argument("--autocast", action="store_true", help="bf16 autocast (cuda)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.size < SIZE_MULTIPLE or args.size % SIZE_MULTIPLE:
        parser.error(f"--size must be a multiple of {SIZE_MULTIPLE}")
    return args


def main() -> None:
    """Print the table (or JSON)."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = WDMConfig()
    model = WDMUNet(config.unet).to(device).eval()
    image, mask = make_case(args.size)
    image, mask = image.to(device), mask.to(device)
    calls_timed = args.time_calls or (10 if device.type == "cuda" else 2)
    warmup = 2 if device.type == "cuda" else 0

    cases: list[tuple[str, SamplerConfig, PipelineConfig]] = []
    for name in args.samplers:
        for steps in args.steps:
            sampler = SamplerConfig(name=name, num_steps=steps)  # type: ignore[arg-type]
            cases.append((name, sampler, PipelineConfig(sampler=sampler, num_samples=args.num_samples, progress=False)))
    if not args.no_reference:
        ref = PipelineConfig.preset("faking_it_submission", progress=False)
        cases.append(("ddpm (reference, T=5000)", ref.sampler, ref))

    rows: list[Case] = []
    forward = None if args.full else time_forward(model, args.size, device, calls_timed, warmup, args.autocast)
    overhead: dict[str, float] = {}
    for label, sampler, pipe_config in cases:
        pipe_config = PipelineConfig(**{**pipe_config.__dict__, "autocast": args.autocast})
        if args.full:
            pipe = InpaintingPipeline(model, config, pipe_config)
            synchronize(device)
            start = time.perf_counter()
            pipe(image, mask)
            synchronize(device)
            seconds, calls = time.perf_counter() - start, pipe.last_run.model_calls
        else:
            pipe = InpaintingPipeline(PassThrough(), config, pipe_config)
            calls = pipe.expected_model_calls()
            if sampler.name not in overhead:
                overhead[sampler.name] = time_overhead(config, sampler, image, mask, device, args.overhead_steps)
            seconds = calls * (forward + overhead[sampler.name])
        rows.append(
            Case(label, calls // pipe_config.num_samples, pipe_config.num_samples, calls, seconds, seconds / calls,
                 not args.full, str(device), args.size)
        )

    if args.json:
        print(json.dumps({"parameters": count_parameters(model), "forward_seconds": forward,
                          "overhead_seconds_per_step": overhead, "cases": [asdict(r) for r in rows]}, indent=2))
        return
    print(f"WDMUNet {count_parameters(model):,} parameters, grid {args.size}^3 (wavelets {args.size // 2}^3), {device}")
    if forward is not None:
        print(f"one forward: {forward:.3f} s (median of {calls_timed}); pipeline work per step: "
              + ", ".join(f"{k} {v:.3f} s" for k, v in overhead.items()))
    print(f"{'sampler':<26}{'steps':>7}{'K':>4}{'calls':>8}{'s/case':>12}{'s/call':>9}  how")
    for r in rows:
        how = "extrapolated" if r.extrapolated else "measured"
        print(
            f"{r.sampler:<26}{r.steps:>7}{r.num_samples:>4}{r.model_calls:>8}{r.seconds:>12.1f}"
            f"{r.seconds_per_call:>9.3f}  {how}"
        )


if __name__ == "__main__":
    main()
