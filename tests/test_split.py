"""Split files: MONAI decathlon format, folds, augmented samples, the make-split command."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from wdm_inpaint.cli.main import main
from wdm_inpaint.data.cases import ALL_KEYS, INFERENCE_KEYS, case_file_name
from wdm_inpaint.data.split import (
    SplitError,
    append_augmented,
    build_split,
    load_augmented_entries,
    read_split,
    write_split,
)

N_TRAIN = 6
N_TEST = 2


def _touch_nifti(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)), path)


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for i in range(N_TRAIN):
        cid = f"BraTS-GLI-{i:05d}-000"
        for key in ALL_KEYS:
            _touch_nifti(root / cid / case_file_name(cid, key))
    for i in range(N_TEST):
        cid = f"BraTS-GLI-{100 + i:05d}-000"
        for key in INFERENCE_KEYS:
            _touch_nifti(root / cid / case_file_name(cid, key))
    (root / "README.md").write_text("not a case")
    return root


def _ids(entries: list[dict]) -> list[str]:
    return [e["case_id"] for e in entries]


def test_split_is_loadable_by_monai(tmp_path: Path, data_root: Path) -> None:
    split = build_split(data_root, val_fraction=0.34, seed=3)
    path = write_split(split, tmp_path / "splits" / "split.json")
    assert len(split["validation"]) == 2 and len(split["training"]) == N_TRAIN - 2
    assert set(_ids(split["training"])).isdisjoint(_ids(split["validation"]))
    every = sorted(_ids(split["training"]) + _ids(split["validation"]))
    assert every == [f"BraTS-GLI-{i:05d}-000" for i in range(N_TRAIN)]
    for key in ("training", "validation"):
        items = load_decathlon_datalist(path, is_segmentation=False, data_list_key=key, base_dir=data_root)
        assert len(items) == len(split[key])
        for item in items:
            for file_key in ALL_KEYS:
                assert Path(item[file_key]).is_file()
                assert Path(item[file_key]).name.endswith(f"-{file_key.replace('_', '-')}.nii.gz")
    testing = load_decathlon_datalist(path, is_segmentation=False, data_list_key="testing", base_dir=data_root)
    assert len(testing) == N_TEST
    assert all(set(item) == {"case_id", *INFERENCE_KEYS} for item in split["testing"])
    # Paths in the file are relative to the data root.
    raw = json.loads(path.read_text())
    assert raw["training"][0]["t1n"].startswith("BraTS-GLI-") and not Path(raw["training"][0]["t1n"]).is_absolute()


def test_split_depends_only_on_the_seed(data_root: Path) -> None:
    a = build_split(data_root, val_fraction=0.5, seed=1)
    assert a == build_split(data_root, val_fraction=0.5, seed=1)
    validations = {tuple(_ids(build_split(data_root, val_fraction=0.5, seed=s)["validation"])) for s in range(6)}
    assert len(validations) > 1


def test_folds(tmp_path: Path, data_root: Path) -> None:
    split = build_split(data_root, folds=3, seed=0)
    assert split["validation"] == []
    assert len(split["training"]) == N_TRAIN
    assert Counter(e["fold"] for e in split["training"]) == {0: 2, 1: 2, 2: 2}
    path = write_split(split, tmp_path / "folds.json")
    items = load_decathlon_datalist(path, is_segmentation=False, data_list_key="training", base_dir=data_root)
    assert sorted(item["fold"] for item in items) == [0, 0, 1, 1, 2, 2]


def test_invalid_arguments(tmp_path: Path, data_root: Path) -> None:
    with pytest.raises(SplitError, match="val_fraction"):
        build_split(data_root, val_fraction=1.0)
    with pytest.raises(SplitError, match="folds must be >= 2"):
        build_split(data_root, folds=1)
    with pytest.raises(SplitError, match="exceeds"):
        build_split(data_root, folds=N_TRAIN + 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SplitError, match="no usable case"):
        build_split(tmp_path / "empty")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SplitError, match="bad.json"):
        read_split(bad)


def test_append_augmented(data_root: Path) -> None:
    split = build_split(data_root, val_fraction=0.0)
    entry = {k: f"aug/{k}.nii.gz" for k in ("t1n", "mask_healthy", "mask_unhealthy", "t1n_voided", "mask")}
    out = append_augmented(split, [entry])
    assert len(out["training"]) == N_TRAIN + 1 and len(split["training"]) == N_TRAIN  # input untouched
    assert out["training"][-1] == {**entry, "augmented": True}
    assert out["numTraining"] == N_TRAIN + 1
    with pytest.raises(SplitError, match="lacks"):
        append_augmented(split, [{"t1n": "x"}])


def _make_augmented_folder(out: Path, data_root: Path) -> None:
    """A mask-augmentation output folder: per-sample files and metadata, plus augmented_split.json."""
    cid = "BraTS-GLI-00000-000"
    names = {k: f"{cid}-{k.replace('_', '-')}-aug00.nii.gz" for k in ("mask_healthy", "mask", "t1n_voided")}
    for name in names.values():
        _touch_nifti(out / name)
    meta = {
        "format": "wdm-inpaint/augmented-sample",
        "case_id": cid,
        "index": 0,
        "t1n": str((data_root / cid / case_file_name(cid, "t1n")).resolve()),
        "mask_unhealthy": str((data_root / cid / case_file_name(cid, "mask_unhealthy")).resolve()),
        "written": True,
        "files": names,
    }
    (out / f"{cid}-aug00.json").write_text(json.dumps(meta))
    (out / f"{cid}-aug01.json").write_text(json.dumps({**meta, "index": 1, "written": False, "files": {}}))


def test_augmented_from_metadata_and_split_file(tmp_path: Path, data_root: Path) -> None:
    out = tmp_path / "augmented"
    _make_augmented_folder(out, data_root)
    from_meta = load_augmented_entries(out, data_root)
    assert len(from_meta) == 1  # the sample that was not written is skipped
    split_file = out / "augmented_split.json"
    meta_entry = from_meta[0]
    assert meta_entry["t1n"] == "BraTS-GLI-00000-000/BraTS-GLI-00000-000-t1n.nii.gz"
    assert meta_entry["mask_healthy"] == "../augmented/BraTS-GLI-00000-000-mask-healthy-aug00.nii.gz"
    # The same sample in the split-file form, with paths relative to the augmentation folder.
    as_split = {
        "training": [
            {
                "case_id": meta_entry["case_id"],
                "t1n": f"../data/{meta_entry['t1n']}",
                "mask_unhealthy": f"../data/{meta_entry['mask_unhealthy']}",
                "mask_healthy": Path(meta_entry["mask_healthy"]).name,
                "mask": Path(meta_entry["mask"]).name,
                "t1n_voided": Path(meta_entry["t1n_voided"]).name,
                "augmented": True,
            }
        ]
    }
    split_file.write_text(json.dumps(as_split))
    from_split = load_augmented_entries(out, data_root)
    assert from_split == [{**from_meta[0], "augmented": True}]

    split = append_augmented(build_split(data_root, val_fraction=0.0), from_split)
    path = write_split(split, tmp_path / "with_aug.json")
    items = load_decathlon_datalist(path, is_segmentation=False, data_list_key="training", base_dir=data_root)
    augmented = [item for item in items if item.get("augmented")]
    assert len(augmented) == 1
    for key in ("t1n", "mask_healthy", "mask_unhealthy", "t1n_voided", "mask"):
        assert Path(augmented[0][key]).is_file()
    assert Path(augmented[0]["mask_healthy"]).parent == out.resolve()


def test_make_split_command(tmp_path: Path, data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "augmented"
    _make_augmented_folder(out, data_root)
    target = tmp_path / "split.json"
    code = main(["make-split", "-i", str(data_root), "-o", str(target), "--folds", "2", "--seed", "4",
                 "--augmented", str(out)])
    assert code == 0
    split = read_split(target)
    assert len(split["training"]) == N_TRAIN + 1 and split["folds"] == 2
    assert "7 training (1 augmented)" in capsys.readouterr().out
    code = main(["make-split", "-i", str(tmp_path / "missing"), "-o", str(tmp_path / "x.json")])
    assert code == 1 and not (tmp_path / "x.json").exists()
