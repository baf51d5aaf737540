"""Fast paths (bf16 autocast, channels-last, torch.compile) against the plain float32 path, within stated tolerances.

Tolerances, on a tiny random-weight model and a synthetic case (native intensities up to ~900):

* channels-last (float32): the same arithmetic in another memory layout, max difference <= 1e-4 of the range;
* ``torch.compile`` (float32): fused kernels reorder sums, max difference <= 1e-4 of the range;
* bfloat16 autocast: 8-bit mantissa through every step, mean difference <= 1 % and max <= 5 % of the range
  inside the mask, and never bit-identical to float32 (autocast really ran).

On every path the voxels outside the mask are bit-identical to the input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from _inference_helpers import LPS_AFFINE, brain_volume, make_tiny_checkpoint, region_mask
from test_pipeline import model_config, quiet
from wdm_inpaint.inference.acceleration import AccelerationConfig, prepare_model, resolve_acceleration
from wdm_inpaint.inference.inpainter import Inpainter
from wdm_inpaint.models.unet import WDMUNet
from wdm_inpaint.pipeline import InpaintingPipeline
from wdm_inpaint.samplers import SamplerConfig

STEPS = 4
EXACT_LAYOUT_TOL = 1e-4
"""Max difference, as a fraction of the in-mask range, for float32 fast paths (layout, compile)."""
BF16_MEAN_TOL = 0.01
"""Mean in-mask difference of bf16 autocast, as a fraction of the in-mask range."""
BF16_MAX_TOL = 0.05
"""Max in-mask difference of bf16 autocast, as a fraction of the in-mask range."""


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("accel")
    ckpt = make_tiny_checkpoint(root / "tiny.pt", mode="akh", crop=True)
    t1n = brain_volume()
    mask = region_mask().astype(bool)
    voided = np.where(mask, 0.0, t1n).astype(np.float32)
    plain = infer(ckpt, voided, mask, precision="float32", channels_last=False)
    return {"ckpt": ckpt, "voided": voided, "mask": mask, "plain": plain}


def infer(ckpt: Path, voided: np.ndarray, mask: np.ndarray, **options: object) -> np.ndarray:
    inpainter = Inpainter.from_checkpoint(ckpt, device="cpu", steps=STEPS, **options)
    return inpainter.inpaint_array(voided, mask, LPS_AFFINE, seed=11)


def differences(out: np.ndarray, case: dict[str, object]) -> tuple[float, float]:
    """(mean, max) absolute in-mask difference to the plain path, as fractions of the in-mask range."""
    mask, plain, voided = case["mask"], case["plain"], case["voided"]
    assert np.array_equal(out[~mask], voided[~mask])  # known voxels are sacred on every path
    diff = np.abs(out[mask].astype(np.float64) - plain[mask])
    scale = float(np.ptp(plain[mask]))
    return float(diff.mean()) / scale, float(diff.max()) / scale


def test_auto_resolves_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from wdm_inpaint.inference import acceleration

    auto = AccelerationConfig()
    cuda = resolve_acceleration(auto, torch.device("cuda"))
    assert (cuda.autocast, cuda.channels_last, cuda.compile) == (True, True, False)
    for native in (False, True):
        monkeypatch.setattr(acceleration, "cpu_has_native_bf16", lambda native=native: native)
        cpu = resolve_acceleration(auto, torch.device("cpu"))
        assert (cpu.autocast, cpu.channels_last, cpu.compile) == (native, False, False)
    forced = resolve_acceleration(AccelerationConfig(precision="bfloat16", channels_last=True), torch.device("cpu"))
    assert forced.describe() == "bf16+channels_last"
    off = resolve_acceleration(AccelerationConfig(precision="float32", channels_last=False), torch.device("cuda"))
    assert off.describe() == "fp32"
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        AccelerationConfig(precision="fp8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown precision"):
        Inpainter.from_checkpoint(None, sampler="harmonic", precision="half")


def test_prepare_model_sets_layout_and_shares_weights() -> None:
    model = WDMUNet(model_config("akh", tiny_unet=True).unet)
    accel = resolve_acceleration(AccelerationConfig(channels_last=True), torch.device("cpu"))
    prepared = prepare_model(model, accel, torch.device("cpu"))
    assert prepared is model and not model.training
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv3d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    back = prepare_model(model, resolve_acceleration(AccelerationConfig(), torch.device("cpu")), torch.device("cpu"))
    assert back.stem.weight.is_contiguous()  # type: ignore[union-attr]


class LayoutRecorder(nn.Module):
    """x0 = 0.5 x noisy wavelets; records whether each input was channels-last and the dtype of a matmul."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.eye(8))
        self.channels_last: list[bool] = []
        self.compute_dtypes: list[torch.dtype] = []

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.channels_last.append(x.is_contiguous(memory_format=torch.channels_last_3d))
        mixed = torch.einsum("bc...,cd->bd...", x[:, :8], self.weight)
        self.compute_dtypes.append(mixed.dtype)
        return 0.5 * mixed


def test_pipeline_hands_the_network_its_layout_and_autocast() -> None:
    image = torch.rand(1, 1, 8, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    mask = torch.zeros_like(image)
    mask[..., 2:6, 1:5, 3:8] = 1
    image = torch.where(mask > 0, -1.0, image)
    cfg = model_config("akh")
    sampler = SamplerConfig(name="ddim", num_steps=3)
    plain_model, fast_model = LayoutRecorder(), LayoutRecorder()
    plain = InpaintingPipeline(plain_model, cfg, quiet(sampler=sampler))(image, mask)
    fast = InpaintingPipeline(fast_model, cfg, quiet(sampler=sampler, autocast=True, channels_last=True))(image, mask)
    assert plain_model.channels_last == [False] * 3 and fast_model.channels_last == [True] * 3
    assert set(plain_model.compute_dtypes) == {torch.float32}
    assert set(fast_model.compute_dtypes) == {torch.bfloat16}
    assert fast.dtype == torch.float32 and fast.is_contiguous()
    assert torch.equal(fast[mask == 0], image[mask == 0])
    assert not torch.equal(fast, plain)
    torch.testing.assert_close(fast, plain, atol=0.05, rtol=0)


def test_channels_last_matches_plain(case: dict[str, object]) -> None:
    out = infer(case["ckpt"], case["voided"], case["mask"], precision="float32", channels_last=True)  # type: ignore[arg-type]
    _, worst = differences(out, case)
    assert worst <= EXACT_LAYOUT_TOL


def test_bf16_autocast_is_close_to_plain(case: dict[str, object]) -> None:
    out = infer(case["ckpt"], case["voided"], case["mask"], precision="bfloat16")  # type: ignore[arg-type]
    mean, worst = differences(out, case)
    assert 0 < mean <= BF16_MEAN_TOL
    assert worst <= BF16_MAX_TOL


@pytest.mark.slow
def test_compiled_matches_plain(case: dict[str, object]) -> None:
    out = infer(case["ckpt"], case["voided"], case["mask"], precision="float32", compile=True)  # type: ignore[arg-type]
    _, worst = differences(out, case)
    assert worst <= EXACT_LAYOUT_TOL


@pytest.mark.slow
def test_all_fast_paths_together_are_close_to_plain(case: dict[str, object]) -> None:
    out = infer(case["ckpt"], case["voided"], case["mask"],  # type: ignore[arg-type]
                precision="bfloat16", channels_last=True, compile=True)
    mean, worst = differences(out, case)
    assert 0 < mean <= BF16_MEAN_TOL
    assert worst <= BF16_MAX_TOL


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_auto_fast_path_matches_cuda_float32(case: dict[str, object]) -> None:
    voided, mask = case["voided"], case["mask"]
    plain = Inpainter.from_checkpoint(case["ckpt"], device="cuda", steps=STEPS, precision="float32",  # type: ignore[arg-type]
                                      channels_last=False)
    fast = Inpainter.from_checkpoint(case["ckpt"], device="cuda", steps=STEPS)  # type: ignore[arg-type]
    assert plain.acceleration.describe() == "fp32" and fast.acceleration.describe() == "bf16+channels_last"
    reference = plain.inpaint_array(voided, mask, LPS_AFFINE, seed=11)  # type: ignore[arg-type]
    out = fast.inpaint_array(voided, mask, LPS_AFFINE, seed=11)  # type: ignore[arg-type]
    mean, worst = differences(out, {**case, "plain": reference})
    assert 0 < mean <= BF16_MEAN_TOL and worst <= BF16_MAX_TOL
