"""3D Haar DWT / IDWT: upstream band order and scaling, PyWavelets agreement, round trip, errors, autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pywt
import torch
from conftest import load_fixture

from wdm_inpaint.config import WaveletConfig
from wdm_inpaint.wavelet import BAND_ORDER, WaveletCodec, dwt3d, idwt3d


def test_dwt_matches_upstream_bands_and_reconstruction(upstream_dir):
    fx = load_fixture(upstream_dir, "dwt_haar.pt")
    assert list(fx["band_order"]) == list(BAND_ORDER)
    bands = dwt3d(fx["volume"])
    assert bands.shape == fx["bands"].shape == (1, 8, 3, 5, 4)
    torch.testing.assert_close(bands, fx["bands"], rtol=0, atol=1e-6)
    torch.testing.assert_close(idwt3d(fx["bands"]), fx["reconstruction"], rtol=0, atol=1e-6)


def _pywt_bands(volume: np.ndarray) -> np.ndarray:
    """Bands of one (D, H, W) volume from PyWavelets, in (D, H, W) letter order with H = detail."""
    coeffs = pywt.dwtn(volume, "haar", axes=(0, 1, 2))
    keys = ["".join("a" if letter == "L" else "d" for letter in name) for name in BAND_ORDER]
    return np.stack([coeffs[k] for k in keys])


@pytest.mark.parametrize("shape", [(4, 6, 8), (8, 6, 4), (12, 4, 2), (2, 2, 2), (6, 10, 16)])
def test_dwt_matches_pywavelets_on_non_cubic_volumes(shape):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, *shape, generator=gen, dtype=torch.float64)
    bands = dwt3d(x)
    assert bands.shape == (2, 24, *(s // 2 for s in shape))
    for b in range(2):
        for c in range(3):
            expected = _pywt_bands(x[b, c].numpy())
            np.testing.assert_allclose(bands[b, 8 * c : 8 * c + 8].numpy(), expected, rtol=0, atol=1e-12)
            # pywt's inverse of our bands reproduces the volume too
            keys = ["".join("a" if ch == "L" else "d" for ch in name) for name in BAND_ORDER]
            coeffs = {k: bands[b, 8 * c + i].numpy() for i, k in enumerate(keys)}
            np.testing.assert_allclose(pywt.idwtn(coeffs, "haar", axes=(0, 1, 2)), x[b, c].numpy(), atol=1e-12)


def test_high_band_is_first_minus_second_along_w():
    x = torch.zeros(1, 1, 2, 2, 2)
    x[..., 0] = 1.0  # first voxel along W set, second zero
    bands = dwt3d(x)[0, :, 0, 0, 0]
    # LLH = sum over the block of (x[w0] - x[w1]) / (2 sqrt 2) = 4 / (2 sqrt 2)
    assert bands[BAND_ORDER.index("LLH")].item() == pytest.approx(4 / (2 * math.sqrt(2)))
    assert bands[BAND_ORDER.index("LLL")].item() == pytest.approx(4 / (2 * math.sqrt(2)))
    for name in ("LHL", "HLL", "LHH", "HLH", "HHL", "HHH"):
        assert bands[BAND_ORDER.index(name)].item() == pytest.approx(0.0, abs=1e-7)


def test_round_trip_and_orthonormality():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 6, 4, 10, generator=gen, dtype=torch.float64)
    y = dwt3d(x)
    torch.testing.assert_close(idwt3d(y), x, rtol=0, atol=1e-12)
    assert y.norm().item() == pytest.approx(x.norm().item(), rel=1e-12)  # energy preserved
    # the inverse is exact on arbitrary coefficients too (the transform is a bijection)
    z = torch.randn(1, 16, 2, 3, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(dwt3d(idwt3d(z)), z, rtol=0, atol=1e-12)


def test_white_noise_stays_white_with_unit_variance():
    gen = torch.Generator().manual_seed(2)
    bands = dwt3d(torch.randn(1, 1, 32, 32, 32, generator=gen))
    stds = bands[0].flatten(1).std(dim=1)
    assert torch.all((stds - 1).abs() < 0.05), stds


@pytest.mark.parametrize("shape", [(5, 4, 4), (4, 7, 4), (4, 4, 3)])
def test_odd_sizes_raise(shape):
    with pytest.raises(ValueError, match="even"):
        dwt3d(torch.zeros(1, 1, *shape))


def test_bad_ranks_and_channel_counts_raise():
    with pytest.raises(ValueError, match=r"\(B, C, D, H, W\)"):
        dwt3d(torch.zeros(1, 4, 4, 4))
    with pytest.raises(ValueError, match="8\\*C"):
        idwt3d(torch.zeros(1, 7, 2, 2, 2))


def test_autograd_gradcheck_float64():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 2, 2, 4, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(dwt3d, (x,))
    y = torch.randn(1, 8, 1, 2, 1, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(idwt3d, (y,))


def test_codec_scales_only_the_lll_band_of_every_channel():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2, 2, 4, 6, 4, generator=gen, dtype=torch.float64)
    codec = WaveletCodec(WaveletConfig(lll_scale=3.0))
    raw, packed = dwt3d(x), codec.encode(x)
    for c in range(2):
        torch.testing.assert_close(packed[:, 8 * c], raw[:, 8 * c] / 3.0, rtol=0, atol=1e-15)
        torch.testing.assert_close(packed[:, 8 * c + 1 : 8 * c + 8], raw[:, 8 * c + 1 : 8 * c + 8], rtol=0, atol=0)
    torch.testing.assert_close(codec.decode(packed), x, rtol=0, atol=1e-12)
    # a mask fully inside a block packs to 2*sqrt(2)/3 = 0.943 in LLL (upstream's mask condition)
    ones = WaveletCodec().encode(torch.ones(1, 1, 2, 2, 2))
    assert ones[0, 0].item() == pytest.approx(2 * math.sqrt(2) / 3)
    # the scale is a config value, not a constant
    five = WaveletCodec(WaveletConfig(lll_scale=5.0)).encode(x)
    torch.testing.assert_close(five[:, 0], raw[:, 0] / 5.0, rtol=0, atol=1e-15)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 2, 8, 6, 4, generator=gen)
    torch.testing.assert_close(dwt3d(x.cuda()).cpu(), dwt3d(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(idwt3d(dwt3d(x.cuda())).cpu(), x, rtol=0, atol=1e-6)
