"""A data folder that holds no case is an error, not an empty submission (a wrongly mounted input)."""

from __future__ import annotations

from pathlib import Path

from wdm_inpaint.data.cases import CaseScan

EXPECTED_LAYOUT = "<ID>/<ID>-t1n-voided.nii.gz and <ID>/<ID>-mask.nii.gz"
"""The challenge layout, as messages print it."""

SHOWN_ENTRIES = 5
"""Entries of the folder named in the message."""


class NoCasesError(ValueError):
    """The data folder holds no case folder; the message says what was expected and what was found."""


def _found(folder: Path) -> str:
    entries = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not entries:
        return "it is empty"
    shown = ", ".join(entries[:SHOWN_ENTRIES]) + (", ..." if len(entries) > SHOWN_ENTRIES else "")
    return f"it holds {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} ({shown})"


def require_cases(scan: CaseScan, folder: Path) -> None:
    """Raise :class:`NoCasesError` when ``scan`` of ``folder`` found no case.

    Raises:
        NoCasesError: naming the expected layout, what the folder holds, and a hint when it is a case folder itself.
    """
    if scan.cases:
        return
    hint = ""
    if any(folder.glob(f"{folder.name}-t1n-voided.nii.gz")) or any(folder.glob("*-t1n-voided.nii.gz")):
        hint = f"; {folder} looks like a case folder itself: pass its parent folder to -i"
    raise NoCasesError(f"no case found in {folder}: expected case folders {EXPECTED_LAYOUT}, but {_found(folder)}{hint}")


__all__ = ["EXPECTED_LAYOUT", "NoCasesError", "require_cases"]
