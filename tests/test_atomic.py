"""Atomic writes: nothing partial under the final name, permissions like a plain write."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from wdm_inpaint.io.atomic import atomic_path, atomic_write_text


def test_success_renames_and_follows_umask(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    old = os.umask(0o022)
    try:
        atomic_write_text(target, "hello")
    finally:
        os.umask(old)
    assert target.read_text() == "hello"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]


def test_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.nii.gz"
    target.write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.name.endswith(".nii.gz") and tmp.parent == tmp_path
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "previous"  # what was already written is not lost
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]
