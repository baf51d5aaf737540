"""Rule-based shape placement: every placed region obeys the rules, checked independently here."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from wdm_inpaint.masks.placement import (
    PlacementRules,
    add_forbidden_region,
    forbidden_distance,
    place_shape,
)


def _ellipsoid(size: tuple[int, int, int], centre, radii) -> np.ndarray:
    grid = np.indices(size).astype(float)
    c = np.asarray(centre, float)[:, None, None, None]
    r = np.asarray(radii, float)[:, None, None, None]
    return (((grid - c) / r) ** 2).sum(0) <= 1.0


@pytest.fixture()
def scene():
    size = (48, 48, 40)
    brain = _ellipsoid(size, (24, 24, 20), (20, 21, 17))
    tumour = _ellipsoid(size, (18, 26, 20), (6, 5, 5))
    shape = _ellipsoid((9, 7, 8), (4, 3, 3.5), (4, 3, 3.5))
    return brain, tumour, shape


def _check_rules(mask: np.ndarray, brain: np.ndarray, forbidden: np.ndarray, shape: np.ndarray, rules) -> None:
    assert mask.sum() == shape.sum()
    inside = (mask & brain).sum() / mask.sum()
    assert inside >= rules.min_inside_brain_fraction
    # Independent distance: EDT from the placed region to the forbidden voxels (sampling on the other side).
    dist_from_region = ndimage.distance_transform_edt(~mask)
    assert dist_from_region[forbidden].min() >= rules.min_distance_voxels
    # Inside the volume and an exact translate of the shape.
    idx = np.nonzero(mask)
    box = mask[idx[0].min() : idx[0].max() + 1, idx[1].min() : idx[1].max() + 1, idx[2].min() : idx[2].max() + 1]
    s = np.nonzero(shape)
    cropped = shape[tuple(slice(i.min(), i.max() + 1) for i in s)]
    np.testing.assert_array_equal(box, cropped)


def test_placement_satisfies_rules(scene):
    brain, tumour, shape = scene
    rules = PlacementRules()
    forbidden = tumour.copy()
    rng = np.random.default_rng(3)
    for _ in range(3):  # several regions, each kept away from the tumour and the earlier ones
        result = place_shape(shape, brain, forbidden, rules, rng)
        assert result.success, result.reason
        assert 1 <= result.tries <= rules.max_tries
        _check_rules(result.mask, brain, forbidden, shape, rules)
        assert result.min_distance >= rules.min_distance_voxels
        assert result.inside_brain_fraction == pytest.approx((result.mask & brain).sum() / result.mask.sum())
        forbidden = forbidden | result.mask


def test_placement_allows_partly_outside_brain():
    size = (30, 30, 30)
    brain = np.zeros(size, bool)
    brain[:, :, :16] = True  # half-space brain
    shape = np.ones((10, 10, 10), bool)
    rules = PlacementRules(min_inside_brain_fraction=0.75, min_distance_voxels=0, max_tries=5000)
    fractions = set()
    rng = np.random.default_rng(0)
    for _ in range(40):
        result = place_shape(shape, brain, np.zeros(size, bool), rules, rng)
        assert result.success
        frac = (result.mask & brain).sum() / result.mask.sum()
        assert frac >= 0.75
        fractions.add(round(frac, 2))
    assert min(fractions) < 1.0  # candidates straddling the brain border are accepted when the rule allows


def test_impossible_placement_gives_up_after_max_tries(scene):
    brain, tumour, _ = scene
    big = np.ones((30, 30, 30), bool)  # cannot stay 5 voxels from the tumour inside this brain
    rules = PlacementRules(max_tries=37)
    result = place_shape(big, brain, tumour, rules, np.random.default_rng(0))
    assert not result.success
    assert result.tries == 37
    assert result.mask is None and result.reason


def test_no_candidate_gives_up_immediately(scene):
    brain, _, shape = scene
    result = place_shape(shape, brain, brain.copy(), PlacementRules(), np.random.default_rng(0))
    assert not result.success and result.tries == 0 and "forbidden" in result.reason


def test_placement_is_deterministic_for_a_seed(scene):
    brain, tumour, shape = scene
    a = place_shape(shape, brain, tumour, PlacementRules(), np.random.default_rng(11))
    b = place_shape(shape, brain, tumour, PlacementRules(), np.random.default_rng(11))
    assert a.offset == b.offset and a.tries == b.tries
    np.testing.assert_array_equal(a.mask, b.mask)
    offsets = {place_shape(shape, brain, tumour, PlacementRules(), np.random.default_rng(s)).offset for s in range(8)}
    assert len(offsets) > 1  # the seed actually drives the position


def test_bad_inputs_raise_clear_errors(scene):
    brain, tumour, shape = scene
    with pytest.raises(ValueError, match="no foreground"):
        place_shape(np.zeros((3, 3, 3)), brain, tumour, PlacementRules(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="differs"):
        place_shape(shape, brain, tumour[:-1], PlacementRules(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="min_inside_brain_fraction"):
        PlacementRules(min_inside_brain_fraction=1.5)


def test_local_distance_map_is_exact_below_its_margin(scene):
    brain, tumour, shape = scene
    exact = ndimage.distance_transform_edt(~tumour)
    local = forbidden_distance(tumour, margin=5.0)
    near = exact < 5.0
    np.testing.assert_allclose(local[near], exact[near])
    assert np.all(local[~near] >= 5.0)
    # adding a region lowers the map exactly where the new distances are below the margin
    region = np.zeros_like(tumour)
    region[38:41, 20:23, 18:21] = True
    add_forbidden_region(local, region, 5.0)
    exact2 = ndimage.distance_transform_edt(~(tumour | region))
    near2 = exact2 < 5.0
    np.testing.assert_allclose(local[near2], exact2[near2])
    assert np.all(local[~near2] >= 5.0)


def test_shape_larger_than_the_brain_gives_up_without_trying():
    brain = np.zeros((20, 20, 20), bool)
    brain[5:10, 5:10, 5:10] = True  # 125 brain voxels
    shape = np.ones((6, 6, 6), bool)  # 216 voxels: 75 % of it cannot be inside the brain
    result = place_shape(shape, brain, np.zeros_like(brain), PlacementRules(), np.random.default_rng(0))
    assert not result.success and result.tries == 0 and "cannot fit" in result.reason
