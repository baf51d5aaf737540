"""Training-data variety: new subjects from a template, random regions on the fly, the Colin27 template."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from wdm_inpaint.data.augment import AugmentConfig, build_augmentation
from wdm_inpaint.data.region_masks import BRAIN_LEVEL, RandRegionMaskd
from wdm_inpaint.synthesis import templates as templates_module
from wdm_inpaint.synthesis.subjects import SubjectConfig, vary_subject
from wdm_inpaint.synthesis.templates import BRATS_SHAPE, MRICRON_DIR_ENV, TemplateError, load_template

GRID = (40, 44, 36)


def _brain() -> tuple[np.ndarray, np.ndarray]:
    coords = np.indices(GRID, dtype=np.float32)
    centre = np.array(GRID, dtype=np.float32)[:, None, None, None] / 2
    r = np.sqrt((((coords - centre) / (centre * 0.8)) ** 2).sum(0))
    brain = r < 1
    image = np.where(brain, 100 + 50 * np.cos(coords[0] / 3) * np.sin(coords[1] / 4), 0).astype(np.float32)
    return image, brain


@pytest.mark.parametrize("kind", ["subject", "noise"])
def test_a_new_subject_is_seeded_reproducible_and_recorded(kind: str) -> None:
    image, brain = _brain()
    config = SubjectConfig(kind=kind)
    a = vary_subject(image, brain, np.random.default_rng(5), config)
    b = vary_subject(image, brain, np.random.default_rng(5), config)
    c = vary_subject(image, brain, np.random.default_rng(6), config)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not np.array_equal(a[0], c[0])
    assert a[2]["kind"] == kind and "scanner_seed" in a[2] and ("anatomy_seed" in a[2]) == (kind == "subject")
    out, new_brain, _ = a
    assert out.dtype == np.float32 and out.shape == GRID
    assert np.all(out[~new_brain] == 0) and np.all(out >= 0)
    if kind == "noise":
        assert np.array_equal(new_brain, brain)  # the same brain, only noisier
        assert 0 < np.abs(out - image)[brain].mean() < 0.2 * np.percentile(image[brain], 99)
    else:
        overlap = (new_brain & brain).sum() / brain.sum()
        assert 0.7 < overlap < 1.0  # deformed, not replaced


def test_no_variation_keeps_the_template() -> None:
    image, brain = _brain()
    out, new_brain, info = vary_subject(image, brain, np.random.default_rng(0), SubjectConfig(kind="none"))
    assert np.array_equal(out, image) and np.array_equal(new_brain, brain) and info == {"kind": "none"}


def _patch() -> dict[str, torch.Tensor]:
    image, brain = _brain()
    scaled = np.where(brain, image / image.max(), BRAIN_LEVEL).astype(np.float32)
    healthy = np.zeros(GRID, dtype=np.float32)
    healthy[5:9, 5:9, 5:9] = 1
    tumour = np.zeros(GRID, dtype=np.float32)
    tumour[15:30, 15:30, 12:24] = 1
    return {"t1n": torch.from_numpy(scaled)[None], "mask_healthy": torch.from_numpy(healthy)[None],
            "mask_unhealthy": torch.from_numpy(tumour)[None]}


def test_random_regions_lie_in_the_brain_away_from_the_tumour_and_are_seeded() -> None:
    results = []
    for seed in (0, 0, 1):
        t = RandRegionMaskd("mask_healthy", "t1n", avoid_keys=["mask_unhealthy"], prob=1.0)
        t.set_random_state(seed=seed)
        results.append(t(_patch())["mask_healthy"][0].numpy() > 0)
    a, b, c = results
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    patch = _patch()
    brain = patch["t1n"][0].numpy() > BRAIN_LEVEL
    tumour = patch["mask_unhealthy"][0].numpy() > 0
    for region in (a, c):
        assert region.sum() > 20
        assert not (region & tumour).any()
        assert (region & brain).sum() >= 0.75 * region.sum()
        assert not np.array_equal(region, patch["mask_healthy"][0].numpy() > 0)


def test_the_region_transform_is_part_of_the_training_augmentation() -> None:
    chain = build_augmentation(["t1n"], ["mask_healthy", "mask_unhealthy"], AugmentConfig(region_prob=0.5))
    assert any(isinstance(t, RandRegionMaskd) for t in chain.transforms)
    plain = build_augmentation(["t1n"], ["mask_healthy", "mask_unhealthy"], AugmentConfig())
    assert not any(isinstance(t, RandRegionMaskd) for t in plain.transforms)


def test_colin27_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(templates_module, "MRICRON_PACKAGE_DIR", str(tmp_path / "absent"))
    monkeypatch.delenv(MRICRON_DIR_ENV, raising=False)
    with pytest.raises(TemplateError, match="apt-get install mricron-data") as info:
        load_template("colin27")
    assert "dpkg -x" in str(info.value)
    assert "colin27" not in templates_module.available_templates()


def test_colin27_is_found_through_the_environment_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(templates_module, "MRICRON_PACKAGE_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv(MRICRON_DIR_ENV, str(tmp_path))
    with pytest.raises(TemplateError, match="ch2bet.nii.gz"):  # the folder is used, the file is missing
        load_template("colin27")


@pytest.mark.templates
def test_colin27_loads_onto_the_brats_grid() -> None:
    if "colin27" not in templates_module.available_templates():
        pytest.skip(f"Colin27 not installed: {templates_module.TEMPLATES['colin27'].pip_install}")
    brain = load_template("colin27")
    assert brain.image.shape == BRATS_SHAPE and brain.brain.shape == BRATS_SHAPE
    assert np.all(brain.image[~brain.brain] == 0)
    assert 0.1 < brain.brain.mean() < 0.3  # a whole skull-stripped brain, not cropped away
