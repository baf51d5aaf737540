"""Cases in the BraTS local-synthesis folder layout.

A data folder holds one sub-folder per case, named like ``BraTS-GLI-00000-000``; each file inside is
``<ID>-<type>.nii.gz``. Inference needs ``t1n-voided`` and ``mask``; training also uses ``t1n``,
``mask-healthy`` and ``mask-unhealthy``. Keys used throughout the package (and in split files) are the file
types with ``-`` replaced by ``_``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wdm_inpaint.io.nifti import NiftiError, Volume, load_image, read_nifti

logger = logging.getLogger(__name__)

CASE_ID_PATTERN = re.compile(r"^BraTS-[A-Za-z]+-\d{5}-\d{3}$")
"""Challenge case IDs: ``BraTS-<COHORT>-<5-digit case>-<3-digit timepoint>``, e.g. ``BraTS-GLI-00000-000``."""

NIFTI_SUFFIX = ".nii.gz"
"""Extension of every case file."""

FILE_TYPES: dict[str, str] = {
    "t1n_voided": "t1n-voided",
    "mask": "mask",
    "t1n": "t1n",
    "mask_healthy": "mask-healthy",
    "mask_unhealthy": "mask-unhealthy",
}
"""Key -> file type (``<ID>-<type>.nii.gz``) of every file a case may hold."""

INFERENCE_KEYS: tuple[str, ...] = ("t1n_voided", "mask")
"""Files a case needs for inference (validation and test inputs hold only these)."""

TRAINING_KEYS: tuple[str, ...] = ("t1n", "mask_healthy", "mask_unhealthy")
"""Additional files of a training case (the ground truth)."""

ALL_KEYS: tuple[str, ...] = INFERENCE_KEYS + TRAINING_KEYS
"""Every known case file key."""


PREDICTION_FILE_TYPE = "t1n-inference"
"""File type of an inference output: ``<ID>-t1n-inference.nii.gz`` (written next to no other file)."""

PREDICTION_SUFFIX = f"-{PREDICTION_FILE_TYPE}{NIFTI_SUFFIX}"
"""What the organisers expect after the case ID in a prediction file name."""


class CaseError(ValueError):
    """A case cannot be used; the message names the case and the file."""


def case_file_name(case_id: str, key: str, tag: str | None = None) -> str:
    """File name of ``key`` for ``case_id``, e.g. ``BraTS-GLI-00000-000-t1n-voided.nii.gz``.

    Args:
        case_id: the case ID.
        key: a key of :data:`FILE_TYPES`.
        tag: a variant tag appended to the type (``<ID>-<type>-<tag>.nii.gz``; augmented masks).

    Raises:
        KeyError: for an unknown key.
    """
    if key not in FILE_TYPES:
        raise KeyError(f"unknown case file key {key!r}; known keys are {sorted(FILE_TYPES)}")
    variant = "" if tag is None else f"-{tag}"
    return f"{case_id}-{FILE_TYPES[key]}{variant}{NIFTI_SUFFIX}"


def prediction_file_name(case_id: str) -> str:
    """The challenge's output file name of a case: ``<ID>-t1n-inference.nii.gz``."""
    return f"{case_id}{PREDICTION_SUFFIX}"


@dataclass
class Case:
    """One case (one brain, one time point).

    Attributes:
        id: the case ID (the folder name in the challenge layout).
        folder: the case folder.
        paths: key -> existing file path for every file found.
        missing: keys of files that were expected but not found.
    """

    id: str
    folder: Path
    paths: dict[str, Path] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    def has(self, keys: Iterable[str]) -> bool:
        """Whether every file of ``keys`` was found."""
        return all(k in self.paths for k in keys)

    def path(self, key: str) -> Path:
        """Path of the file ``key``.

        Raises:
            CaseError: if the case has no such file (the message names the expected file).
        """
        if key in self.paths:
            return self.paths[key]
        expected = self.folder / case_file_name(self.id, key) if key in FILE_TYPES else key
        raise CaseError(f"case {self.id}: missing file {expected}")

    def require(self, keys: Iterable[str], check_readable: bool = False) -> None:
        """Check that the files of ``keys`` exist (and optionally that their NIfTI headers can be read).

        Raises:
            CaseError: naming the first missing or unreadable file.
        """
        for key in keys:
            path = self.path(key)
            if check_readable:
                try:
                    load_image(path)
                except (NiftiError, OSError) as exc:
                    raise CaseError(f"case {self.id}: unreadable file {path}: {exc}") from exc

    def read(self, key: str, **kwargs: object) -> Volume:
        """Read the volume ``key`` (keyword arguments go to :func:`~wdm_inpaint.io.nifti.read_nifti`).

        Raises:
            CaseError: if the file is missing or unreadable (the message names the case and the file).
        """
        path = self.path(key)
        try:
            return read_nifti(path, **kwargs)  # type: ignore[arg-type]
        except (NiftiError, OSError) as exc:
            raise CaseError(f"case {self.id}: {exc}") from exc


@dataclass
class CaseScan:
    """Result of :func:`discover_cases`.

    Attributes:
        cases: the cases found, sorted by ID (including those with missing files).
        problems: human-readable notes about entries that look like cases but are not usable folders.
    """

    cases: list[Case]
    problems: list[str] = field(default_factory=list)

    def usable(self, keys: Iterable[str] = INFERENCE_KEYS) -> list[Case]:
        """The cases that hold every file of ``keys``."""
        keys = tuple(keys)
        return [c for c in self.cases if c.has(keys)]

    def errors(self, keys: Iterable[str] = INFERENCE_KEYS) -> list[CaseError]:
        """One :class:`CaseError` per case that lacks a file of ``keys`` (naming the first missing file)."""
        keys = tuple(keys)
        out = []
        for case in self.cases:
            try:
                case.require(keys)
            except CaseError as exc:
                out.append(exc)
        return out


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__")


def _looks_like_case(folder: Path) -> bool:
    """A folder is a case if its name is a challenge ID or it holds a ``<name>-t1n[-voided].nii.gz`` file."""
    if CASE_ID_PATTERN.match(folder.name):
        return True
    return any((folder / case_file_name(folder.name, k)).is_file() for k in ("t1n_voided", "t1n"))


def scan_case_folder(folder: str | os.PathLike[str], expected: Iterable[str] = INFERENCE_KEYS) -> Case:
    """Build a :class:`Case` from one case folder (the folder name is the case ID).

    Args:
        folder: the case folder.
        expected: keys recorded in ``missing`` when their file is absent.

    Raises:
        CaseError: if ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CaseError(f"{folder}: not a case folder")
    case = Case(id=folder.name, folder=folder)
    for key in FILE_TYPES:
        path = folder / case_file_name(case.id, key)
        if path.is_file():
            case.paths[key] = path
    case.missing = [k for k in expected if k not in case.paths]
    return case


def discover_cases(root: str | os.PathLike[str], expected: Iterable[str] = INFERENCE_KEYS) -> CaseScan:
    """Find the cases of a data folder in the challenge layout.

    Hidden entries (``.*``, ``__*``) and entries unrelated to cases are ignored. A file named like a case ID
    (where a case folder is expected) is reported in ``problems``, not raised.

    Args:
        root: folder of ``<ID>/`` case folders.
        expected: keys whose absence is recorded per case in ``Case.missing``.

    Returns:
        A :class:`CaseScan` with the cases sorted by ID.

    Raises:
        FileNotFoundError: if ``root`` does not exist.
        CaseError: if ``root`` is not a folder.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"{root}: data folder not found")
    if not root.is_dir():
        raise CaseError(f"{root}: expected a folder of case folders, got a file")
    expected = tuple(expected)
    cases: list[Case] = []
    problems: list[str] = []
    for entry in sorted(root.iterdir()):
        name = entry.name
        if _is_hidden(name):
            continue
        if entry.is_dir():
            if _looks_like_case(entry):
                case = scan_case_folder(entry, expected)
                if case.missing:
                    logger.debug("case %s lacks %s", case.id, case.missing)
                cases.append(case)
            else:
                logger.debug("ignoring folder %s (not a case)", entry)
        elif CASE_ID_PATTERN.match(name.split(".", 1)[0]):
            problems.append(f"{entry}: is a file, expected a case folder named {name.split('.', 1)[0]}")
        else:
            logger.debug("ignoring file %s", entry)
    for note in problems:
        logger.warning("%s", note)
    return CaseScan(cases=cases, problems=problems)


def case_from_paths(paths: Mapping[str, str | os.PathLike[str]], case_id: str | None = None) -> Case:
    """Build a :class:`Case` from explicit file paths (outside the folder layout).

    Args:
        paths: key -> file, e.g. ``{"t1n_voided": ..., "mask": ...}``.
        case_id: the case ID; by default derived from the ``t1n_voided`` (or first) file name by removing the
            ``-<type>.nii.gz`` suffix.

    Raises:
        CaseError: for an unknown key or a missing file (naming it).
    """
    if not paths:
        raise CaseError("no case files given")
    resolved: dict[str, Path] = {}
    for key, value in paths.items():
        if key not in FILE_TYPES:
            raise CaseError(f"unknown case file key {key!r}; known keys are {sorted(FILE_TYPES)}")
        path = Path(value)
        if not path.is_file():
            raise CaseError(f"missing {key.replace('_', '-')} file {path}")
        resolved[key] = path
    first_key = "t1n_voided" if "t1n_voided" in resolved else next(iter(resolved))
    if case_id is None:
        name = resolved[first_key].name
        suffix = f"-{FILE_TYPES[first_key]}{NIFTI_SUFFIX}"
        case_id = name[: -len(suffix)] if name.endswith(suffix) else name.split(".", 1)[0]
    return Case(id=case_id, folder=resolved[first_key].parent, paths=resolved, missing=[])


__all__ = [
    "ALL_KEYS",
    "CASE_ID_PATTERN",
    "Case",
    "CaseError",
    "CaseScan",
    "FILE_TYPES",
    "INFERENCE_KEYS",
    "TRAINING_KEYS",
    "case_file_name",
    "case_from_paths",
    "discover_cases",
    "scan_case_folder",
]
