"""The modes by name: build one from its config, or find the upstream mode of a U-Net's input width."""

from __future__ import annotations

from wdm_inpaint.config import ModeConfig
from wdm_inpaint.diffusion.modes import AKHContextMode, AKHMode, DefaultMode, Mode
from wdm_inpaint.diffusion.prior_mode import PriorMode

MODES: dict[str, type[Mode]] = {cls.name: cls for cls in (DefaultMode, AKHMode, AKHContextMode, PriorMode)}
"""Registry of the modes by name."""


def build_mode(config: ModeConfig) -> Mode:
    """Build the mode named by ``config.name``.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    if config.name not in MODES:
        raise ValueError(f"unknown mode {config.name!r}; choose one of {sorted(MODES)}")
    return MODES[config.name](config)


def upstream_modes() -> list[str]:
    """Names of the modes the reference code also has (its checkpoints convert to these)."""
    return [name for name, cls in MODES.items() if cls.upstream]


def mode_for_in_channels(in_channels: int) -> str:
    """Name of the upstream mode whose U-Net takes ``in_channels`` input channels.

    Raises:
        ValueError: if no upstream mode, or more than one, matches.
    """
    known = {
        name: MODES[name](ModeConfig(name=name)).in_channels for name in upstream_modes()  # type: ignore[arg-type]
    }
    names = [name for name, channels in known.items() if channels == in_channels]
    if len(names) != 1:
        raise ValueError(f"no unique mode takes {in_channels} input channels (modes and their inputs: {known})")
    return names[0]


__all__ = ["MODES", "build_mode", "mode_for_in_channels", "upstream_modes"]
