"""Synthetic healthy-mask placer: rules, files, metadata, determinism, re-runs and the split file."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from wdm_inpaint.cli.main import main
from wdm_inpaint.data.split import load_augmented_entries
from wdm_inpaint.masks.label_generator import LabelGenerator, LabelGeneratorConfig, save_label_generator
from wdm_inpaint.masks.placement import PlacementRules
from wdm_inpaint.masks.make_masks import make_masks
from wdm_inpaint.masks.placer import MaskAugmentConfig, discover_cases

SIZE = (48, 48, 40)
AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 47], [0, 0, 1.0, 0], [0, 0, 0, 1]])
MIN_DISTANCE = 5.0
MIN_INSIDE = 0.75


def _ellipsoid(centre, radii, size=SIZE) -> np.ndarray:
    grid = np.indices(size).astype(float)
    c = np.asarray(centre, float)[:, None, None, None]
    r = np.asarray(radii, float)[:, None, None, None]
    return (((grid - c) / r) ** 2).sum(0) <= 1.0


def _save(path: Path, data: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(data.astype(np.float32), AFFINE), path)


@pytest.fixture()
def dataset(tmp_path) -> Path:
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for k in range(3):
        cid = f"BraTS-GLI-{k:05d}-000"
        folder = root / cid
        folder.mkdir(parents=True)
        brain = _ellipsoid((24, 24, 20), (20, 21, 17))
        t1n = np.where(brain, np.round(100 + 50 * rng.random(SIZE)), 0.0)
        _save(folder / f"{cid}-t1n.nii.gz", t1n)
        _save(folder / f"{cid}-mask-unhealthy.nii.gz", _ellipsoid((16 + 2 * k, 26, 20), (5, 5, 4)))
        _save(folder / f"{cid}-mask-healthy.nii.gz", _ellipsoid((32, 20, 18), (3 + k, 4, 3)))
    return root


def _read(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).get_fdata())


def _sample_files(out: Path, meta_path: Path, meta: dict) -> dict[str, Path]:
    return {k: meta_path.parent / name for k, name in meta["files"].items()}


def _check_sample(data_root: Path, out: Path, meta_path: Path) -> dict:
    """Check one written sample against the rules independently of the placer's own figures."""
    meta = json.loads(meta_path.read_text())
    cid = meta["case_id"]
    case = data_root / cid
    t1n = _read(case / f"{cid}-t1n.nii.gz")
    tumour = _read(case / f"{cid}-mask-unhealthy.nii.gz") > 0
    brain = t1n > 0
    files = _sample_files(out, meta_path, meta)
    healthy = _read(files["mask_healthy"]) > 0
    combined = _read(files["mask"]) > 0
    voided = _read(files["t1n_voided"])
    for path in files.values():
        np.testing.assert_allclose(nib.load(path).affine, AFFINE)

    # Files agree with each other and with the metadata.
    np.testing.assert_array_equal(combined, healthy | tumour)
    np.testing.assert_array_equal(voided[~combined], t1n[~combined])
    assert np.all(voided[combined] == 0)
    assert meta["new_mask_voxels"] == int(healthy.sum())
    placed = [r for r in meta["regions"] if r["placed"]]
    assert meta["n_placed"] == len(placed) >= 1
    assert sorted(r["voxels"] for r in placed) == sorted(int(r.sum()) for r in _regions(healthy))

    _check_rules(healthy, brain, tumour, len(placed))
    return meta


def _regions(healthy: np.ndarray) -> list[np.ndarray]:
    """Split a mask into regions: 26-connected components closer than MIN_DISTANCE to each other are merged.

    Regions placed by the rules are at least MIN_DISTANCE apart, so each one comes out whole and separate; two
    regions placed too close together would come out merged (fewer regions than the metadata says).
    """
    labels, n = ndimage.label(healthy, np.ones((3, 3, 3)))
    comps = [labels == i for i in range(1, n + 1)]
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i in range(n):
        dist = ndimage.distance_transform_edt(~comps[i])
        for j in range(i + 1, n):
            if dist[comps[j]].min() < MIN_DISTANCE:
                parent[find(j)] = find(i)
    groups: dict[int, np.ndarray] = {}
    for i in range(n):
        root = find(i)
        groups[root] = groups[root] | comps[i] if root in groups else comps[i]
    return list(groups.values())


def _check_rules(healthy: np.ndarray, brain: np.ndarray, tumour: np.ndarray, n_placed: int) -> None:
    """Every region >= 75 % inside the brain, >= 5 voxels from the tumour and from the other regions.

    Works on the regions' bounding box grown by more than MIN_DISTANCE: a tumour voxel outside it is farther
    than MIN_DISTANCE from every region voxel, so the checks are exact.
    """
    pad = int(np.ceil(MIN_DISTANCE)) + 1
    idx = np.nonzero(healthy)
    box = tuple(slice(max(int(i.min()) - pad, 0), int(i.max()) + 1 + pad) for i in idx)
    healthy, brain, tumour = healthy[box], brain[box], tumour[box]
    if tumour.any():
        assert ndimage.distance_transform_edt(~tumour)[healthy].min() >= MIN_DISTANCE
    regions = _regions(healthy)
    assert len(regions) == n_placed
    for region in regions:
        assert (region & brain).sum() / region.sum() >= MIN_INSIDE


def _only_real(per_case: int = 3, **kwargs) -> MaskAugmentConfig:
    return MaskAugmentConfig(per_case=per_case, source="real", **kwargs)


def test_samples_obey_rules_and_match_metadata(dataset, tmp_path):
    out = tmp_path / "out"
    report = make_masks(discover_cases(dataset), out, _only_real(), seed=1, progress=False)
    assert len(report.samples) == 9 and report.written == 9
    metas = sorted(out.glob("*/*-aug*.json"))
    assert len(metas) == 9
    counts = set()
    for meta_path in metas:
        meta = _check_sample(dataset, out, meta_path)
        counts.add(meta["n_regions"])
        for region in meta["regions"]:
            assert region["source"] == "real" and region["source_case"] != meta["case_id"]
    assert counts <= {1, 2, 3}


def test_same_seed_same_files_for_any_worker_count(dataset, tmp_path):
    cases = discover_cases(dataset)
    serial = make_masks(cases, tmp_path / "a", _only_real(per_case=2), seed=4, progress=False)
    parallel = make_masks(cases, tmp_path / "b", _only_real(per_case=2), seed=4, workers=2, progress=False)
    other = make_masks(cases, tmp_path / "c", _only_real(per_case=2), seed=5, progress=False)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.nii.gz"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.nii.gz"))
    assert files_a == files_b and len(files_a) == 3 * serial.written
    differs = False
    for rel in files_a:
        a = _read(tmp_path / "a" / rel)
        np.testing.assert_array_equal(a, _read(tmp_path / "b" / rel))
        if (tmp_path / "c" / rel).is_file() and not np.array_equal(a, _read(tmp_path / "c" / rel)):
            differs = True
    assert differs  # the seed matters
    strip = [{k: v for k, v in m.items() if k != "skipped"} for m in serial.samples]
    assert strip == [{k: v for k, v in m.items() if k != "skipped"} for m in parallel.samples]
    assert other.samples != serial.samples


def test_rerun_skips_finished_samples_and_remakes_missing_ones(dataset, tmp_path):
    cases = discover_cases(dataset)
    out = tmp_path / "out"
    first = make_masks(cases, out, _only_real(per_case=2), seed=2, progress=False)
    meta_path = out / cases[1].case_id / f"{cases[1].case_id}-aug01.json"
    meta = json.loads(meta_path.read_text())
    healthy_path = meta_path.parent / meta["files"]["mask_healthy"]
    original = _read(healthy_path)
    meta_path.unlink()
    healthy_path.unlink()
    again = make_masks(cases, out, _only_real(per_case=2), seed=2, progress=False)
    assert again.skipped == len(first.samples) - 1
    np.testing.assert_array_equal(_read(healthy_path), original)
    assert json.loads(meta_path.read_text()) == meta
    with pytest.raises(ValueError, match="other settings"):
        make_masks(cases, out, _only_real(per_case=2), seed=3, progress=False)


def test_split_file_and_cli(dataset, tmp_path):
    out = tmp_path / "out"
    code = main(["-q", "make-masks", "-i", str(dataset), "-o", str(out), "--only-real", "--per-case", "2",
                 "--seed", "7", "--no-progress"])
    assert code == 0
    split = json.loads((out / "augmented_split.json").read_text())
    entries = split["training"]
    written = [json.loads(p.read_text()) for p in sorted(out.glob("*/*-aug*.json"))]
    assert len(entries) == sum(m["written"] for m in written) == 6
    for entry in entries:
        assert entry["augmented"] is True
        for key in ("t1n", "mask_unhealthy", "mask_healthy", "mask", "t1n_voided"):
            assert (out / entry[key]).is_file(), (key, entry[key])
        assert entry["t1n"].endswith(f"{entry['case_id']}-t1n.nii.gz")
    # The data package reads the folder and re-roots the paths onto the data folder.
    rerooted = load_augmented_entries(out, dataset)
    assert len(rerooted) == 6
    assert all((dataset / e["mask_healthy"]).resolve().is_file() for e in rerooted)
    record = json.loads((out / "make_masks_run.json").read_text())
    assert record["seed"] == 7 and record["config"]["source"] == "real"
    # A second run appends nothing new: entries are merged, not duplicated.
    assert main(["-q", "make-masks", "-i", str(dataset), "-o", str(out), "--only-real", "--per-case", "2",
                 "--seed", "7", "--no-progress"]) == 0
    assert json.loads((out / "augmented_split.json").read_text()) == split


def test_gan_shapes_are_placed_by_the_same_rules(dataset, tmp_path):
    torch.manual_seed(0)
    gan = save_label_generator(tmp_path / "gan.pt", LabelGenerator(LabelGeneratorConfig(channel=1)))
    out = tmp_path / "out"
    config = MaskAugmentConfig(per_case=2, source="gan", gan_crop_size=12, gan_threshold=0.0)
    report = make_masks(discover_cases(dataset), out, config, seed=0, gan_path=gan, progress=False)
    assert report.written >= 1
    for meta_path in sorted(out.glob("*/*-aug*.json")):
        meta = json.loads(meta_path.read_text())
        assert all(s["source"] == "gan" for r in meta["regions"] for s in r["shapes"])
        if not meta["written"]:
            continue
        cid = meta["case_id"]
        tumour = _read(dataset / cid / f"{cid}-mask-unhealthy.nii.gz") > 0
        brain = _read(dataset / cid / f"{cid}-t1n.nii.gz") > 0
        healthy = _read(meta_path.parent / meta["files"]["mask_healthy"]) > 0
        placed = [r for r in meta["regions"] if r["placed"]]
        assert healthy.sum() == sum(r["voxels"] for r in placed)
        assert (healthy & brain).sum() / healthy.sum() >= MIN_INSIDE
        assert ndimage.distance_transform_edt(~tumour)[healthy].min() >= MIN_DISTANCE
        # the 64^3 output is resized to the configured 12^3 crop scale before placement
        assert all(max(s["size"]) <= 12 for r in meta["regions"] for s in r["shapes"] if "size" in s)
    # GAN shapes, too, do not depend on the worker count
    parallel = make_masks(discover_cases(dataset), tmp_path / "par", config, seed=0, gan_path=gan, workers=2,
                          progress=False)
    assert [m["regions"] for m in parallel.samples] == [m["regions"] for m in report.samples]
    for path in sorted(out.rglob("*.nii.gz")):
        np.testing.assert_array_equal(_read(path), _read(tmp_path / "par" / path.relative_to(out)))
    with pytest.raises(ValueError, match="--gan"):
        make_masks(discover_cases(dataset), tmp_path / "x", config, seed=0, progress=False)


def test_impossible_placement_is_recorded_as_given_up(dataset, tmp_path):
    out = tmp_path / "out"
    rules = PlacementRules(min_distance_voxels=60.0, max_tries=5)  # nothing in a 48^3 volume is 60 voxels away
    config = dataclasses.replace(_only_real(per_case=1), placement=rules, max_shape_draws=2)
    report = make_masks(discover_cases(dataset), out, config, seed=0, progress=False)
    assert report.written == 0 and report.gave_up == 3
    for meta_path in out.glob("*/*-aug*.json"):
        meta = json.loads(meta_path.read_text())
        assert meta["gave_up"] and not meta["written"] and meta["n_placed"] == 0
        assert all(r["draws"] == 2 and not r["placed"] for r in meta["regions"])
    assert not list(out.rglob("*.nii.gz"))
    assert json.loads((out / "augmented_split.json").read_text())["training"] == []


@pytest.mark.slow
@pytest.mark.templates
def test_rules_hold_on_a_real_brain_template(tmp_path):
    from wdm_inpaint.synthesis.demo import make_demo_data
    from wdm_inpaint.synthesis.templates import available_templates

    if "sri24" not in available_templates():
        pytest.skip("the sri24 brain template is not installed (pip install wdm-inpaint[templates])")
    data = tmp_path / "data"
    make_demo_data(data, 2, seed=0, templates=["sri24"])
    out = tmp_path / "out"
    report = make_masks(discover_cases(data), out, _only_real(per_case=2), seed=0, progress=False)
    assert report.written == 4
    for meta_path in sorted(out.glob("*/*-aug*.json")):
        meta = json.loads(meta_path.read_text())
        cid = meta["case_id"]
        tumour = _read(data / cid / f"{cid}-mask-unhealthy.nii.gz") > 0
        brain = _read(data / cid / f"{cid}-t1n.nii.gz") > 0
        healthy = _read(meta_path.parent / meta["files"]["mask_healthy"]) > 0
        assert healthy.sum() == meta["new_mask_voxels"] > 0
        _check_rules(healthy, brain, tumour, meta["n_placed"])
