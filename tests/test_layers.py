"""Architecture rules: the import-linter contracts of ``pyproject.toml`` hold, and no package file is too long."""

from __future__ import annotations

import pytest
from conftest import REPO_ROOT

MAX_LINES = 400
"""Longest a module of the package may be (split by concept beyond this)."""

PACKAGE_DIR = REPO_ROOT / "project"


def test_import_contracts_hold(capsys) -> None:
    """Layers (no module imports a layer above it) and no import cycles, as ``[tool.importlinter]`` declares."""
    pytest.importorskip("importlinter", reason="import-linter not installed (pip install -e '.[test]')")
    import importlinter.api  # noqa: F401 - configures import-linter (option readers, contract types)
    from importlinter.application.use_cases import lint_imports

    kept = lint_imports(config_filename=str(REPO_ROOT / "pyproject.toml"), cache_dir=None, no_logo=True)
    report = capsys.readouterr().out
    assert "Layers" in report and "No import cycles" in report, f"contracts missing from pyproject.toml:\n{report}"
    assert kept, f"import contracts broken:\n{report}"


def test_no_package_file_is_over_the_line_limit() -> None:
    too_long = {
        str(path.relative_to(REPO_ROOT)): n
        for path in sorted(PACKAGE_DIR.rglob("*.py"))
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not too_long, f"files over {MAX_LINES} lines (split them by concept): {too_long}"
