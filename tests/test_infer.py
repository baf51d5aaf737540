"""End-to-end inference: the submission contract, resumability, atomic writes and a corpus of bad inputs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from _inference_helpers import LPS_AFFINE, TINY_SHAPE, brain_volume, make_tiny_checkpoint, region_mask, write_case
from wdm_inpaint.cli.main import main as cli_main
from wdm_inpaint.inference.inpainter import Inpainter
from wdm_inpaint.seeding import case_seed
from wdm_inpaint.io.nifti import read_nifti
from wdm_inpaint.inference.records import default_log_dir
from wdm_inpaint.inference.runner import OUTPUT_SUFFIX, run_folder, select_cases

STEPS = 2
"""Network calls per case in these tests (speed; the contract does not depend on it)."""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def inpainter(checkpoint: Path) -> Inpainter:
    return Inpainter.from_checkpoint(checkpoint, device="cpu", sampler="ddim", steps=STEPS, seed=3)


def _read(path: Path) -> nib.Nifti1Image:
    return nib.load(path)


def _voided_and_mask(case_dir: Path) -> tuple[nib.Nifti1Image, np.ndarray]:
    cid = case_dir.name
    return nib.load(case_dir / f"{cid}-t1n-voided.nii.gz"), nib.load(case_dir / f"{cid}-mask.nii.gz").get_fdata() > 0.5


# --------------------------------------------------------------------------- contract


def test_outputs_follow_the_submission_contract(inpainter: Inpainter, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    ids = ["BraTS-GLI-00001-000", "BraTS-GLI-00002-001"]
    for i, cid in enumerate(ids):
        write_case(data, cid, seed=i, dtype=np.int16 if i else np.float32)
    summary = run_folder(inpainter, data, out, progress=False)

    assert summary.count("model") == 2 and summary.fallbacks == 0 and summary.failed == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{cid}{OUTPUT_SUFFIX}" for cid in ids]
    for cid in ids:
        voided_img, mask = _voided_and_mask(data / cid)
        pred_img = _read(out / f"{cid}{OUTPUT_SUFFIX}")
        pred = np.asarray(pred_img.dataobj)
        assert pred.dtype == np.float32
        assert pred_img.header.get_data_dtype() == np.float32
        slope, inter = pred_img.header.get_slope_inter()
        assert slope in (None, 1.0) and inter in (None, 0.0)
        assert pred.shape == voided_img.shape
        np.testing.assert_array_equal(pred_img.affine, voided_img.affine)
        np.testing.assert_array_equal(pred_img.get_qform(), voided_img.get_qform())
        assert int(pred_img.header["qform_code"]) == int(voided_img.header["qform_code"])
        voided = voided_img.get_fdata(dtype=np.float32)
        # Known voxels are sacred: bit-identical outside the mask.
        np.testing.assert_array_equal(pred[~mask], voided[~mask])
        assert np.isfinite(pred).all() and (pred[mask] >= 0).all()
        # The model really filled the region (the voided region is 0 in the input).
        assert np.abs(pred[mask]).max() > 0


def test_log_dir_is_next_to_output_never_inside(inpainter: Inpainter, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    write_case(data, "BraTS-GLI-00001-000")
    summary = run_folder(inpainter, data, out, progress=False)
    logs = default_log_dir(out)
    assert summary.log_dir == logs and logs.parent == out.resolve().parent
    (record_file,) = logs.glob("run-*.json")
    record = json.loads(record_file.read_text())
    assert record["inpainter"]["options"]["steps"] == STEPS
    assert len(record["inpainter"]["checkpoint_sha256"]) == 64
    assert record["cases"][0]["status"] == "model"
    with pytest.raises(ValueError, match="inside the output folder"):
        run_folder(inpainter, data, out, log_dir=out / "logs", progress=False, overwrite=True)


def test_same_seed_same_output_and_seed_matters(inpainter: Inpainter, tmp_path: Path) -> None:
    write_case(tmp_path / "data", "BraTS-GLI-00001-000")
    run_folder(inpainter, tmp_path / "data", tmp_path / "a", progress=False)
    run_folder(inpainter, tmp_path / "data", tmp_path / "b", progress=False)
    other = inpainter.with_options(sampler="ddpm", seed=4)
    run_folder(other, tmp_path / "data", tmp_path / "c", progress=False)
    name = f"BraTS-GLI-00001-000{OUTPUT_SUFFIX}"
    a, b, c = (np.asarray(nib.load(tmp_path / d / name).dataobj) for d in "abc")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert case_seed(0, "x") != case_seed(0, "y") and case_seed(1, "x") == case_seed(1, "x")


def test_rerun_skips_finished_cases_and_overwrite_redoes(inpainter: Inpainter, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    write_case(data, "BraTS-GLI-00001-000")
    write_case(data, "BraTS-GLI-00002-000", seed=1)
    run_folder(inpainter, data, out, progress=False)
    target = out / f"BraTS-GLI-00001-000{OUTPUT_SUFFIX}"
    before = target.stat().st_mtime_ns
    (out / f"BraTS-GLI-00002-000{OUTPUT_SUFFIX}").unlink()
    summary = run_folder(inpainter, data, out, progress=False)
    assert [r.status for r in summary.records] == ["skipped", "model"]
    assert target.stat().st_mtime_ns == before
    summary = run_folder(inpainter, data, out, progress=False, overwrite=True)
    assert [r.status for r in summary.records] == ["model", "model"]


def test_interrupted_write_leaves_no_partial_file(inpainter: Inpainter, tmp_path: Path, monkeypatch) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    write_case(data, "BraTS-GLI-00001-000")

    def crash(img: nib.Nifti1Image, filename: str) -> None:
        Path(filename).write_bytes(b"half a file")
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(nib, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        run_folder(inpainter, data, out, progress=False)
    assert list(out.iterdir()) == []  # neither the final name nor a temporary file
    monkeypatch.undo()
    # A temporary file left by a SIGKILL is removed by the next run, which then writes the output.
    stale = out / f".BraTS-GLI-00001-000{OUTPUT_SUFFIX}.abc123.tmp.nii.gz"
    stale.write_bytes(b"partial")
    run_folder(inpainter, data, out, progress=False)
    assert [p.name for p in out.iterdir()] == [f"BraTS-GLI-00001-000{OUTPUT_SUFFIX}"]


def test_unreadable_existing_output_is_redone(inpainter: Inpainter, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    write_case(data, "BraTS-GLI-00001-000")
    out.mkdir()
    (out / f"BraTS-GLI-00001-000{OUTPUT_SUFFIX}").write_bytes(b"not a nifti")
    summary = run_folder(inpainter, data, out, progress=False)
    assert summary.records[0].status == "model"
    nib.load(out / f"BraTS-GLI-00001-000{OUTPUT_SUFFIX}").get_fdata()


def test_shards_and_ranges_partition_the_cases(tmp_path: Path) -> None:
    from wdm_inpaint.data.cases import discover_cases

    for i in range(5):
        write_case(tmp_path, f"BraTS-GLI-0000{i}-000")
    cases = discover_cases(tmp_path).cases
    shards = [select_cases(cases, shard=(i, 2)) for i in range(2)]
    assert sorted(c.id for s in shards for c in s) == sorted(c.id for c in cases)
    assert not {c.id for c in shards[0]} & {c.id for c in shards[1]}
    assert [c.id for c in select_cases(cases, beg=1, end=3)] == [cases[1].id, cases[2].id]
    with pytest.raises(ValueError, match="shard"):
        select_cases(cases, shard=(2, 2))


# --------------------------------------------------------------------------- Python API


def test_infer_single_paths_and_arrays_agree(inpainter: Inpainter, tmp_path: Path) -> None:
    case = write_case(tmp_path, "BraTS-GLI-00001-000")
    voided_path = case / "BraTS-GLI-00001-000-t1n-voided.nii.gz"
    mask_path = case / "BraTS-GLI-00001-000-mask.nii.gz"
    out_file = tmp_path / "single.nii.gz"
    from_paths = inpainter.infer_single(voided_path, mask_path, output_file=out_file, seed=5)
    img = nib.load(voided_path)
    from_arrays = inpainter.infer_single(img.get_fdata(), nib.load(mask_path).get_fdata(), affine=img.affine, seed=5)
    np.testing.assert_array_equal(from_paths, from_arrays)
    np.testing.assert_array_equal(np.asarray(nib.load(out_file).dataobj), from_paths)
    mask = region_mask() > 0
    np.testing.assert_array_equal(from_paths[~mask], img.get_fdata(dtype=np.float32)[~mask])


def test_harmonic_sampler_needs_no_checkpoint(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WDM_INPAINT_CHECKPOINT", str(tmp_path / "does-not-exist.pt"))
    classical = Inpainter.from_checkpoint(sampler="harmonic", device="cpu")
    assert classical.model is None
    voided = np.where(region_mask() > 0, 0.0, brain_volume())
    out = classical.infer_single(voided, region_mask())
    inside = region_mask() > 0
    np.testing.assert_array_equal(out[~inside], voided.astype(np.float32)[~inside])
    assert out[inside].min() > 0  # a harmonic fill of positive tissue is positive


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WDM_INPAINT_CHECKPOINT", str(tmp_path / "nope.pt"))
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        Inpainter.from_checkpoint(device="cpu")


def test_cuda_out_of_memory_retries_on_cpu(inpainter: Inpainter, tmp_path: Path, monkeypatch) -> None:
    from wdm_inpaint.inference import runner

    write_case(tmp_path / "data", "BraTS-GLI-00001-000")
    fake = inpainter.with_options()
    fake.device = torch.device("cuda")
    moves: list[str] = []
    original = Inpainter.sample

    def flaky(self: Inpainter, *args, **kwargs):
        if self.device.type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")
        return original(self, *args, **kwargs)

    def move(self: Inpainter, device) -> Inpainter:
        moves.append(str(device))
        self.device = torch.device(device)
        return self

    monkeypatch.setattr(Inpainter, "sample", flaky)
    monkeypatch.setattr(Inpainter, "to", move)
    monkeypatch.setattr(runner.torch.cuda, "empty_cache", lambda: None)
    summary = run_folder(fake, tmp_path / "data", tmp_path / "out", progress=False)
    assert summary.records[0].status == "model" and summary.records[0].device == "cpu"
    assert moves == ["cpu", "cuda"]



def test_next_case_is_prepared_and_previous_one_written_while_a_case_samples(
    inpainter: Inpainter, tmp_path: Path, monkeypatch
) -> None:
    import threading

    ids = ["BraTS-GLI-00001-000", "BraTS-GLI-00002-000", "BraTS-GLI-00003-000"]
    for k, cid in enumerate(ids):
        write_case(tmp_path / "data", cid, seed=k)
    prepared = {cid: threading.Event() for cid in ids}
    finishing = {cid: threading.Event() for cid in ids}
    order: list[str] = []
    real_prepare, real_sample, real_finish = Inpainter.prepare, Inpainter.sample, Inpainter.finish
    shape_to_id: dict[int, str] = {}

    def prepare(self: Inpainter, voided, mask, affine=None):
        out = real_prepare(self, voided, mask, affine)
        cid = ids[len(shape_to_id)]
        shape_to_id[id(out)] = cid
        prepared[cid].set()
        return out

    def sample(self: Inpainter, vol, seed=None):
        cid = shape_to_id[id(vol)]
        order.append(f"sample {cid}")
        later = ids.index(cid) + 1
        if later < len(ids):  # the reader prepares the next case while this one samples
            assert prepared[ids[later]].wait(timeout=30), f"{ids[later]} was not prepared during sampling"
        if ids.index(cid) > 0:  # the writer finishes the previous case while this one samples
            assert finishing[ids[ids.index(cid) - 1]].wait(timeout=30), "previous case not finished concurrently"
        return real_sample(self, vol, seed)

    def finish(self: Inpainter, vol, model_output):
        finishing[shape_to_id[id(vol)]].set()
        return real_finish(self, vol, model_output)

    monkeypatch.setattr(Inpainter, "prepare", prepare)
    monkeypatch.setattr(Inpainter, "sample", sample)
    monkeypatch.setattr(Inpainter, "finish", finish)
    summary = run_folder(inpainter, tmp_path / "data", tmp_path / "out", progress=False)
    assert [r.status for r in summary.records] == ["model"] * 3
    assert [r.case_id for r in summary.records] == ids
    assert order == [f"sample {cid}" for cid in ids]

# --------------------------------------------------------------------------- bad inputs


def _save(path: Path, data: np.ndarray, affine: np.ndarray = LPS_AFFINE) -> None:
    nib.save(nib.Nifti1Image(data, affine), path)


def _bad_corpus(root: Path) -> dict[str, str]:
    """Build cases with one problem each; returns case ID -> expected status."""
    t1n = brain_volume()
    mask = region_mask()
    voided = np.where(mask > 0, 0.0, t1n).astype(np.float32)
    expected: dict[str, str] = {}

    def case(n: int, status: str) -> tuple[str, Path]:
        cid = f"BraTS-GLI-{n:05d}-000"
        folder = root / cid
        folder.mkdir(parents=True)
        expected[cid] = status
        return cid, folder

    cid, f = case(1, "model")  # a good case among the bad ones
    _save(f / f"{cid}-t1n-voided.nii.gz", voided)
    _save(f / f"{cid}-mask.nii.gz", mask)
    cid, f = case(2, "fallback")  # missing mask
    _save(f / f"{cid}-t1n-voided.nii.gz", voided)
    cid, f = case(3, "failed")  # missing voided image
    _save(f / f"{cid}-mask.nii.gz", mask)
    cid, f = case(4, "failed")  # corrupt gzip voided image
    (f / f"{cid}-t1n-voided.nii.gz").write_bytes(gzip.compress(b"x" * 1000)[:40])
    _save(f / f"{cid}-mask.nii.gz", mask)
    cid, f = case(5, "fallback")  # corrupt mask
    _save(f / f"{cid}-t1n-voided.nii.gz", voided)
    (f / f"{cid}-mask.nii.gz").write_bytes(b"\x1f\x8b garbage")
    cid, f = case(6, "failed")  # 4-D voided volume
    _save(f / f"{cid}-t1n-voided.nii.gz", np.stack([voided, voided], -1))
    _save(f / f"{cid}-mask.nii.gz", mask)
    cid, f = case(7, "fallback")  # shape mismatch
    _save(f / f"{cid}-t1n-voided.nii.gz", voided)
    _save(f / f"{cid}-mask.nii.gz", mask[:-2])
    cid, f = case(8, "model")  # non-binary mask (0/255)
    _save(f / f"{cid}-t1n-voided.nii.gz", voided)
    _save(f / f"{cid}-mask.nii.gz", (mask * 255).astype(np.uint8))
    cid, f = case(9, "fallback")  # empty mask
    _save(f / f"{cid}-t1n-voided.nii.gz", t1n.astype(np.float32))
    _save(f / f"{cid}-mask.nii.gz", np.zeros_like(mask))
    cid, f = case(10, "fallback")  # mask covering everything
    _save(f / f"{cid}-t1n-voided.nii.gz", np.zeros_like(voided))
    _save(f / f"{cid}-mask.nii.gz", np.ones_like(mask))
    cid, f = case(11, "fallback")  # NaN voxels
    bad = voided.copy()
    bad[5, 5, 5] = np.nan
    _save(f / f"{cid}-t1n-voided.nii.gz", bad)
    _save(f / f"{cid}-mask.nii.gz", mask)
    cid, f = case(12, "fallback")  # Inf voxels
    bad = voided.copy()
    bad[6, 6, 6] = np.inf
    _save(f / f"{cid}-t1n-voided.nii.gz", bad)
    _save(f / f"{cid}-mask.nii.gz", mask)
    cid, f = case(13, "model")  # negative values
    _save(f / f"{cid}-t1n-voided.nii.gz", voided - 50)
    _save(f / f"{cid}-mask.nii.gz", mask)
    cid, f = case(14, "model")  # integer dtype
    _save(f / f"{cid}-t1n-voided.nii.gz", voided.astype(np.int16))
    _save(f / f"{cid}-mask.nii.gz", mask.astype(np.int16))
    cid, f = case(15, "model")  # float64 dtype
    _save(f / f"{cid}-t1n-voided.nii.gz", voided.astype(np.float64))
    _save(f / f"{cid}-mask.nii.gz", mask.astype(np.float64))
    cid, f = case(16, "model")  # odd (oblique) affine
    angle = 0.3
    rot = np.array([[np.cos(angle), -np.sin(angle), 0, 3], [np.sin(angle), np.cos(angle), 0, -7], [0, 0, 1.2, 1],
                    [0, 0, 0, 1]])
    _save(f / f"{cid}-t1n-voided.nii.gz", voided, rot)
    _save(f / f"{cid}-mask.nii.gz", mask, rot)
    cid, f = case(17, "model")  # extra and hidden files in the case folder
    _save(f / f"{cid}-t1n-voided.nii.gz", voided)
    _save(f / f"{cid}-mask.nii.gz", mask)
    (f / "notes.txt").write_text("unrelated")
    (f / ".DS_Store").write_bytes(b"\0\0")
    _save(f / f".{cid}-mask.nii.gz", np.zeros_like(mask))
    cid, f = case(18, "model")  # 4-D file with a singleton 4th axis
    _save(f / f"{cid}-t1n-voided.nii.gz", voided[..., None])
    _save(f / f"{cid}-mask.nii.gz", mask)
    # Not cases: a file where a case folder would be, a hidden folder, an unrelated folder.
    (root / "BraTS-GLI-00099-000").write_text("a file, not a folder")
    (root / ".hidden").mkdir()
    _save(root / ".hidden" / "x.nii.gz", voided)
    (root / "README.txt").write_text("not a case")
    return expected


def test_bad_input_corpus_gets_documented_behaviour(inpainter: Inpainter, tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    expected = _bad_corpus(data)
    assert len(expected) >= 15
    summary = run_folder(inpainter, data, out, progress=False)
    statuses = {r.case_id: r.status for r in summary.records}
    assert statuses == expected
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{cid}{OUTPUT_SUFFIX}" for cid, s in expected.items() if s != "failed")
    for record in summary.records:
        if record.status == "fallback":
            assert record.reason  # every fallback says why
    for cid, status in expected.items():
        if status == "failed":
            continue
        pred = np.asarray(nib.load(out / f"{cid}{OUTPUT_SUFFIX}").dataobj)
        src = nib.load(data / cid / f"{cid}-t1n-voided.nii.gz")
        assert pred.shape == src.shape and np.squeeze(pred).shape == TINY_SHAPE and pred.dtype == np.float32
        pred = pred.reshape(TINY_SHAPE)  # a 4-D input with a singleton 4th axis keeps it in the output
        assert np.isfinite(pred).all()
        np.testing.assert_array_equal(nib.load(out / f"{cid}{OUTPUT_SUFFIX}").affine, src.affine)
        voided = np.squeeze(src.get_fdata(dtype=np.float32))
        finite = np.isfinite(voided)
        mask_file = data / cid / f"{cid}-mask.nii.gz"
        try:
            m = nib.load(mask_file).get_fdata() >= 0.5
            if m.shape != voided.shape:
                raise ValueError
        except Exception:  # noqa: BLE001 - guessed masks: check only voxels that are certainly known
            m = voided == 0
        known = ~m & finite
        np.testing.assert_array_equal(pred[known], voided[known])
    # the good case is unaffected by its bad neighbours
    good = np.asarray(nib.load(out / f"BraTS-GLI-00001-000{OUTPUT_SUFFIX}").dataobj)
    assert np.abs(good[region_mask() > 0]).max() > 0


def test_cli_exit_codes_and_summary(checkpoint: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    write_case(data, "BraTS-GLI-00001-000")
    args = ["infer", "-i", str(data), "-o", str(tmp_path / "out"), "-m", str(checkpoint), "--steps", "1",
            "--no-progress", "--device", "cpu"]
    assert cli_main(args) == 0
    assert "1 inpainted by the model" in capsys.readouterr().out
    (data / "BraTS-GLI-00002-000").mkdir()
    _save(data / "BraTS-GLI-00002-000" / "BraTS-GLI-00002-000-t1n-voided.nii.gz", brain_volume().astype(np.float32))
    assert cli_main(args) == 3  # the case without a mask used the fallback
    assert "1 by the harmonic fallback" in capsys.readouterr().out
    assert cli_main(args + ["--fallback-ok", "--overwrite"]) == 0
    (data / "BraTS-GLI-00003-000").mkdir()
    _save(data / "BraTS-GLI-00003-000" / "BraTS-GLI-00003-000-mask.nii.gz", region_mask())
    assert cli_main(args) == 1  # a case without a voided scan gets no output
    assert cli_main(["infer", "-i", str(tmp_path / "missing"), "-o", str(tmp_path / "o2"), "-m", str(checkpoint)]) == 1



def test_cli_fast_path_flags_reach_the_network_and_the_run_record(checkpoint: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_case(data, "BraTS-GLI-00001-000")
    common = ["infer", "-i", str(data), "-m", str(checkpoint), "--steps", "2", "--no-progress", "--device", "cpu"]
    assert cli_main(common + ["-o", str(tmp_path / "plain"), "--precision", "float32"]) == 0
    assert cli_main(common + ["-o", str(tmp_path / "fast"), "--precision", "bfloat16", "--channels-last"]) == 0
    records = {name: json.loads(next((tmp_path / f"{name}-logs").glob("run-*.json")).read_text())
               for name in ("plain", "fast")}
    assert records["plain"]["inpainter"]["acceleration"] == "fp32"
    assert records["fast"]["inpainter"]["acceleration"] == "bf16+channels_last"
    name = "BraTS-GLI-00001-000-t1n-inference.nii.gz"
    plain = read_nifti(tmp_path / "plain" / name).data
    fast = read_nifti(tmp_path / "fast" / name).data
    mask = region_mask().astype(bool)
    assert np.array_equal(plain[~mask], fast[~mask])
    assert not np.array_equal(plain[mask], fast[mask])
    assert np.abs(plain[mask] - fast[mask]).mean() <= 0.01 * np.ptp(plain[mask])

# --------------------------------------------------------------------------- the committed demo case


@pytest.mark.slow
def test_demo_case_end_to_end_then_validate_and_evaluate(tmp_path: Path, capsys) -> None:
    from conftest import DEMO_DIR

    case_id = "BraTS-GLI-99999-000"
    if not (DEMO_DIR / case_id).is_dir():
        pytest.fail(f"the committed demo case {DEMO_DIR / case_id} is missing")
    ckpt = make_tiny_checkpoint(tmp_path / "tiny_crop.pt", mode="akh_context", crop=True)
    out = tmp_path / "pred"
    args = ["infer", "-i", str(DEMO_DIR), "-o", str(out), "-m", str(ckpt), "--steps", "2", "--no-progress",
            "--device", "cpu"]
    assert cli_main(args) == 0
    pred_img = nib.load(out / f"{case_id}{OUTPUT_SUFFIX}")
    voided_img = nib.load(DEMO_DIR / case_id / f"{case_id}-t1n-voided.nii.gz")
    mask = nib.load(DEMO_DIR / case_id / f"{case_id}-mask.nii.gz").get_fdata() > 0.5
    pred = np.asarray(pred_img.dataobj)
    assert pred.shape == (240, 240, 155) and pred.dtype == np.float32
    np.testing.assert_array_equal(pred_img.affine, voided_img.affine)
    np.testing.assert_array_equal(pred_img.get_qform(), voided_img.get_qform())
    np.testing.assert_array_equal(pred[~mask], voided_img.get_fdata(dtype=np.float32)[~mask])
    assert (pred[mask] >= 0).all() and pred[mask].max() > 0
    capsys.readouterr()
    assert cli_main(["validate-submission", "-i", str(DEMO_DIR), "-p", str(out)]) == 0
    report = tmp_path / "scores.json"
    assert cli_main(["evaluate", "-i", str(DEMO_DIR), "-p", str(out), "--json", str(report)]) == 0
    scores = json.loads(report.read_text())
    assert "synapse" in json.dumps(scores) and "package" in json.dumps(scores)


def test_steps_above_the_trained_timesteps_are_capped(inpainter: Inpainter) -> None:
    trained = inpainter.config.schedule.num_timesteps
    capped = inpainter.with_options(steps=trained + 5).pipeline_config(seed=0)
    assert capped.sampler.num_steps == trained
    assert inpainter.with_options(steps=3).pipeline_config(seed=0).sampler.num_steps == 3
