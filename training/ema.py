"""Exponential moving average (EMA) of the weights, as in the SCORE recipe.

Before ``warmup_steps`` the average simply copies the live weights; after it
the decay is ``min(tau, (1 + t) / (10 + t))`` with ``t`` the steps since the
warm-up (dynamic decay) or ``tau`` throughout. BatchNorm buffers are not
averaged: :meth:`EMA.copy_buffers` takes them from the live model.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn


def ema_decay(step: int, tau: float, warmup_steps: int, dynamic: bool = True) -> float:
    """Decay applied at global step ``step`` (0 during warm-up, i.e. copy the weights)."""
    if step < warmup_steps:
        return 0.0
    if dynamic and step > warmup_steps:
        t = step - warmup_steps
        return min(tau, (1.0 + t) / (10.0 + t))
    return tau


class EMA:
    """An averaged copy of a model: ``avg <- decay * avg + (1 - decay) * live`` per step."""

    def __init__(self, model: nn.Module, tau: float = 0.995, warmup_steps: int = 0, dynamic: bool = True):
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tau, self.warmup_steps, self.dynamic = tau, warmup_steps, dynamic

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> float:
        """Blend the live parameters into the average at global step ``step``; return the decay used."""
        decay = ema_decay(step, self.tau, self.warmup_steps, self.dynamic)
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
