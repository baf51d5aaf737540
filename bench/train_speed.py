"""Training speed and peak memory of a config's model (default: the full-size AKH recipe).

Runs ``--warmup`` untimed and ``--steps`` timed optimiser steps of the diffusion task (forward, loss, backward,
AdamW) on a random batch of the config's grid size, then prints steps per second and peak memory (CUDA:
``max_memory_allocated``; CPU: the process' peak resident set size). Examples::

    python bench/train_speed.py                                   # configs/akh_full.yaml, 256^3
    python bench/train_speed.py --size 128 --steps 3              # same network on a 128^3 grid
    python bench/train_speed.py --precision bf16 --gradient-checkpointing --device cuda
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

from wdm_inpaint.models.unet import count_parameters
from wdm_inpaint.training.config import TrainConfig, load_config
from wdm_inpaint.training.distributed import resolve_device
from wdm_inpaint.training.wdm_task import WDMTask

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "akh_full.yaml"
"""The benchmarked recipe unless ``--config`` names another."""

MASK_FRACTION = 0.25
"""Side of the cubic inpainting mask, as a fraction of the grid side (its position does not change the cost)."""

_KIB_PER_GIB = 1024**2


def random_batch(config: TrainConfig, size: tuple[int, int, int], device: torch.device) -> dict[str, torch.Tensor]:
    """Random image in [-1, 1] with a centred cubic healthy mask and an adjacent tumour mask."""
    g = torch.Generator().manual_seed(0)
    shape = (config.loop.batch_size, 1, *size)
    t1n = torch.rand(shape, generator=g) * 2 - 1
    healthy = torch.zeros(shape)
    tumour = torch.zeros(shape)
    lo = [s // 2 - int(s * MASK_FRACTION) // 2 for s in size]
    hi = [a + int(s * MASK_FRACTION) for a, s in zip(lo, size, strict=True)]
    healthy[..., lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = 1
    tumour[..., hi[0] : hi[0] + (hi[0] - lo[0]) // 2, lo[1] : hi[1], lo[2] : hi[2]] = 1
    return {"t1n": t1n.to(device), "mask_healthy": healthy.to(device), "mask_unhealthy": tumour.to(device)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="training config (default: %(default)s)")
    p.add_argument("--size", type=int, default=None, help="cubic grid side (default: the config's spatial_size)")
    p.add_argument("--steps", type=int, default=3, help="timed steps (default %(default)s)")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default %(default)s)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default=None, help="default: the config's")
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations (default off)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = p.parse_args(argv)

    config = load_config(TrainConfig, args.config)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    size = (args.size,) * 3 if args.size else tuple(config.model.preprocess.spatial_size)
    precision = args.precision or config.loop.precision
    torch.manual_seed(0)
    task = WDMTask(config.model, gradient_checkpointing=args.gradient_checkpointing)
    task.model.to(device).train()
    task.device = device
    task.autocast_dtype = torch.bfloat16 if precision == "bf16" else None
    optimizer = torch.optim.AdamW(task.model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    batch = random_batch(config, size, device)
    generator = torch.Generator(device=device).manual_seed(0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with task.autocast():
            loss = task.training_step(batch, generator)["loss"]
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return float(loss.detach())

    print(f"config {args.config.name}: mode {config.model.mode.name}, grid {size}, batch {config.loop.batch_size}, "
          f"{count_parameters(task.model) / 1e6:.1f} M parameters, device {device}, {precision}, "
          f"gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}, threads {torch.get_num_threads()}")
    for i in range(args.warmup):
        t0 = time.perf_counter()
        step()
        print(f"warm-up step {i + 1}: {time.perf_counter() - t0:.2f} s", flush=True)
    times = []
    for i in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        print(f"step {i + 1}: {times[-1]:.2f} s", flush=True)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 1024**3
        where = "GPU max_memory_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / _KIB_PER_GIB
        where = "CPU peak RSS"
    mean = sum(times) / max(1, len(times))
    print(f"steps/s: {1 / mean:.4f}  ({mean:.2f} s per step over {len(times)} steps)")
    print(f"peak memory: {peak:.2f} GiB ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
