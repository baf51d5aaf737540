"""Classical fills: harmonic (Laplace) and mean fill."""

from __future__ import annotations

import numpy as np
import pytest

from wdm_inpaint.fill import CLASSICAL_FILLS, classical_fill, harmonic_fill, mean_fill
from wdm_inpaint.fill.mean import MEAN_FILL_SHELL_WIDTH, shell_mean


def coordinates(shape):
    return np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")


def blob_mask(shape, seed=0):
    """An irregular interior mask: two overlapping boxes and a thin arm."""
    mask = np.zeros(shape, dtype=bool)
    mask[6:16, 5:14, 4:12] = True
    mask[12:20, 10:18, 8:15] = True
    mask[9, 3:22, 10] = True
    return mask


def test_harmonic_fill_reproduces_a_linear_ramp_inside_the_mask():
    shape = (26, 24, 20)
    x, y, z = coordinates(shape)
    ramp = 2.5 * x - 3.0 * y + 0.75 * z + 40.0
    mask = blob_mask(shape)
    image = np.where(mask, -1000.0, ramp)  # the values inside the mask must not matter
    out = harmonic_fill(image, mask)
    np.testing.assert_allclose(out[mask], ramp[mask], rtol=0, atol=1e-6)


def test_harmonic_fill_with_mask_on_the_volume_border_uses_zero_flux():
    shape = (20, 18, 16)
    x, y, z = coordinates(shape)
    # varies along y only, so it satisfies a zero-flux condition on the x and z faces the mask touches
    field = 4.0 * y + 7.0
    mask = np.zeros(shape, dtype=bool)
    mask[:, 5:12, 0:11] = True  # spans the whole x range and touches the z = 0 face
    mask[0:6, 13:16, 12:16] = True  # a corner block touching the x = 0 and z = end faces
    out = harmonic_fill(np.where(mask, 0.0, field), mask)
    np.testing.assert_allclose(out[mask], field[mask], rtol=0, atol=1e-6)
    # a field with a gradient across a touched face is not harmonic under zero flux, so it is not reproduced
    sloped = 4.0 * y - 1.5 * z
    assert np.abs(harmonic_fill(np.where(mask, 0.0, sloped), mask)[mask] - sloped[mask]).max() > 0.1


def test_harmonic_fill_satisfies_the_discrete_mean_value_property():
    rng = np.random.default_rng(7)
    shape = (24, 24, 20)
    image = rng.uniform(0, 1000, shape)
    mask = blob_mask(shape)
    out = harmonic_fill(image, mask)
    inner = np.argwhere(mask)
    neighbours = sum(out[tuple((inner + d).T)] for d in np.vstack([np.eye(3, dtype=int), -np.eye(3, dtype=int)]))
    np.testing.assert_allclose(out[mask], neighbours / 6.0, rtol=0, atol=1e-6)
    boundary = image[~mask]
    assert out[mask].min() >= boundary.min() and out[mask].max() <= boundary.max()  # maximum principle


@pytest.mark.parametrize("name", sorted(CLASSICAL_FILLS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_known_voxels_are_bit_identical(name, dtype):
    rng = np.random.default_rng(8)
    shape = (24, 22, 20)
    image = rng.normal(300, 200, shape).astype(dtype)
    mask = blob_mask(shape)
    out = classical_fill(name, image, mask)
    expected_dtype = dtype if np.issubdtype(dtype, np.floating) else np.float64
    assert out.dtype == expected_dtype and out.shape == image.shape
    assert np.array_equal(out[~mask], image[~mask].astype(expected_dtype))
    if np.issubdtype(dtype, np.floating):
        assert out[~mask].tobytes() == image[~mask].tobytes()
    assert np.all(np.isfinite(out[mask]))
    assert image is not out


def test_mean_fill_value_is_the_tissue_mean_of_the_shell():
    shape = (15, 15, 15)
    centre = np.array([7, 7, 7])
    distance = sum(np.abs(c - 7) for c in coordinates(shape))  # city-block distance to the centre
    image = np.full(shape, 1000.0)  # beyond the shell: must not count
    image[distance == 1] = 10.0  # 6 voxels
    image[distance == 2] = 4.0  # 18 voxels
    image[distance == 3] = 0.0  # 38 background voxels: not tissue
    image[tuple(centre)] = 555.0
    mask = distance == 0
    assert MEAN_FILL_SHELL_WIDTH == 3
    expected = (6 * 10.0 + 18 * 4.0) / (6 + 18)
    assert shell_mean(image, mask) == pytest.approx(expected, rel=1e-12)
    out = mean_fill(image, mask)
    assert out[tuple(centre)] == pytest.approx(expected, rel=1e-12)
    assert np.array_equal(out[~mask], image[~mask])


def test_mean_fill_falls_back_to_all_tissue_then_to_background():
    image = np.zeros((12, 12, 12))
    image[0, 0, 0:2] = [3.0, 5.0]  # far from the mask
    mask = np.zeros(image.shape, dtype=bool)
    mask[6:8, 6:8, 6:8] = True
    assert shell_mean(image, mask) == pytest.approx(4.0)
    assert shell_mean(np.zeros_like(image), mask) == 0.0


def test_edge_cases_empty_and_full_masks():
    rng = np.random.default_rng(9)
    image = rng.uniform(0, 1, (8, 8, 8)).astype(np.float32)
    empty = np.zeros(image.shape, dtype=bool)
    for name in CLASSICAL_FILLS:
        assert np.array_equal(classical_fill(name, image, empty), image)
    full = np.ones(image.shape, dtype=bool)
    assert np.all(harmonic_fill(image, full) == 0.0)
    assert np.all(mean_fill(image, full) == 0.0)


def test_invalid_inputs_raise():
    image = np.ones((8, 8, 8))
    mask = np.zeros((8, 8, 8), dtype=bool)
    mask[3:5, 3:5, 3:5] = True
    with pytest.raises(ValueError, match="unknown classical fill"):
        classical_fill("bicubic", image, mask)
    with pytest.raises(ValueError, match="shape"):
        harmonic_fill(image, mask[:-1])
    with pytest.raises(ValueError, match="3-D"):
        mean_fill(image[0], mask[0])
    poisoned = image.copy()
    poisoned[2, 3, 3] = np.nan  # a boundary neighbour of the mask
    with pytest.raises(ValueError, match="non-finite"):
        harmonic_fill(poisoned, mask)
