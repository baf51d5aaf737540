"""The image built and run with a real Docker engine, like a challenge runner would: plain ``docker run`` on
``/input`` → ``/output`` with no arguments, ``mlcube run --task=infer``, and ``docker compose run``; every run with
the input read-only, no network and a non-root user, checked like a submission.

The engine comes from ``.ci/docker_engine.sh`` (a private dockerd without bridge or iptables, plus a base image
made from Debian packages, both cached under ``~/.cache/wdm-inpaint-ci``). The image is built from the repository's
Dockerfile with that base, the local CPU torch wheel and a tiny random-weight checkpoint. The tests skip, with the
helper's reason, only where no engine can be started.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import DEMO_DIR, REPO_ROOT

pytestmark = [
    pytest.mark.container,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:typing.io is deprecated:DeprecationWarning"),
]

ENGINE_SCRIPT = REPO_ROOT / ".ci" / "docker_engine.sh"
CACHE_DIR = Path(
    os.environ.get("WDM_CI_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wdm-inpaint-ci"
)
BASE_IMAGE = os.environ.get("WDM_BASE_IMAGE", "local/debian-py:bookworm")
CACHE_TAG = "local/wdm-inpaint-ci:cache"
"""Tag kept between runs so that the next build reuses the dependency layers (removed by docker_engine.sh clean)."""
TEST_PARAMETERS = "steps: 1\nseed: 3\n"
"""One sampling step: the tiny random network only has to produce a valid file quickly."""
ENGINE_TIMEOUT_S = 900
BUILD_TIMEOUT_S = 1800
RUN_TIMEOUT_S = 600
CASE_ID = re.compile(r"^BraTS-[A-Z]+-\d{5}-\d{3}$")
MLCUBE_OUTPUT_OWNER = 4242
COMPOSE_OUTPUT_OWNER = 4343


def _image_uid() -> int:
    match = re.search(r"^ARG APP_UID=(\d+)$", (REPO_ROOT / "Dockerfile").read_text(), re.M)
    assert match, "Dockerfile declares no APP_UID"
    return int(match.group(1))


def _run(cmd: list[str], env: dict[str, str], timeout: int, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, **kwargs)


def _ok(proc: subprocess.CompletedProcess, what: str) -> None:
    output = f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"{what} failed (exit {proc.returncode}):\n{output}"


@pytest.fixture(scope="module")
def docker_env():
    """Environment whose DOCKER_HOST points at the private engine; stops the engine afterwards if it started it."""
    if shutil.which("bash") is None:
        pytest.skip("bash is needed to start the Docker engine")
    env = {**os.environ, "WDM_CI_CACHE": str(CACHE_DIR)}
    status = _run(["bash", str(ENGINE_SCRIPT), "status"], env, 60)
    started = status.returncode != 0
    proc = status if not started else _run(["bash", str(ENGINE_SCRIPT), "start"], env, ENGINE_TIMEOUT_S)
    if proc.returncode == 3:
        reason = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "no reason given"
        pytest.skip(f"no Docker engine can be started here: {reason}")
    _ok(proc, "starting the Docker engine")
    host = proc.stdout.strip().splitlines()[-1]
    assert host.startswith("DOCKER_HOST="), proc.stdout
    env["DOCKER_HOST"] = host.split("=", 1)[1]
    yield env
    if started:
        _run(["bash", str(ENGINE_SCRIPT), "stop"], env, 120)


def _torch_wheel() -> Path:
    """The CPU torch wheel matching this environment (pip finds it in the local wheel folder or its cache)."""
    folder = CACHE_DIR / "wheels"
    folder.mkdir(parents=True, exist_ok=True)
    version = torch.__version__
    found = sorted(folder.glob(f"torch-{version}-*.whl"))
    if not found:
        proc = _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.11",
                f"torch=={version}",
                "-d",
                str(folder),
            ],
            dict(os.environ),
            900,
        )
        _ok(proc, f"pip download torch=={version}")
        found = sorted(folder.glob(f"torch-{version}-*.whl"))
    assert found, f"no torch wheel for {version} in {folder}"
    return found[-1]


def _tiny_checkpoint(path: Path) -> None:
    """A random-weight checkpoint small enough to sample a case in seconds on a CPU (crop around the mask)."""
    from wdm_inpaint.checkpoint import save_checkpoint
    from wdm_inpaint.config import PreprocessConfig, ScheduleConfig, UNetConfig, WDMConfig
    from wdm_inpaint.models.unet import WDMUNet

    config = WDMConfig(
        unet=UNetConfig(in_channels=16, model_channels=8, channel_mult=(1, 2), num_res_blocks=1, num_groups=8),
        schedule=ScheduleConfig(num_timesteps=100),
        preprocess=PreprocessConfig(crop=True, spatial_size=None),
    )
    torch.manual_seed(0)
    save_checkpoint(path, WDMUNet(config.unet), config)


def _build_context(folder: Path) -> tuple[Path, Path]:
    """The files the Dockerfile uses, plus the torch wheel and the tiny checkpoint; returns (wheel, checkpoint)."""
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml"):
        shutil.copy2(REPO_ROOT / name, folder / name)
    readme = REPO_ROOT / "README.md"
    if readme.exists():
        shutil.copy2(readme, folder / "README.md")
    else:
        (folder / "README.md").write_text("# wdm-inpaint\n")
    shutil.copytree(
        REPO_ROOT / "project",
        folder / "project",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pt", "*.pth"),
    )
    wheel = _torch_wheel()
    (folder / "wheels").mkdir()
    try:
        os.link(wheel, folder / "wheels" / wheel.name)
    except OSError:
        shutil.copy2(wheel, folder / "wheels" / wheel.name)
    checkpoint = folder / "tiny-checkpoint.pt"
    _tiny_checkpoint(checkpoint)
    return wheel, checkpoint


@pytest.fixture(scope="module")
def image(docker_env, tmp_path_factory):
    """Build the image; removes it afterwards (the cache tag and the base image stay)."""
    context = tmp_path_factory.mktemp("context")
    wheel, checkpoint = _build_context(context)
    tag = f"wdm-inpaint-test:{os.getpid()}"
    start = time.monotonic()
    proc = _run(
        [
            "docker",
            "build",
            "--network",
            "host",
            "--build-arg",
            f"BASE={BASE_IMAGE}",
            "--build-arg",
            f"TORCH_SPEC=/opt/wdm-inpaint/build/{wheel.name}",
            "--build-arg",
            f"CHECKPOINT={checkpoint.name}",
            "-t",
            tag,
            "-t",
            CACHE_TAG,
            str(context),
        ],
        docker_env,
        BUILD_TIMEOUT_S,
    )
    _ok(proc, "docker build")
    size = _run(["docker", "image", "inspect", "--format", "{{.Size}}", tag], docker_env, 60).stdout.strip()
    print(f"\nimage {tag}: built in {time.monotonic() - start:.0f} s, {int(size) / 1e9:.2f} GB")
    shutil.rmtree(context)
    yield tag
    _run(["docker", "rmi", tag], docker_env, 120)
    _run(["docker", "image", "prune", "--force"], docker_env, 300)


@pytest.fixture()
def cases(tmp_path):
    """The demo case(s) in a folder of their own (the runs mount it read-only)."""
    folders = sorted(p for p in DEMO_DIR.glob("*") if p.is_dir() and CASE_ID.match(p.name)) if DEMO_DIR.is_dir() else []
    if not folders:
        pytest.skip(f"no demo case in {DEMO_DIR}")
    data = tmp_path / "cases"
    for folder in folders:
        shutil.copytree(folder, data / folder.name)
    _world_readable(tmp_path)
    return data


@pytest.fixture()
def parameters(tmp_path):
    folder = tmp_path / "params"
    folder.mkdir()
    (folder / "parameters.yaml").write_text(TEST_PARAMETERS)
    _world_readable(tmp_path)
    return folder / "parameters.yaml"


def _world_readable(folder: Path) -> None:
    """Let the container's non-root users read the test files (pytest's folders are private to their owner)."""
    for path in (folder, *folder.parents):
        if path == Path(path.anchor):
            break
        path.chmod(path.stat().st_mode | 0o055)
    for path in folder.rglob("*"):
        path.chmod(path.stat().st_mode | (0o055 if path.is_dir() else 0o044))


def _output_folder(tmp_path: Path, owner: int) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    os.chown(out, owner, owner)
    _world_readable(tmp_path)
    out.chmod(0o755)
    return out


def _check_submission(data: Path, out: Path, owner: int) -> None:
    """One output per case and nothing else, the input's geometry, known voxels untouched, owned by ``owner``."""
    from wdm_inpaint.cli.main import main as cli_main

    case_ids = sorted(p.name for p in data.iterdir() if p.is_dir())
    assert sorted(os.listdir(out)) == [f"{cid}-t1n-inference.nii.gz" for cid in case_ids]
    for cid in case_ids:
        voided = nib.load(data / cid / f"{cid}-t1n-voided.nii.gz")
        mask = np.asarray(nib.load(data / cid / f"{cid}-mask.nii.gz").dataobj) > 0
        result_path = out / f"{cid}-t1n-inference.nii.gz"
        result = nib.load(result_path)
        assert result_path.stat().st_uid == owner
        assert result.shape == voided.shape
        assert np.array_equal(result.affine, voided.affine)
        assert np.array_equal(result.get_qform(), voided.get_qform())
        assert result.get_data_dtype() == np.float32
        values = result.get_fdata(dtype=np.float32)
        assert np.isfinite(values).all()
        known = voided.get_fdata(dtype=np.float32)
        assert np.array_equal(values[~mask], known[~mask])
        assert mask.any()
    assert cli_main(["validate-submission", "-i", str(data), "-p", str(out)]) == 0


def test_image_runs_without_arguments_on_input_and_output(image, docker_env, cases, parameters, tmp_path):
    """The 2025+ convention: `docker run -v IN:/input:ro -v OUT:/output IMAGE`, as the image's own user."""
    uid = _image_uid()
    out = _output_folder(tmp_path, uid)
    proc = _run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            f"{cases}:/input:ro",
            "-v",
            f"{out}:/output",
            "-v",
            f"{parameters.parent}:/params:ro",
            "-e",
            "WDM_INPAINT_PARAMETERS=/params/parameters.yaml",
            image,
        ],
        docker_env,
        RUN_TIMEOUT_S,
    )
    _ok(proc, "docker run")
    _check_submission(cases, out, owner=uid)


def test_image_rejects_an_output_folder_it_cannot_write(image, docker_env, cases, tmp_path):
    out = _output_folder(tmp_path, 0)
    proc = _run(
        ["docker", "run", "--rm", "--network", "none", "-v", f"{cases}:/input:ro", "-v", f"{out}:/output", image],
        docker_env,
        RUN_TIMEOUT_S,
    )
    assert proc.returncode == 2
    assert f"output folder /output is not writable by uid {_image_uid()}" in proc.stderr
    assert os.listdir(out) == []


def test_mlcube_run_infer(image, docker_env, cases, parameters, tmp_path):
    """`mlcube run --task=infer` from the repository root; the image starts as root and works as the output's owner."""
    mlcube = Path(sys.executable).parent / "mlcube"
    if not mlcube.exists():
        pytest.skip("the mlcube command is not installed (pip install mlcube==0.0.9 mlcube-docker==0.0.9)")
    out = _output_folder(tmp_path, MLCUBE_OUTPUT_OWNER)
    env = {**docker_env, "MLCUBE_SYSTEM_SETTINGS": str(tmp_path / "mlcube_settings.yaml")}
    # `-P` values must not contain the letter h: click would read it as -h and print the help (see test name).
    assert "h" not in image
    proc = _run(
        [
            str(mlcube),
            "run",
            f"--mlcube={REPO_ROOT}",
            "--task=infer",
            "--platform=docker",
            f"data_path={cases}",
            f"output_path={out}",
            f"parameters_file={parameters}",
            f"-Pdocker.image={image}",
            "-Pplatform.accelerator_count=0",
        ],
        env,
        RUN_TIMEOUT_S,
        cwd=tmp_path,
    )
    _ok(proc, "mlcube run")
    _check_submission(cases, out, owner=MLCUBE_OUTPUT_OWNER)


def _compose_command(env: dict[str, str]) -> list[str] | None:
    if _run(["docker", "compose", "version"], env, 60).returncode == 0:
        return ["docker", "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_run_infer_cpu(image, docker_env, cases, parameters, tmp_path):
    """`docker compose run infer-cpu` with the folders from environment variables (read-only root file system)."""
    compose = _compose_command(docker_env)
    if compose is None:
        pytest.skip("no compose plugin (`docker compose`) and no `docker-compose` here")
    out = _output_folder(tmp_path, COMPOSE_OUTPUT_OWNER)
    env = {
        **docker_env,
        "WDM_IMAGE": image,
        "WDM_INPUT_DIR": str(cases),
        "WDM_OUTPUT_DIR": str(out),
        "COMPOSE_PROJECT_NAME": f"wdmtest{os.getpid()}",
    }
    proc = _run(
        [
            *compose,
            "-f",
            str(REPO_ROOT / "docker-compose.yml"),
            "run",
            "--rm",
            "-v",
            f"{parameters.parent}:/params:ro",
            "-e",
            "WDM_INPAINT_PARAMETERS=/params/parameters.yaml",
            "infer-cpu",
        ],
        env,
        RUN_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    _ok(proc, "docker compose run")
    _check_submission(cases, out, owner=COMPOSE_OUTPUT_OWNER)
