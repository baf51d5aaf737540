"""Classical fills (harmonic / Laplace, mean): baselines and the fallback of inference.

``classical_fill(name, image, mask)`` dispatches by name; every fill returns a new array in which voxels outside
the mask are bit-identical to the input.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from wdm_inpaint.fill.harmonic import harmonic_fill
from wdm_inpaint.fill.mean import mean_fill

FillFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``fill(image (X, Y, Z), mask (X, Y, Z), non-zero = fill) -> filled copy``."""

CLASSICAL_FILLS: dict[str, FillFunction] = {"harmonic": harmonic_fill, "mean": mean_fill}
"""Registered fills by name."""


def classical_fill(name: str, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill ``mask`` in ``image`` with the classical method ``name`` (one of :data:`CLASSICAL_FILLS`).

    Raises:
        ValueError: for an unknown name or invalid inputs.
    """
    try:
        fill = CLASSICAL_FILLS[name]
    except KeyError:
        raise ValueError(f"unknown classical fill {name!r}; choose one of {sorted(CLASSICAL_FILLS)}") from None
    return fill(image, mask)


__all__ = ["CLASSICAL_FILLS", "FillFunction", "classical_fill", "harmonic_fill", "mean_fill"]
