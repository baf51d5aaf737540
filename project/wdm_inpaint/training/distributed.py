"""Multi-process (DDP) set-up from the environment variables ``torchrun`` exports.

``torchrun --nproc_per_node N -m wdm_inpaint.cli.main train -c CONFIG.yaml`` starts N processes with ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`init_distributed` joins them with
NCCL on GPUs and gloo on CPU. Several machines work the same way (``torchrun --nnodes M --node_rank K
--rdzv-endpoint HOST:PORT ...``). Only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes logs and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else CPU; ``cuda`` -> ``cuda:<local_rank>``.

    Raises:
        RuntimeError: CUDA was requested but is not available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"loop.device={name!r} but CUDA is not available; use loop.device=cpu")
        if name == "cuda":
            name = f"cuda:{local_rank}"
    return torch.device(name)


def init_distributed(device_name: str) -> tuple[DistInfo, torch.device]:
    """Join the process group when ``WORLD_SIZE > 1`` (else a single-process no-op).

    Returns:
        This process' :class:`DistInfo` and its device.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(), resolve_device(device_name)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    logger.info("process %d of %d (%s, device %s)", rank, world_size, backend, device)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size), device


def cleanup_distributed() -> None:
    """Leave the process group (if joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_processes(values: dict[str, float], info: DistInfo, device: torch.device) -> dict[str, float]:
    """Average scalar metrics over all processes (identity in a single process)."""
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= info.world_size
    return dict(zip(keys, t.tolist(), strict=True))


def barrier(info: DistInfo) -> None:
    """Wait for every process (no-op in a single process)."""
    if info.enabled:
        dist.barrier()


def broadcast_int(value: int, info: DistInfo, device: torch.device) -> int:
    """Rank 0's ``value`` on every process."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return int(t.item())


def move_to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to_device(v, device) for v in batch)
    return batch


__all__ = [
    "DistInfo",
    "barrier",
    "broadcast_int",
    "cleanup_distributed",
    "init_distributed",
    "mean_over_processes",
    "move_to_device",
    "resolve_device",
]
