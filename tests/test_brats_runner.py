"""The image run through the organisers' own runner: ``brats.core.docker.run_container`` (BrainLesion ``brats``).

It mounts the folders, runs with ``network_mode="none"``, the caller's uid:gid and ``shm_size``, and checks that
there are as many outputs as inputs. Two algorithm styles: 2024 (MLCube call ``infer --data_path=/mlcube_io0
--output_path=/mlcube_io2``) and 2025 (``/input`` → ``/output``, no command). Each run gets the demo case and a bad
case beside it, and the submission must then pass ``validate-submission``. The image is local: a pull is an error.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from test_container import _check_submission, _world_readable, cases, docker_env, image  # noqa: F401 - fixtures

brats_docker = pytest.importorskip("brats.core.docker", reason="pip install brats==0.1.14 (the organisers' runner)")
from brats.utils.algorithm_config import AlgorithmData, MetaData, RunArgs  # noqa: E402

pytestmark = [
    pytest.mark.container,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:typing.io is deprecated:DeprecationWarning"),
]

BAD_CASE = "BraTS-GLI-99998-000"
"""A case beside the demo one whose mask holds 0/255 and a stray 0.5 (binarised; the model runs)."""


def _algorithm(image_tag: str, year: int) -> AlgorithmData:
    return AlgorithmData(
        meta=MetaData(
            authors="wdm-inpaint developers",
            paper="N/A",
            challenge="Inpainting",
            challenge_manuscript="N/A",
            rank="test",
            year=year,
        ),
        run_args=RunArgs(
            docker_image=image_tag,
            input_name_schema="BraTS-GLI-{id:05d}-000",
            parameters_file=False,
            cpu_compatible=True,
            shm_size="1gb",
        ),
        additional_files=None,
    )


def _add_bad_case(data: Path) -> None:
    demo = next(p for p in sorted(data.iterdir()) if p.is_dir())
    folder = data / BAD_CASE
    folder.mkdir()
    voided = nib.load(demo / f"{demo.name}-t1n-voided.nii.gz")
    mask = nib.load(demo / f"{demo.name}-mask.nii.gz")
    nib.save(voided, folder / f"{BAD_CASE}-t1n-voided.nii.gz")
    values = (np.asarray(mask.dataobj) > 0).astype(np.float32) * 255
    values[0, 0, 0] = 0.5
    nib.save(nib.Nifti1Image(values, mask.affine, mask.header), folder / f"{BAD_CASE}-mask.nii.gz")
    _world_readable(data)


@pytest.fixture()
def runner(docker_env, monkeypatch):  # noqa: F811 - the fixture imported above
    """``brats.core.docker`` talking to the private engine, with pulls forbidden (the image must be local)."""
    import docker

    client = docker.DockerClient(base_url=docker_env["DOCKER_HOST"])

    def no_pull(*args, **kwargs):
        raise AssertionError(f"brats tried to pull {args or kwargs}: the image is local")

    monkeypatch.setattr(client.api, "pull", no_pull)
    monkeypatch.setattr(brats_docker, "client", client)
    yield brats_docker
    client.close()


@pytest.mark.parametrize("year", [2024, 2025], ids=["mlcube-2024", "input-output-2025"])
def test_brats_run_container_then_validate(runner, image, cases, tmp_path, year):  # noqa: F811
    _add_bad_case(cases)
    out = tmp_path / f"out-{year}"
    runner.run_container(_algorithm(image, year), data_path=cases, output_path=out, cuda_devices="0", force_cpu=True)
    _check_submission(cases, out, owner=out.stat().st_uid)
    assert not any(p.name.startswith(".") for p in out.iterdir())
    shutil.rmtree(out)
