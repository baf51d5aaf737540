"""The container image's entry point (MLCube task interface and the plain-Docker ``/input`` → ``/output`` run)."""

from __future__ import annotations

from wdm_inpaint.container.entrypoint import main

__all__ = ["main"]
