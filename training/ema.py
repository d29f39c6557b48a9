"""Exponential moving average (EMA) of the weights, as in the SCORE recipe.

The official ``ema_update``: after optimiser step ``t`` (counted from 1) the
decay is 0 (copy the live weights) while ``t < warmup``, then
``min(tau, (1 + d) / (10 + d))`` with ``d = t - warmup`` (dynamic decay) or
``tau`` throughout; ``warmup`` is ``0.025 * epochs * steps_per_epoch`` in the
paper's recipe, a float. BatchNorm buffers are not averaged:
:meth:`EMA.copy_buffers` takes them from the live model at every epoch end.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


def ema_decay(steps_done: int, tau: float, warmup_steps: float, dynamic: bool = True) -> float:
    """Decay applied after optimiser step number ``steps_done`` (1-based; 0 during warm-up: copy the weights)."""
    if steps_done < warmup_steps:
        return 0.0
    delta = steps_done - warmup_steps
    if dynamic and 10.0 + delta != 0:
        return min(tau, (1.0 + delta) / (10.0 + delta))
    return tau


class EMA:
    """An averaged copy of a model: ``avg <- decay * avg + (1 - decay) * live`` per step."""

    def __init__(self, model: nn.Module, tau: float = 0.995, warmup_steps: float = 0.0, dynamic: bool = True):
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tau, self.warmup_steps, self.dynamic = tau, warmup_steps, dynamic

    @torch.no_grad()
    def update(self, model: nn.Module, steps_done: int) -> float:
        """Blend the live parameters into the average after optimiser step ``steps_done``; return the decay."""
        decay = ema_decay(steps_done, self.tau, self.warmup_steps, self.dynamic)
        avg = list(self.model.parameters())
        live = list(model.parameters())
        torch._foreach_mul_(avg, decay)
        torch._foreach_add_(avg, [p.detach() for p in live], alpha=1.0 - decay)
        return decay

    @torch.no_grad()
    def copy_buffers(self, model: nn.Module) -> None:
        """Copy BatchNorm (and every other) buffer of the live model into the average."""
        for b_avg, b_live in zip(self.model.buffers(), model.buffers()):
            b_avg.copy_(b_live)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state)
