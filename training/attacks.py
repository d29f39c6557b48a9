"""Attacks used during training and model selection (white-box PGD, Linf and L2).

``pgd`` returns adversarial inputs. It runs the model as it finds it (train
mode during training) but with BatchNorm running statistics frozen: see
:func:`frozen_bn_stats`. Gradients are taken with respect to the input only,
so parameter ``.grad`` fields are untouched.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import torch
import torch.nn as nn

from zoo.errors import ConfigError


@contextlib.contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """Within the block, BatchNorm layers in train mode use batch statistics but update nothing.

    Setting ``track_running_stats=False`` makes train-mode BatchNorm normalise
    with the batch statistics (as usual) while leaving running_mean,
    running_var and num_batches_tracked untouched.
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in layers:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in layers:
            m.track_running_stats = True


def _l2_normalise(g: torch.Tensor) -> torch.Tensor:
    norms = g.flatten(1).norm(dim=1).clamp_min(1e-12)
    return g / norms.view(-1, *([1] * (g.dim() - 1)))


def project(x_adv: torch.Tensor, x: torch.Tensor, threat: str, eps: float) -> torch.Tensor:
    """Project ``x_adv`` onto the eps-ball around ``x`` (Linf or L2) intersected with [0, 1]."""
    delta = x_adv - x
    if threat == "linf":
        delta = delta.clamp(-eps, eps)
    elif threat == "l2":
        norms = delta.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
        delta = delta * torch.clamp(eps / norms.clamp_min(1e-12), max=1.0)
    else:
        raise ConfigError(f"unknown threat model {threat!r}; use linf or l2")
    return (x + delta).clamp(0, 1)


def random_start(x: torch.Tensor, threat: str, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Linf: x + U(-eps, eps); L2: x + 0.001 N(0, 1); both clamped to [0, 1]."""
    if threat == "linf":
        noise = (torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) * 2 - 1) * eps
    elif threat == "l2":
        noise = 0.001 * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    else:
        raise ConfigError(f"unknown threat model {threat!r}; use linf or l2")
    return (x + noise).clamp(0, 1)


def pgd(model: nn.Module, x: torch.Tensor, loss_fn: Callable[[torch.Tensor], torch.Tensor], threat: str,
        eps: float, step_size: float, steps: int, random_init: bool = True,
        generator: torch.Generator | None = None, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Maximise ``loss_fn(model(x'))`` over the eps-ball around ``x``; return x' (detached).

    Linf: signed-gradient steps. L2: normalised-gradient steps, with zero
    gradients replaced by random directions. Every iterate is projected onto
    the ball and [0, 1]. BatchNorm running statistics are not updated.
    """
    x = x.detach()
    x_adv = random_start(x, threat, eps, generator) if random_init else x.clone()
    with frozen_bn_stats(model), torch.enable_grad():
        for _ in range(steps):
            x_adv.requires_grad_(True)
            with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                logits = model(x_adv)
            (grad,) = torch.autograd.grad(loss_fn(logits), x_adv)
            x_adv = x_adv.detach()
            if threat == "linf":
                x_adv = x_adv + step_size * grad.sign()
            else:
                zero = grad.flatten(1).norm(dim=1) == 0
                if zero.any():
                    grad[zero] = torch.randn(grad[zero].shape, generator=generator, device=grad.device, dtype=grad.dtype)
                x_adv = x_adv + step_size * _l2_normalise(grad)
            x_adv = project(x_adv, x, threat, eps)
    return x_adv.detach()
