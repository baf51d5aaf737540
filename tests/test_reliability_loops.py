"""The reliability loops of ``bench/reliability.py`` with real ``infer`` processes (issue 16), kept short with the
harmonic sampler: two concurrent sharded runs into one folder always give every case (10 repeats), and a SIGTERM at
a random moment of a run, then a rerun, always gives a valid submission with no extra file."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "bench" / "reliability.py"
SHARD_REPEATS = 10
SIGTERM_REPEATS = 5


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_reliability", BENCH)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    yield module
    sys.modules.pop(spec.name, None)  # type: ignore[union-attr]


def test_concurrent_shards_always_give_every_case(bench, tmp_path: Path) -> None:
    results = bench.run_loops(["shards"], SHARD_REPEATS, cases=4, size=64, sampler="harmonic", seed=1, work=tmp_path)
    failed = [run for run in results["shards"]["runs"] if not run["ok"]]
    assert failed == []


def test_sigterm_then_rerun_always_gives_a_valid_submission(bench, tmp_path: Path) -> None:
    results = bench.run_loops(["sigterm"], SIGTERM_REPEATS, cases=6, size=64, sampler="harmonic", seed=2,
                              work=tmp_path)
    runs = results["sigterm"]["runs"]
    assert [run for run in runs if not run["ok"]] == []
    assert all(run["hidden"] == [] for run in runs)
