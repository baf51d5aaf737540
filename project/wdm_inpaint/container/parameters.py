"""The container's ``parameters.yaml``: the keys it may hold and their validation."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wdm_inpaint.inference.options import SAMPLER_CHOICES

PARAMETER_KEYS = ("sampler", "steps", "samples", "seed")
"""Keys of ``parameters.yaml`` that tune the inference run."""

IGNORED_PARAMETER_KEYS = ("task",)
"""Keys the BraTS MLCube parameter files carry for other tools (``task: inpainting``); accepted and ignored."""


class ParametersError(ValueError):
    """``parameters.yaml`` is missing, unreadable or holds an invalid value."""


@dataclass(frozen=True)
class InferenceParameters:
    """The knobs the challenge runner can set through ``parameters.yaml``; ``None`` keeps the default.

    Attributes:
        sampler: sampler name, as ``wdm-inpaint infer --sampler`` accepts it.
        steps: number of sampling steps (≥ 1).
        samples: number of samples averaged per case (≥ 1).
        seed: random seed (≥ 0).
    """

    sampler: str | None = None
    steps: int | None = None
    samples: int | None = None
    seed: int | None = None

    def overrides(self) -> dict[str, Any]:
        """The :class:`~wdm_inpaint.inference.options.InferenceOptions` fields that are set (others keep defaults)."""
        return {key: getattr(self, key) for key in PARAMETER_KEYS if getattr(self, key) is not None}


def _positive_or_zero_int(value: Any, key: str, source: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParametersError(f"{source}: '{key}' must be an integer, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ParametersError(f"{source}: '{key}' must be at least {minimum}, got {value}")
    return value


def parse_parameters(data: Any, source: str = "parameters.yaml") -> InferenceParameters:
    """Validate the content of a parameters file.

    Args:
        data: the parsed YAML document (``None`` for an empty file).
        source: file name used in error messages.

    Returns:
        The validated parameters.

    Raises:
        ParametersError: if the document is not a mapping, has an unknown key, or a value of the wrong type or range.
    """
    if data is None:
        return InferenceParameters()
    if not isinstance(data, Mapping):
        raise ParametersError(f"{source}: expected a mapping of {', '.join(PARAMETER_KEYS)}, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in PARAMETER_KEYS and k not in IGNORED_PARAMETER_KEYS)
    if unknown:
        raise ParametersError(
            f"{source}: unknown key(s) {', '.join(unknown)}; allowed keys are {', '.join(PARAMETER_KEYS)}"
        )
    values: dict[str, Any] = {}
    sampler = data.get("sampler")
    if sampler is not None:
        if sampler not in SAMPLER_CHOICES:
            raise ParametersError(f"{source}: 'sampler' must be one of {', '.join(SAMPLER_CHOICES)}, got {sampler!r}")
        values["sampler"] = sampler
    for key, minimum in (("steps", 1), ("samples", 1), ("seed", 0)):
        if data.get(key) is not None:
            values[key] = _positive_or_zero_int(data[key], key, source, minimum)
    return InferenceParameters(**values)


def load_parameters(path: str | os.PathLike[str] | None) -> InferenceParameters:
    """Read and validate a ``parameters.yaml``; ``None`` gives the defaults.

    Raises:
        ParametersError: if the file does not exist, is not valid YAML, or holds invalid values.
    """
    if path is None:
        return InferenceParameters()
    path = Path(path)
    if not path.is_file():
        raise ParametersError(f"parameters file {path} does not exist (or is not a file)")
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ParametersError(f"parameters file {path} cannot be read as YAML: {exc}") from exc
    return parse_parameters(data, source=str(path))


__all__ = [
    "IGNORED_PARAMETER_KEYS",
    "PARAMETER_KEYS",
    "InferenceParameters",
    "ParametersError",
    "load_parameters",
    "parse_parameters",
]
