"""The one comparison of a state dict against the tensors a model expects (loading and converting weights)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

LIST_LIMIT = 8
"""Entries of each list shown in a mismatch message before it is abbreviated."""

Shape = tuple[int, ...]


def abbreviate(items: list[Any], limit: int = LIST_LIMIT) -> str:
    """``items`` as a list literal, cut after ``limit`` entries with the total count."""
    return str(items[:limit])[:-1] + (f", ... ({len(items)} in all)]" if len(items) > limit else "]")


@dataclass
class StateDictMismatch:
    """How a state dict differs from what a model expects.

    Attributes:
        missing: expected keys that are absent (sorted).
        unexpected: keys the model does not have (sorted).
        not_tensors: keys whose value is not a tensor (sorted).
        wrong_shapes: key -> (shape found, shape expected), in the model's key order.
    """

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    not_tensors: list[str] = field(default_factory=list)
    wrong_shapes: dict[str, tuple[Shape, Shape]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.not_tensors or self.wrong_shapes)

    def problems(self) -> list[str]:
        """One phrase per kind of mismatch (empty when the state dict matches)."""
        out = []
        if self.missing:
            out.append(f"missing {abbreviate(self.missing)}")
        if self.unexpected:
            out.append(f"unexpected {abbreviate(self.unexpected)}")
        if self.not_tensors:
            out.append(f"not tensors {abbreviate(self.not_tensors)}")
        if self.wrong_shapes:
            out.append(f"wrong shapes (got, expected) {dict(list(self.wrong_shapes.items())[:LIST_LIMIT])}")
        return out


def compare_state_dict(state_dict: Mapping[str, Any], expected: Mapping[str, Shape]) -> StateDictMismatch:
    """Compare ``state_dict`` with the expected key -> shape map of a model."""
    return StateDictMismatch(
        missing=sorted(set(expected) - set(state_dict)),
        unexpected=sorted(str(k) for k in set(state_dict) - set(expected)),
        not_tensors=sorted(str(k) for k, v in state_dict.items() if not isinstance(v, torch.Tensor)),
        wrong_shapes={
            k: (tuple(state_dict[k].shape), tuple(shape))
            for k, shape in expected.items()
            if isinstance(state_dict.get(k), torch.Tensor) and tuple(state_dict[k].shape) != tuple(shape)
        },
    )


def expected_shapes(module: torch.nn.Module) -> dict[str, Shape]:
    """Key -> shape of every entry of ``module.state_dict()``."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


__all__ = ["StateDictMismatch", "abbreviate", "compare_state_dict", "expected_shapes"]
