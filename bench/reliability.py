"""Reliability loops of ``wdm-inpaint infer`` with real processes (issue 16): nothing lost, ever.

Two loops, each repeated ``--repeats`` times on a fresh output folder:

* ``shards``: two processes ``infer --shard 0/2`` and ``--shard 1/2`` into one output folder, the second started a
  random moment after the first (the original failure: the second run deleted the first's live temporary). Every
  case must have its output and ``validate-submission`` must pass.
* ``sigterm``: one ``infer`` process stopped with SIGTERM at a random moment of its active phase (from the moment its
  owner lock appears in the output folder; uniform over the length of that phase in one whole run, measured first),
  then a rerun. The stopped run must exit
  0 (it had finished) or 143 and leave no extra (hidden) file; after the rerun the folder holds exactly one valid
  output per case.

Cases are synthetic (``--cases`` of ``--size``³ voxels), filled with ``--sampler`` (default ``harmonic``: no model,
so the loops test the file handling, not the sampler). Randomness comes from ``--seed``. Example::

    OMP_NUM_THREADS=1 python bench/reliability.py --repeats 10 --json reliability.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

SUFFIX = "-t1n-inference.nii.gz"
"""Output file suffix of the challenge."""

EXIT_STOPPED = 128 + signal.SIGTERM
"""Exit code of a run stopped by SIGTERM."""

RUN_TIMEOUT_S = 300
"""Longest a single ``infer`` process may take."""



def make_cases(root: Path, count: int, size: int, seed: int) -> list[str]:
    """Write ``count`` synthetic cases of ``size``³ voxels (a smooth brain, a ball-shaped region); returns their IDs."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, size)] * 3, indexing="ij"))
    radius = np.sqrt((grid**2).sum(0))
    ids = []
    for n in range(count):
        cid = f"BraTS-GLI-{n + 1:05d}-000"
        folder = root / cid
        folder.mkdir(parents=True, exist_ok=True)
        brain = np.where(radius < 0.9, 500 + 100 * np.sin(3 * grid[0] + n) + rng.normal(0, 5, radius.shape), 0.0)
        mask = (np.sqrt(((grid - rng.uniform(-0.2, 0.2, (3, 1, 1, 1))) ** 2).sum(0)) < 0.3).astype(np.uint8)
        nib.save(nib.Nifti1Image(np.where(mask > 0, 0, brain).astype(np.float32), np.eye(4)),
                 folder / f"{cid}-t1n-voided.nii.gz")
        nib.save(nib.Nifti1Image(mask, np.eye(4)), folder / f"{cid}-mask.nii.gz")
        ids.append(cid)
    return ids


def _infer(data: Path, out: Path, sampler: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "wdm_inpaint.cli.main", "-q", "infer", "-i", str(data), "-o", str(out),
           "--sampler", sampler, "--no-progress", "--fallback-ok", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


POLL_S = 0.02
"""Polling interval while waiting for a run to lock its output folder."""


def _wait_until_active(run: subprocess.Popen, out: Path) -> None:
    """Return once ``run`` holds its lock in ``out`` (it has started on the cases) or has ended."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while run.poll() is None and time.monotonic() < deadline:
        if out.is_dir() and any(out.glob(".wdm-owner-*.lock")):
            return
        time.sleep(POLL_S)


def _validate(data: Path, out: Path) -> bool:
    from wdm_inpaint.evaluation.validate import validate_submission

    return not validate_submission(data, out).violations


def _complete(out: Path, ids: list[str]) -> bool:
    return sorted(p.name for p in out.iterdir()) == sorted(f"{cid}{SUFFIX}" for cid in ids)


def shards_once(data: Path, out: Path, ids: list[str], sampler: str, rng: random.Random, span: float) -> dict:
    """Two sharded runs into ``out``, the second started after a random delay in ``[0, span]``."""
    first = _infer(data, out, sampler, "--shard", "0/2")
    delay = rng.uniform(0, span)
    time.sleep(delay)
    second = _infer(data, out, sampler, "--shard", "1/2")
    codes = [p.wait(RUN_TIMEOUT_S) for p in (first, second)]
    ok = codes == [0, 0] and _complete(out, ids) and _validate(data, out)
    return {"delay_s": round(delay, 2), "exit_codes": codes, "ok": ok,
            "files": sorted(p.name for p in out.iterdir())}


def sigterm_once(data: Path, out: Path, ids: list[str], sampler: str, rng: random.Random, span: float) -> dict:
    """One run stopped by SIGTERM after a random delay in ``[0, span]``, then a rerun; returns what happened."""
    run = _infer(data, out, sampler)
    _wait_until_active(run, out)
    delay = rng.uniform(0, span)
    time.sleep(delay)
    run.send_signal(signal.SIGTERM)
    code = run.wait(RUN_TIMEOUT_S)
    left = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    hidden = [name for name in left if name.startswith(".")]
    stopped_ok = code in (0, EXIT_STOPPED, -signal.SIGTERM) and not hidden
    rerun = _infer(data, out, sampler)
    rerun_code = rerun.wait(RUN_TIMEOUT_S)
    ok = stopped_ok and rerun_code == 0 and _complete(out, ids) and _validate(data, out)
    return {"delay_s": round(delay, 2), "exit_code": code, "outputs_after_stop": len(left), "hidden": hidden,
            "rerun_exit_code": rerun_code, "ok": ok}


def run_loops(loops: list[str], repeats: int, cases: int, size: int, sampler: str, seed: int,
              work: Path | None = None) -> dict:
    """Run the loops; returns ``{loop: {"ok": n, "runs": [...]}}``."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        data = Path(tmp) / "data"
        ids = make_cases(data, cases, size, seed)
        start = time.perf_counter()
        calibration = _infer(data, Path(tmp) / "calibration", sampler)
        _wait_until_active(calibration, Path(tmp) / "calibration")
        active = time.perf_counter()
        if calibration.wait(RUN_TIMEOUT_S) != 0:
            raise RuntimeError(f"the calibration run failed: {calibration.stderr.read() if calibration.stderr else ''}")
        span = time.perf_counter() - active
        results: dict = {"run_seconds": round(time.perf_counter() - start, 2), "active_seconds": round(span, 2)}
        for loop in loops:
            once = {"shards": shards_once, "sigterm": sigterm_once}[loop]
            delays = span if loop == "sigterm" else results["run_seconds"]
            runs = [once(data, Path(tmp) / f"{loop}-{i}", ids, sampler, rng, delays) for i in range(repeats)]
            results[loop] = {"ok": sum(r["ok"] for r in runs), "repeats": repeats, "runs": runs}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", nargs="+", choices=("shards", "sigterm"), default=["shards", "sigterm"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--size", type=int, default=96, help="edge of the cubic synthetic cases (voxels)")
    parser.add_argument("--sampler", default="harmonic")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    results = run_loops(args.loops, args.repeats, args.cases, args.size, args.sampler, args.seed)
    loops = {k: v for k, v in results.items() if isinstance(v, dict)}
    print(f"one whole run: {results['run_seconds']} s, of which {results['active_seconds']} s on the cases")
    for loop, result in loops.items():
        print(f"{loop}: {result['ok']}/{result['repeats']} ok")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r["ok"] == r["repeats"] for r in loops.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
