"""RePaint resampling schedules (Lugmayr et al. 2022) over a sampler's grid."""

from __future__ import annotations


def repaint_levels(num_steps: int, jump_length: int, jump_n_sample: int) -> list[int]:
    """The sequence of grid levels a RePaint loop visits.

    Level ``L`` in ``1..n`` is grid position ``n - L`` (level ``n`` is the first, noisiest timestep) and level 0
    is the clean sample. The walk starts at ``n`` and ends at 0. Every ``jump_length`` levels (at levels
    ``1, 1 + j, 1 + 2j, ... < n - j + 1``) it goes back up ``jump_length`` levels ``jump_n_sample - 1`` times before
    going on; a decrease is a model call, an increase a forward re-noising.

    Args:
        num_steps: grid length n >= 1.
        jump_length: levels per jump j >= 1.
        jump_n_sample: visits per jump point r >= 1 (1 = no jumps).

    Returns:
        Levels, first ``n`` and last 0.
    """
    if num_steps < 1 or jump_length < 1 or jump_n_sample < 1:
        raise ValueError(
            f"repaint_levels needs num_steps, jump_length, jump_n_sample >= 1, got "
            f"{num_steps}, {jump_length}, {jump_n_sample}"
        )
    remaining = {tau + 1: jump_n_sample - 1 for tau in range(0, num_steps - jump_length, jump_length)}
    level = num_steps
    levels = [level]
    while level >= 2:
        level -= 1
        levels.append(level)
        if remaining.get(level, 0) > 0:
            remaining[level] -= 1
            for _ in range(jump_length):
                level += 1
                levels.append(level)
    levels.append(0)
    return levels


__all__ = ["repaint_levels"]
