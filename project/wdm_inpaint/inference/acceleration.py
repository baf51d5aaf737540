"""Fast paths of inference: bfloat16 autocast, channels-last 3-D memory format and ``torch.compile``.

Each is a switch of :class:`AccelerationConfig` with an ``auto`` default resolved per device by
:func:`resolve_acceleration`, from measurements (``docs/performance.md``):

* bf16 autocast: on CUDA, and on CPUs that compute bfloat16 natively (AVX-512 BF16 or AMX), where it halved the
  time per call at the same quality; float32 on other CPUs, which would emulate it;
* channels-last 3-D: on CUDA only (on CPU it was slower);
* ``torch.compile``: opt-in. It costs a compilation per new crop size (tens of seconds to minutes), which pays
  only over many cases.

The model stays a plain ``nn.Module``: :func:`prepare_model` returns the module to call (the same module in
channels-last layout, or its compiled wrapper); the pipeline applies autocast and the input memory format.
Correctness of every path against plain float32 is covered by ``tests/test_acceleration.py``; the speed-ups are
measured by ``bench/speed.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

logger = logging.getLogger(__name__)

Precision = Literal["auto", "float32", "bfloat16"]
PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16")
"""Values of ``--precision``."""

AUTO_FAST_DEVICE_TYPES = ("cuda",)
"""Device types on which ``auto`` turns bf16 autocast and channels-last on."""

NATIVE_BF16_CPU_PROBES = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
"""``torch.cpu`` functions telling whether the CPU computes bfloat16 natively."""


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX tiles)."""
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in NATIVE_BF16_CPU_PROBES)


@dataclass(frozen=True)
class AccelerationConfig:
    """How the network runs.

    Attributes:
        precision: ``bfloat16`` autocast of the network (weights stay float32; the sampler's arithmetic, the
            wavelet transforms and the known-region paste stay float32), ``float32``, or ``auto`` (bfloat16 on
            CUDA and on CPUs with native bfloat16, float32 elsewhere).
        channels_last: channels-last 3-D memory format for the weights and the network input; ``None``: on CUDA.
        compile: wrap the network in ``torch.compile``.
        compile_mode: ``torch.compile`` mode (``None``: its default; ``max-autotune`` searches kernels longer).
    """

    precision: Precision = "auto"
    channels_last: bool | None = None
    compile: bool = False
    compile_mode: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; choose one of {list(PRECISIONS)}")


@dataclass(frozen=True)
class ResolvedAcceleration:
    """The concrete switches of an :class:`AccelerationConfig` on one device."""

    autocast: bool
    channels_last: bool
    compile: bool
    compile_mode: str | None = None

    def describe(self) -> str:
        """Short label, e.g. ``bf16+channels_last+compile`` or ``fp32``."""
        parts = ["bf16" if self.autocast else "fp32"]
        if self.channels_last:
            parts.append("channels_last")
        if self.compile:
            parts.append("compile" if self.compile_mode is None else f"compile:{self.compile_mode}")
        return "+".join(parts)


def resolve_acceleration(config: AccelerationConfig, device: torch.device) -> ResolvedAcceleration:
    """Resolve the ``auto`` values of ``config`` for ``device``."""
    fast = device.type in AUTO_FAST_DEVICE_TYPES
    if config.precision == "auto":
        autocast = fast or (device.type == "cpu" and cpu_has_native_bf16())
    else:
        autocast = config.precision == "bfloat16"
    channels_last = fast if config.channels_last is None else config.channels_last
    return ResolvedAcceleration(autocast, channels_last, config.compile, config.compile_mode)


def prepare_model(model: nn.Module, accel: ResolvedAcceleration, device: torch.device) -> nn.Module:
    """Move ``model`` to ``device`` in eval mode with the memory format of ``accel``; compile it if asked.

    Args:
        model: the denoiser (changed in place: device, eval mode, memory format).
        accel: resolved switches.
        device: target device.

    Returns:
        The module to call: ``model`` itself, or its ``torch.compile`` wrapper (sharing its parameters).
    """
    memory_format = torch.channels_last_3d if accel.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format).eval()
    if not accel.compile:
        return model
    logger.info("compiling the network with torch.compile (mode %s); the first call of each shape is slow",
                accel.compile_mode or "default")
    return torch.compile(model, mode=accel.compile_mode)  # type: ignore[return-value]


def input_memory_format(accel: ResolvedAcceleration) -> torch.memory_format:
    """Memory format of the network input under ``accel``."""
    return torch.channels_last_3d if accel.channels_last else torch.contiguous_format


__all__ = [
    "AUTO_FAST_DEVICE_TYPES",
    "NATIVE_BF16_CPU_PROBES",
    "PRECISIONS",
    "AccelerationConfig",
    "ResolvedAcceleration",
    "cpu_has_native_bf16",
    "input_memory_format",
    "prepare_model",
    "resolve_acceleration",
]
