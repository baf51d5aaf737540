"""wdm-inpaint: healthy-tissue inpainting of brain MRI with a 3D wavelet diffusion model."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from wdm_inpaint.version import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

if TYPE_CHECKING:  # pragma: no cover
    from wdm_inpaint.checkpoint import load_checkpoint, save_checkpoint
    from wdm_inpaint.inference.inpainter import Inpainter

_LAZY = {
    "Inpainter": "wdm_inpaint.inference.inpainter",
    "load_checkpoint": "wdm_inpaint.checkpoint",
    "save_checkpoint": "wdm_inpaint.checkpoint",
}


def __getattr__(name: str) -> Any:
    """Import the public API lazily so ``import wdm_inpaint`` stays fast."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'wdm_inpaint' has no attribute {name!r}")


__all__ = ["Inpainter", "__version__", "load_checkpoint", "save_checkpoint"]
