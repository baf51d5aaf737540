"""MONAI transform chains, augmentation and datasets."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from wdm_inpaint.config import PreprocessConfig
from wdm_inpaint.data import datasets
from wdm_inpaint.data.augment import AugmentConfig, build_augmentation
from wdm_inpaint.data.cases import ALL_KEYS, case_file_name
from wdm_inpaint.data.datasets import build_dataset, make_dataloader, safe_num_workers
from wdm_inpaint.data.preprocess import preprocess
from wdm_inpaint.data.split import build_split, write_split
from wdm_inpaint.data.transforms import build_inference_transforms, build_training_transforms

MULTIPLE = 8
SHAPE = (21, 19, 13)
LPS = np.array([[-1.0, 0, 0, 20.0], [0, -1.0, 0, 18.0], [0, 0, 1.0, -4.0], [0, 0, 0, 1.0]])


def _volumes(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t1n = np.zeros(SHAPE, np.float32)
    t1n[3:18, 2:16, 2:11] = rng.gamma(4.0, 100.0, size=(15, 14, 9))
    healthy = np.zeros(SHAPE, np.uint8)
    healthy[4:8, 3:7, 3:6] = 1
    unhealthy = np.zeros(SHAPE, np.uint8)
    unhealthy[12:17, 9:14, 5:10] = 1
    mask = healthy | unhealthy
    return {
        "t1n": t1n,
        "mask_healthy": healthy,
        "mask_unhealthy": unhealthy,
        "mask": mask,
        "t1n_voided": np.where(mask > 0, 0, t1n).astype(np.float32),
    }


def _write_case(root: Path, cid: str, seed: int) -> dict[str, Path]:
    paths = {}
    for key, data in _volumes(seed).items():
        path = root / cid / case_file_name(cid, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data, LPS), path)
        paths[key] = path
    return paths


@pytest.fixture()
def case_files(tmp_path: Path) -> dict[str, Path]:
    return _write_case(tmp_path, "BraTS-GLI-00001-000", seed=0)


def _as_numpy(x: torch.Tensor) -> np.ndarray:
    return np.asarray(x.detach().cpu())


def test_training_chain_shapes_and_ranges(case_files: dict[str, Path]) -> None:
    chain = build_training_transforms(PreprocessConfig(spatial_size=None), MULTIPLE)
    out = chain({k: str(case_files[k]) for k in ("t1n", "mask_healthy", "mask_unhealthy")})
    for key in ("t1n", "mask_healthy", "mask_unhealthy"):
        assert tuple(out[key].shape) == (1, 24, 24, 16)
        assert out[key].dtype == torch.float32
    assert float(out["t1n"].min()) == -1.0 and float(out["t1n"].max()) == 1.0
    for key in ("mask_healthy", "mask_unhealthy"):
        assert set(torch.unique(out[key]).tolist()) == {0.0, 1.0}
    src = _volumes(0)
    assert int(out["mask_healthy"].sum()) == int(src["mask_healthy"].sum())
    assert nib.aff2axcodes(np.asarray(out["t1n"].affine)) == ("R", "A", "S")


def test_inference_chain_matches_numpy_preprocess(case_files: dict[str, Path]) -> None:
    for size in (None, (16, 24, 24)):
        cfg = PreprocessConfig(spatial_size=size)
        chain = build_inference_transforms(cfg, MULTIPLE)
        out = chain({"t1n_voided": str(case_files["t1n_voided"]), "mask": str(case_files["mask"])})
        src = _volumes(0)
        image_t, mask_t, _ = preprocess(src["t1n_voided"], src["mask"], LPS, cfg, MULTIPLE)
        assert torch.equal(torch.as_tensor(out["t1n_voided"])[None], image_t)
        assert torch.equal(torch.as_tensor(out["mask"])[None], mask_t)


def test_crop_around_masks(case_files: dict[str, Path]) -> None:
    cfg = PreprocessConfig(spatial_size=(32, 32, 32), crop=True, crop_margin=1)
    chain = build_training_transforms(cfg, MULTIPLE)
    out = chain({k: str(case_files[k]) for k in ("t1n", "mask_healthy", "mask_unhealthy")})
    box = out["crop_box"]
    assert all(n % MULTIPLE == 0 for n in box.size) and box.size != (32, 32, 32)
    assert tuple(out["t1n"].shape[1:]) == box.size
    src = _volumes(0)
    assert int(out["mask_healthy"].sum()) == int(src["mask_healthy"].sum())  # nothing of the masks is cut
    assert int(out["mask_unhealthy"].sum()) == int(src["mask_unhealthy"].sum())


ALL_ON = AugmentConfig(
    flip_prob=1.0,
    flip_axes=(0, 1),
    affine_prob=1.0,
    elastic_prob=1.0,
    elastic_sigma_range=(2.0, 3.0),
    elastic_magnitude_range=(1.0, 2.0),
    bias_field_prob=1.0,
    gamma_prob=1.0,
)


def _augmented(case_files: dict[str, Path], seed: int, augment: AugmentConfig) -> dict:
    chain = build_training_transforms(PreprocessConfig(spatial_size=None), MULTIPLE, augment=augment)
    chain.set_random_state(seed=seed)
    return chain({k: str(case_files[k]) for k in ("t1n", "mask_healthy", "mask_unhealthy")})


def test_augmentation_is_seeded(case_files: dict[str, Path]) -> None:
    a = _augmented(case_files, 1, ALL_ON)
    b = _augmented(case_files, 1, ALL_ON)
    c = _augmented(case_files, 2, ALL_ON)
    plain = build_training_transforms(PreprocessConfig(spatial_size=None), MULTIPLE)(
        {k: str(case_files[k]) for k in ("t1n", "mask_healthy", "mask_unhealthy")}
    )
    for key in ("t1n", "mask_healthy", "mask_unhealthy"):
        assert torch.equal(torch.as_tensor(a[key]), torch.as_tensor(b[key]))
    assert not torch.equal(torch.as_tensor(a["t1n"]), torch.as_tensor(c["t1n"]))
    assert not torch.equal(torch.as_tensor(a["t1n"]), torch.as_tensor(plain["t1n"]))
    for key in ("mask_healthy", "mask_unhealthy"):
        assert set(torch.unique(a[key]).tolist()) <= {0.0, 1.0}  # nearest resampling keeps masks binary
    assert float(a["t1n"].min()) >= -1.0 and float(a["t1n"].max()) <= 1.0


def test_spatial_augmentation_moves_image_and_masks_together() -> None:
    src = _volumes(0)
    sample = {k: torch.from_numpy(src[k].astype(np.float32))[None] for k in ("t1n", "mask_healthy", "mask_unhealthy")}
    flip = build_augmentation(
        ["t1n"], ["mask_healthy", "mask_unhealthy"],
        AugmentConfig(flip_prob=1.0, flip_axes=(1,), affine_prob=0.0, bias_field_prob=0.0, gamma_prob=0.0),
    )
    out = flip(dict(sample))
    for key in sample:
        np.testing.assert_array_equal(_as_numpy(out[key][0]), src[key][:, ::-1, :])
    affine = build_augmentation(
        ["t1n"], ["mask_healthy", "mask_unhealthy"],
        AugmentConfig(flip_prob=0.0, affine_prob=1.0, rotate_range_deg=0.0, scale_range=0.0, translate_range=3.0,
                      bias_field_prob=0.0, gamma_prob=0.0),
    )
    affine.set_random_state(seed=3)
    moved = affine(dict(sample))
    h_before = np.argwhere(src["mask_healthy"] > 0).mean(axis=0)
    h_after = np.argwhere(_as_numpy(moved["mask_healthy"][0]) > 0).mean(axis=0)
    u_before = np.argwhere(src["mask_unhealthy"] > 0).mean(axis=0)
    u_after = np.argwhere(_as_numpy(moved["mask_unhealthy"][0]) > 0).mean(axis=0)
    shift = h_after - h_before
    assert np.abs(shift).max() > 0.5  # something moved ...
    np.testing.assert_allclose(u_after - u_before, shift, atol=1e-6)  # ... both masks by the same translation
    t_after = _as_numpy(moved["t1n"][0])
    centre = np.round(np.argwhere(src["t1n"] > 0).mean(axis=0) + shift).astype(int)
    assert t_after[tuple(centre)] > 0  # the brain moved with the masks


def test_augment_config_validation() -> None:
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentConfig(flip_prob=1.5)
    with pytest.raises(ValueError, match="gamma_range"):
        AugmentConfig(gamma_range=(2.0, 1.0))


def test_dataset_and_loader(tmp_path: Path) -> None:
    for i in range(3):
        _write_case(tmp_path / "data", f"BraTS-GLI-0000{i}-000", seed=i)
    split_path = write_split(build_split(tmp_path / "data", val_fraction=0.34, seed=0), tmp_path / "split.json")
    cfg = PreprocessConfig(spatial_size=None)
    train = build_dataset(
        split_path, tmp_path / "data", "training", cfg, cache_rate=1.0, num_workers=1, multiple=MULTIPLE
    )
    assert len(train) == 2
    batch = next(iter(make_dataloader(train, batch_size=2, shuffle=True, seed=0)))
    assert tuple(batch["t1n"].shape) == (2, 1, 24, 24, 16)
    assert tuple(batch["mask_unhealthy"].shape) == (2, 1, 24, 24, 16)
    val = build_dataset(split_path, tmp_path / "data", "validation", cfg, multiple=MULTIPLE)
    assert len(val) == 1 and float(val[0]["t1n"].max()) == 1.0
    with pytest.raises(ValueError, match="'testing' list is empty"):
        build_dataset(split_path, tmp_path / "data", "testing", cfg, multiple=MULTIPLE)
    first = train.data[0]["case_id"]
    (tmp_path / "data" / first / case_file_name(first, "t1n")).unlink()
    with pytest.raises(FileNotFoundError, match="t1n file not found"):
        build_dataset(split_path, tmp_path / "data", "training", cfg, multiple=MULTIPLE)
    assert set(ALL_KEYS) <= set(train.data[0])  # every file of the split entry is kept in the item


def test_safe_num_workers_respects_shared_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "shm_bytes", lambda path=None: 64 * 2**20)  # Docker's default /dev/shm
    volume = 256**3 * 4
    assert safe_num_workers(2, batch_bytes=volume) == 0
    assert safe_num_workers(2, batch_bytes=1024) == 2
    assert safe_num_workers(0, batch_bytes=1024) == 0
    monkeypatch.setattr(datasets, "shm_bytes", lambda path=None: None)
    assert safe_num_workers(3, batch_bytes=volume) == 3
    assert make_dataloader([1, 2, 3], num_workers=2, batch_bytes=volume).num_workers == 2
    monkeypatch.setattr(datasets, "shm_bytes", lambda path=None: 64 * 2**20)
    assert make_dataloader([1, 2, 3], num_workers=2, batch_bytes=volume).num_workers == 0
