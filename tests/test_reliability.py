"""Nothing lost, ever (issue 16): shared output folders, resume that verifies, stop signals, clear errors."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import tokenize
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from _inference_helpers import TINY_SHAPE, brain_volume, make_tiny_checkpoint, region_mask, write_case
from wdm_inpaint.cli.main import main as cli_main
from wdm_inpaint.data.mask_values import MASK_THRESHOLD, binarise_mask, inside
from wdm_inpaint.inference import runner as runner_module
from wdm_inpaint.inference.input_folder import NoCasesError
from wdm_inpaint.inference.inpainter import Inpainter
from wdm_inpaint.inference.inputs import read_case_inputs
from wdm_inpaint.inference.output_folder import OutputFolderError
from wdm_inpaint.inference.records import default_log_dir
from wdm_inpaint.inference.runner import OUTPUT_SUFFIX, run_folder
from wdm_inpaint.inference.stop_signals import RunInterrupted, stop_signals
from wdm_inpaint.data.cases import scan_case_folder
from wdm_inpaint.io.atomic import FolderLock, atomic_path
from wdm_inpaint.io.nifti import volume_problem

PACKAGE = Path(__file__).resolve().parents[1] / "project" / "wdm_inpaint"
IDS = [f"BraTS-GLI-{n:05d}-000" for n in range(1, 4)]


@pytest.fixture(scope="module")
def harmonic() -> Inpainter:
    return Inpainter.from_checkpoint(None, device="cpu", sampler="harmonic")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Inpainter:
    ckpt = make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")
    return Inpainter.from_checkpoint(ckpt, device="cpu", sampler="ddim", steps=1, seed=3)


def _data(root: Path, ids: list[str] = IDS) -> Path:
    for i, cid in enumerate(ids):
        write_case(root, cid, seed=i)
    return root


def _outputs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir())


# --------------------------------------------------------------------------- 1. shared output folder


def test_a_live_runs_temporary_survives_another_run_in_the_same_folder(harmonic: Inpainter, tmp_path: Path) -> None:
    data, out = _data(tmp_path / "data"), tmp_path / "out"
    out.mkdir()
    other = FolderLock(out).acquire()  # another run, alive, in the middle of writing a case of its shard
    target = out / f"BraTS-GLI-00009-000{OUTPUT_SUFFIX}"
    with atomic_path(target) as live:
        live.write_bytes(b"half written")
        run_folder(harmonic, data, out, progress=False)
        assert live.exists(), "a live run's temporary was deleted"
        live.write_bytes(b"done")
    other.release()
    assert target.read_bytes() == b"done"
    assert _outputs(out) == sorted([f"{cid}{OUTPUT_SUFFIX}" for cid in IDS] + [target.name])


def test_a_dead_runs_temporary_and_lock_are_removed(harmonic: Inpainter, tmp_path: Path) -> None:
    data, out = _data(tmp_path / "data"), tmp_path / "out"
    out.mkdir()
    token = "wdm4242-0123456789ab"  # what a killed run leaves: its lock file (nobody holds it) and a temporary
    (out / f".wdm-owner-{token}.lock").write_bytes(b"")
    (out / f".{IDS[0]}{OUTPUT_SUFFIX}.{token}.tmp1a2b.nii.gz").write_bytes(b"partial")
    run_folder(harmonic, data, out, progress=False)
    assert _outputs(out) == [f"{cid}{OUTPUT_SUFFIX}" for cid in IDS]


def test_two_runs_on_one_folder_cooperate(harmonic: Inpainter, tmp_path: Path, monkeypatch) -> None:
    """A case written by another run while this one works is skipped, not redone or lost."""
    data, out = _data(tmp_path / "data"), tmp_path / "out"
    real = runner_module.sample_case

    def sample_and_let_the_other_run_write(inpainter, loaded):
        if loaded.inputs.case_id == IDS[0]:
            (out / f"{IDS[2]}{OUTPUT_SUFFIX}").write_bytes((out / f"{IDS[0]}{OUTPUT_SUFFIX}").read_bytes()
                                                          if (out / f"{IDS[0]}{OUTPUT_SUFFIX}").exists() else b"x")
        return real(inpainter, loaded)

    monkeypatch.setattr(runner_module, "sample_case", sample_and_let_the_other_run_write)
    summary = run_folder(harmonic, data, out, progress=False)
    assert [r.status for r in summary.records] == ["model", "model", "skipped"]


# --------------------------------------------------------------------------- 2. resume verifies


@pytest.mark.parametrize("damage", ["truncated", "wrong-shape", "integer", "nan"])
def test_resume_redoes_a_bad_final_file(harmonic: Inpainter, tmp_path: Path, damage: str) -> None:
    data, out = _data(tmp_path / "data", IDS[:1]), tmp_path / "out"
    run_folder(harmonic, data, out, progress=False)
    final = out / f"{IDS[0]}{OUTPUT_SUFFIX}"
    good = final.read_bytes()
    if damage == "truncated":
        final.write_bytes(good[: len(good) // 2])
    else:
        values = {"wrong-shape": np.zeros((4, 4, 4), np.float32), "integer": np.zeros(TINY_SHAPE, np.int16),
                  "nan": np.full(TINY_SHAPE, np.nan, np.float32)}[damage]
        nib.save(nib.Nifti1Image(values, np.eye(4)), final)
    assert nib.load(final).shape  # the header alone looks fine
    summary = run_folder(harmonic, data, out, progress=False)
    assert summary.records[0].status != "skipped"
    assert volume_problem(final, TINY_SHAPE) is None
    assert final.read_bytes() == good


def test_resume_skips_a_valid_output(harmonic: Inpainter, tmp_path: Path) -> None:
    data, out = _data(tmp_path / "data", IDS[:1]), tmp_path / "out"
    run_folder(harmonic, data, out, progress=False)
    assert run_folder(harmonic, data, out, progress=False).records[0].status == "skipped"


# --------------------------------------------------------------------------- 3. stop signals


def test_sigterm_finishes_the_file_being_written_and_records_the_stop(
    harmonic: Inpainter, tmp_path: Path, monkeypatch
) -> None:
    data, out = _data(tmp_path / "data"), tmp_path / "out"
    real = runner_module.write_like

    def write_then_stop(path, values, reference):
        if path.name.startswith(IDS[1]):
            os.kill(os.getpid(), signal.SIGTERM)  # arrives in the main thread while this thread writes
        return real(path, values, reference)

    monkeypatch.setattr(runner_module, "write_like", write_then_stop)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RunInterrupted) as stop:
        run_folder(harmonic, data, out, progress=False)
    assert stop.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is previous
    names = _outputs(out)
    assert not [n for n in names if n.startswith(".")], names  # no temporary, no lock file
    assert set(names) <= {f"{cid}{OUTPUT_SUFFIX}" for cid in IDS} and len(names) < len(IDS)
    for name in names:
        assert volume_problem(out / name, TINY_SHAPE) is None
    records = [json.loads(p.read_text()) for p in default_log_dir(out).glob("run-*.json")]
    assert [r["status"] for r in records] == ["interrupted"]
    monkeypatch.setattr(runner_module, "write_like", real)
    run_folder(harmonic, data, out, progress=False)
    assert _outputs(out) == [f"{cid}{OUTPUT_SUFFIX}" for cid in IDS]
    assert cli_main(["validate-submission", "-i", str(data), "-p", str(out)]) == 0


def test_a_signal_inside_a_critical_section_is_raised_at_its_end() -> None:
    with stop_signals() as stop:
        with pytest.raises(RunInterrupted):
            with stop.critical():
                os.kill(os.getpid(), signal.SIGINT)
                cleaned = True
        assert cleaned and stop.received == signal.SIGINT


# --------------------------------------------------------------------------- 4. mask threshold


def test_a_mask_value_of_exactly_one_half_is_inside(tmp_path: Path) -> None:
    assert MASK_THRESHOLD == 0.5
    assert binarise_mask(np.array([0.0, 0.49, 0.5, 1.0, np.nan])).tolist() == [False, False, True, True, False]
    import torch

    assert inside(torch.tensor([0.49, 0.5])).tolist() == [False, True]
    folder = write_case(tmp_path, IDS[0])
    mask_file = folder / f"{IDS[0]}-mask.nii.gz"
    mask = region_mask().astype(np.float32) * 0.5
    nib.save(nib.Nifti1Image(mask, nib.load(mask_file).affine), mask_file)
    inputs = read_case_inputs(scan_case_folder(folder))
    assert np.array_equal(inputs.mask, region_mask() > 0)


def test_no_bare_one_half_mask_comparison_is_left_in_the_package() -> None:
    """Code (not text) compares with 0.5 nowhere: masks go through MASK_THRESHOLD."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
                  if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE)]
        for before, token in zip(tokens, tokens[1:]):
            if token.type == tokenize.NUMBER and token.string == "0.5" and before.string in ("<", ">", "<=", ">="):
                found.append(f"{path.relative_to(PACKAGE)}:{token.start[0]}")
    assert found == []


# --------------------------------------------------------------------------- 5. zero cases


@pytest.mark.parametrize("where", ["empty", "case-folder"])
def test_zero_cases_is_an_error_naming_the_layout(harmonic: Inpainter, tmp_path: Path, where: str, caplog) -> None:
    data = tmp_path / "data"
    data.mkdir()
    if where == "case-folder":
        data = write_case(data, IDS[0])
    with pytest.raises(NoCasesError, match="<ID>/<ID>-t1n-voided.nii.gz") as err:
        run_folder(harmonic, data, tmp_path / "out", progress=False)
    if where == "case-folder":
        assert "pass its parent folder" in str(err.value)
    rc = cli_main(["infer", "-i", str(data), "-o", str(tmp_path / "out2"), "--sampler", "harmonic", "--no-progress"])
    assert rc == 1
    assert "no case found" in caplog.text


# --------------------------------------------------------------------------- 6. 4-D singleton input


def test_a_4d_singleton_input_gives_an_output_of_its_shape_and_header(harmonic: Inpainter, tmp_path: Path) -> None:
    folder = write_case(tmp_path / "data", IDS[0])
    voided_file = folder / f"{IDS[0]}-t1n-voided.nii.gz"
    img = nib.load(voided_file)
    four = nib.Nifti1Image(np.asarray(img.dataobj)[..., None], img.affine)
    four.header.set_xyzt_units("mm", "sec")
    nib.save(four, voided_file)
    out = tmp_path / "out"
    run_folder(harmonic, tmp_path / "data", out, progress=False)
    pred = nib.load(out / f"{IDS[0]}{OUTPUT_SUFFIX}")
    assert pred.shape == (*TINY_SHAPE, 1)
    assert pred.header["dim"].tolist() == nib.load(voided_file).header["dim"].tolist()
    assert pred.header.get_xyzt_units() == ("mm", "sec")
    assert cli_main(["validate-submission", "-i", str(tmp_path / "data"), "-p", str(out)]) == 0


# --------------------------------------------------------------------------- 7. OS errors


def _one_line_error(capsys, caplog) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out + caplog.text
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0]
    return errors[0]


def test_output_path_that_is_a_file_is_one_line(tmp_path: Path, capsys, caplog) -> None:
    data = _data(tmp_path / "data", IDS[:1])
    target = tmp_path / "out"
    target.write_text("a file")
    assert cli_main(["infer", "-i", str(data), "-o", str(target), "--sampler", "harmonic", "--no-progress"]) == 1
    message = _one_line_error(capsys, caplog)
    assert str(target) in message and "file" in message


def test_output_folder_under_a_file_is_one_line(tmp_path: Path, capsys, caplog) -> None:
    data = _data(tmp_path / "data", IDS[:1])
    parent = tmp_path / "parent"
    parent.write_text("not a folder")
    target = parent / "out"
    assert cli_main(["infer", "-i", str(data), "-o", str(target), "--sampler", "harmonic", "--no-progress"]) == 1
    message = _one_line_error(capsys, caplog)
    assert str(target) in message and "cannot be created" in message


def test_an_unwritable_output_folder_is_refused_before_any_case_is_sampled(
    model: Inpainter, tmp_path: Path, monkeypatch
) -> None:
    data, out = _data(tmp_path / "data", IDS[:1]), tmp_path / "out"
    out.mkdir()

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self.path))

    sampled = []
    monkeypatch.setattr(FolderLock, "acquire", refuse)
    monkeypatch.setattr(Inpainter, "sample", lambda *a, **k: sampled.append(1))
    with pytest.raises(OutputFolderError, match=f"output folder {re.escape(str(out))} is not writable"):
        run_folder(model, data, out, progress=False)
    assert sampled == [] and _outputs(out) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_parent_is_one_line(tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    with pytest.raises(OutputFolderError, match="cannot be created: Permission denied"):
        run_folder(Inpainter.from_checkpoint(None, sampler="harmonic"), _data(tmp_path / "data", IDS[:1]),
                   parent / "out", progress=False)


# --------------------------------------------------------------------------- 8. mask voxels outside the model grid


def test_mask_voxels_outside_the_model_grid_are_filled_and_counted_as_fallback(tmp_path: Path) -> None:
    import torch

    from wdm_inpaint.checkpoint import save_checkpoint
    from wdm_inpaint.config import ModeConfig, PreprocessConfig, UNetConfig, WDMConfig
    from wdm_inpaint.models.unet import WDMUNet

    config = WDMConfig(
        unet=UNetConfig(in_channels=16, model_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, num_groups=4),
        mode=ModeConfig(name="akh"),
        preprocess=PreprocessConfig(spatial_size=(32, 24, 24), crop=False),  # crops axis 1 (34) and 2 (26)
    )
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "grid.pt", WDMUNet(config.unet), config)
    inpainter = Inpainter.from_checkpoint(ckpt, device="cpu", sampler="ddim", steps=1)
    folder = tmp_path / "data" / IDS[0]
    folder.mkdir(parents=True)
    t1n = 400.0 + brain_volume()  # tissue up to the edges
    mask = np.zeros(TINY_SHAPE, np.uint8)
    mask[10:20, 0:8, 10:16] = 1  # reaches 5 voxels outside the grid on axis 1
    nib.save(nib.Nifti1Image(np.where(mask > 0, 0.0, t1n).astype(np.float32), np.eye(4)),
             folder / f"{IDS[0]}-t1n-voided.nii.gz")
    nib.save(nib.Nifti1Image(mask, np.eye(4)), folder / f"{IDS[0]}-mask.nii.gz")
    summary = run_folder(inpainter, tmp_path / "data", tmp_path / "out", progress=False)
    record = summary.records[0]
    assert record.status == "fallback" and "outside the model grid" in record.reason
    pred = np.asarray(nib.load(tmp_path / "out" / f"{IDS[0]}{OUTPUT_SUFFIX}").dataobj)
    assert (pred[10:20, 0:5, 10:16] > 100).all()  # filled, not left at the voided 0
