"""The logic of ``bench/speed.py`` (variants, extrapolation, tables); its figures are not asserted anywhere."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SPEED = Path(__file__).resolve().parents[1] / "bench" / "speed.py"


@pytest.fixture(scope="module")
def speed():
    spec = importlib.util.spec_from_file_location("bench_speed", SPEED)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  # dataclasses look their module up here
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    yield module
    sys.modules.pop(spec.name, None)  # type: ignore[union-attr]


def test_variant_names_map_to_explicit_options(speed) -> None:
    assert speed.variant_options("fp32") == {"precision": "float32", "channels_last": False, "compile": False}
    assert speed.variant_options("bf16+channels_last+compile") == {
        "precision": "bfloat16", "channels_last": True, "compile": True}
    with pytest.raises(SystemExit, match="unknown variant part"):
        speed.variant_options("bf16+fast")


def test_unmeasured_settings_add_calls_to_the_measured_fixed_cost(speed) -> None:
    calls = [speed.CallTiming("m", "crop", [64, 64, 64], "fp32", 1.0, 0.45, 3),
             speed.CallTiming("m", "crop", [64, 64, 64], "bf16", 1.0, 0.2, 3),
             speed.CallTiming("m", "crop", [64, 64, 64], speed.PIPELINE_VARIANT, float("nan"), 0.05, 10)]
    step = speed.seconds_per_step(calls, "m", "fp32")
    assert step == pytest.approx(0.5)
    assert speed.seconds_per_step(calls, "other", "fp32") is None
    # fixed cost 2 s; the 10-call run was 0.3 s slower than the line (noise): the median keeps 2.0 or 2.3
    rows = [speed.CaseTiming("m", "a", "fp32", 1, 2.5, 1.0, None, measured=True),
            speed.CaseTiming("m", "b", "fp32", 5, 4.5, 1.0, None, measured=True),
            speed.CaseTiming("m", "c", "fp32", 10, 7.3, 1.0, None, measured=True)]
    row = speed.extrapolate(rows, "m", "ddpm:1000", "fp32", 1000, step)
    assert row is not None and not row.measured
    assert row.seconds_per_case == pytest.approx(2.0 + 0.5 * 1000)
    assert speed.extrapolate(rows, "m", "ddpm:1000", "bf16", 1000, 0.25) is None  # no measured run of bf16


def test_table_rows_carry_ratios_and_how_each_figure_was_obtained(speed) -> None:
    calls = [speed.CallTiming("bundled", "crop", [112, 96, 96], "fp32", 0.7, 0.5, 3, 1.0),
             speed.CallTiming("bundled", "crop", [112, 96, 96], "bf16", 0.4, 0.25, 3, 0.5)]
    cases = [speed.CaseTiming("bundled", "ddim:1", "fp32", 1, 3.2, 1.2, None, measured=True, ratio_to_fp32=1.0),
             speed.CaseTiming("bundled", "ddpm:1000", "fp32", 1000, 700.0, None, None, measured=False)]
    text = speed.markdown({"device_name": "cpu", "torch": "x", "threads": 1}, calls, cases)
    assert "| bundled | crop | 112×96×96 | bf16 | 0.250 | 0.50 | 0.4 |" in text
    assert "| bundled | ddim:1 | 1 | fp32 | 3.20 | 1.00 | 1.20 | – | measured |" in text
    assert "| bundled | ddpm:1000 | 1000 | fp32 | 700.00 | – | – | – | extrapolated |" in text
