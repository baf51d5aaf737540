"""Exponential moving average (EMA) of a module's weights."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from wdm_inpaint.training.config import EMAConfig
from wdm_inpaint.training.task import unwrap


class EMA:
    """Shadow copy of a module's floating-point parameters and buffers.

    After each :meth:`update` at ``step``: before ``config.start_step`` the shadow equals the weights; afterwards,
    on steps that are multiples of ``config.update_every``, ``shadow = decay * shadow + (1 - decay) * weights``.
    Integer buffers (e.g. counters) are copied. The shadow is kept in float32 on the module's device.
    """

    def __init__(self, module: nn.Module, config: EMAConfig) -> None:
        self.config = config
        self.shadow: dict[str, torch.Tensor] = {
            k: v.detach().clone().float() if v.is_floating_point() else v.detach().clone()
            for k, v in module.state_dict().items()
        }

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        """Blend the current weights of ``module`` into the shadow (``step``: optimiser steps done so far)."""
        state = module.state_dict()
        if step <= self.config.start_step:
            for k, v in state.items():
                self.shadow[k].copy_(v)
            return
        if step % self.config.update_every:
            return
        decay = self.config.decay
        for k, v in state.items():
            s = self.shadow[k]
            if s.is_floating_point():
                s.mul_(decay).add_(v.detach().float(), alpha=1.0 - decay)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow weights (same keys as the module's ``state_dict``)."""
        return {k: v.detach().clone() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the shadow weights.

        Raises:
            ValueError: the keys do not match the module the EMA was built for.
        """
        if set(state) != set(self.shadow):
            missing, extra = sorted(set(self.shadow) - set(state)), sorted(set(state) - set(self.shadow))
            raise ValueError(f"EMA state does not match the model: missing {missing[:5]}, unexpected {extra[:5]}")
        for k, v in state.items():
            self.shadow[k].copy_(v)

    @contextlib.contextmanager
    def applied_to(self, module: nn.Module) -> Iterator[nn.Module]:
        """Temporarily load the shadow weights into ``module`` (e.g. for validation), then restore its weights."""
        backup = {k: v.detach().clone() for k, v in module.state_dict().items()}
        module.load_state_dict({k: v.to(backup[k].dtype) for k, v in self.shadow.items()})
        try:
            yield module
        finally:
            module.load_state_dict(backup)


@contextlib.contextmanager
def ema_weights(ema: dict[str, EMA], modules: dict[str, nn.Module]) -> Iterator[None]:
    """EMA weights in the modules (by name) for the duration; nothing when ``ema`` is empty (EMA off)."""
    with contextlib.ExitStack() as stack:
        for name, average in ema.items():
            stack.enter_context(average.applied_to(unwrap(modules[name])))
        yield


__all__ = ["EMA", "ema_weights"]
