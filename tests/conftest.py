"""Shared test fixtures.

Tests that need the upstream parity fixtures read them from ``../shared/fixtures/upstream`` next to the
repository (or from ``$WDM_SHARED_DIR/fixtures/upstream``) and skip with a clear reason where it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("WDM_SHARED_DIR", REPO_ROOT.parent / "shared"))
UPSTREAM_DIR = SHARED_DIR / "fixtures" / "upstream"
DEMO_DIR = REPO_ROOT / "demo"

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def upstream_dir() -> Path:
    """Folder of the upstream parity fixtures; skips the test where it is absent (a user's clone)."""
    if not UPSTREAM_DIR.is_dir():
        pytest.skip(f"upstream parity fixtures not found at {UPSTREAM_DIR} (set WDM_SHARED_DIR to the shared folder)")
    return UPSTREAM_DIR


def load_fixture(upstream: Path, name: str) -> dict:
    """Load one upstream fixture file safely (no pickled code)."""
    return torch.load(upstream / name, map_location="cpu", weights_only=True)
