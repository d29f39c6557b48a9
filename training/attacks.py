"""Training-time attacks, each the exact procedure of one routine of the official SCORE code.

The official code runs three different PGD loops; they agree mathematically
but not in their random starts and floating-point order, so each is kept:

- :func:`sign_pgd`: TRADES / SCORE (gowal21uncovering/utils/trades.py) and MART
  (core/utils/mart.py) Linf: x' moves by ``step * sign(grad)`` and is clipped
  with ``min(max(x', x - eps), x + eps)`` then to [0, 1].
- :func:`sgd_l2`: TRADES / SCORE L2: SGD with lr ``eps / steps * 2`` on the
  L2-normalised gradient of a perturbation that starts at ``0.001 N(0, 1)``.
- :func:`advertorch_pgd`: core/attacks/pgd.py (PGD-AT and the model-selection
  PGD-40), on a perturbation delta with a uniform random start.
- :func:`delta_linf`: without_DDPM/train_cifar.py's attack loops.

Every function takes ``forward`` (input -> logits; the caller sets the model's
mode and autocast) and ``loss_fn`` (logits -> scalar to maximise), draws its
noise from ``generator``, takes gradients with respect to the input only and
returns the adversarial input, detached.
"""

from __future__ import annotations

from typing import Callable

import torch

Forward = Callable[[torch.Tensor], torch.Tensor]
LossFn = Callable[[torch.Tensor], torch.Tensor]


def _input_grad(forward: Forward, loss_fn: LossFn, x_adv: torch.Tensor) -> torch.Tensor:
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(forward(x_adv))
    return torch.autograd.grad(loss, [x_adv])[0].detach()


def _uniform(x: torch.Tensor, low: float, high: float, generator: torch.Generator | None) -> torch.Tensor:
    return torch.empty(x.shape, dtype=x.dtype, device=x.device).uniform_(low, high, generator=generator)


def _normal(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)


def sign_pgd(forward: Forward, x: torch.Tensor, loss_fn: LossFn, eps: float, step_size: float, steps: int,
             init: str = "uniform", generator: torch.Generator | None = None) -> torch.Tensor:
    """TRADES/SCORE Linf (``init="uniform"``: clamp(x + U(-eps, eps))) or MART (``"normal"``: x + 0.001 N, unclamped)."""
    x = x.detach()
    if init == "uniform":
        x_adv = torch.clamp(x + _uniform(x, -eps, eps, generator), 0.0, 1.0)
    else:
        x_adv = x + 0.001 * _normal(x, generator)
    for _ in range(steps):
        grad = _input_grad(forward, loss_fn, x_adv)
        x_adv = x_adv.detach() + step_size * torch.sign(grad)
        x_adv = torch.min(torch.max(x_adv, x - eps), x + eps)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    return torch.clamp(x_adv, 0.0, 1.0).detach()


def sgd_l2(forward: Forward, x: torch.Tensor, loss_fn: LossFn, eps: float, steps: int,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """TRADES/SCORE L2: delta = 0.001 N(0,1); each step descends -loss along its normalised gradient (zero
    gradients replaced by N(0,1) noise) with lr eps/steps*2, clamps x + delta to [0, 1], renorms delta to eps.

    The official routine draws the Linf start U(-eps, eps) before it branches on the threat and discards it
    for L2; the draw is repeated here so that seeded runs consume the same random numbers."""
    x = x.detach()
    _uniform(x, -eps, eps, generator)
    delta = 0.001 * _normal(x, generator)
    lr = eps / steps * 2 if steps else 0.0
    for _ in range(steps):
        grad = -_input_grad(forward, loss_fn, x + delta)  # gradient of the minimised -loss
        norms = grad.view(len(x), -1).norm(p=2, dim=1)
        grad = grad.div(norms.view(-1, 1, 1, 1))
        zero = norms == 0
        if zero.any():
            grad[zero] = torch.randn(grad[zero].shape, dtype=grad.dtype, device=grad.device, generator=generator)
        delta = delta.add(grad, alpha=-lr)
        delta = (delta + x).clamp(0, 1).sub(x)
        delta = delta.renorm(p=2, dim=0, maxnorm=eps)
    return torch.clamp(x + delta, 0.0, 1.0).detach()


def _batch_norm2(t: torch.Tensor) -> torch.Tensor:
    return t.abs().pow(2).view(len(t), -1).sum(dim=1).pow(1.0 / 2)


def _clamp_by_l2(delta: torch.Tensor, eps: float) -> torch.Tensor:
    factor = torch.min(eps / _batch_norm2(delta), torch.ones(len(delta), dtype=delta.dtype, device=delta.device))
    return delta * factor.view(-1, *([1] * (delta.dim() - 1)))


def advertorch_pgd(forward: Forward, x: torch.Tensor, loss_fn: LossFn, threat: str, eps: float, step_size: float,
                   steps: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """core/attacks/pgd.py with ``rand_init_type='uniform'`` (Linf: delta = U(-1,1) * eps; L2: delta = U(0,1) - x
    clamped to the eps-ball), steps on delta (Linf: sign; L2: gradient / max(||grad||, 1e-6)), projected each step."""
    x = x.detach()
    if threat == "linf":
        delta = _uniform(x, -1.0, 1.0, generator) * eps
    else:
        delta = _clamp_by_l2(_uniform(x, 0.0, 1.0, generator) - x, eps)
    delta = torch.clamp(x + delta, 0.0, 1.0) - x
    delta = torch.clamp(x + delta, 0.0, 1.0) - x  # rand_init_delta and perturb() both clamp
    for _ in range(steps):
        grad = _input_grad(forward, loss_fn, x + delta)
        if threat == "linf":
            delta = torch.clamp(delta + torch.sign(grad) * step_size, -eps, eps)
            delta = torch.clamp(x + delta, 0.0, 1.0) - x
        else:
            norms = torch.max(_batch_norm2(grad), torch.full((len(x),), 1e-6, dtype=grad.dtype, device=grad.device))
            delta = delta + (grad * (1.0 / norms).view(-1, 1, 1, 1)) * step_size
            delta = torch.clamp(x + delta, 0.0, 1.0) - x
            delta = _clamp_by_l2(delta, eps)
    return torch.clamp(x + delta, 0.0, 1.0).detach()


def delta_linf(forward: Forward, x: torch.Tensor, loss_fn: LossFn, eps: float, step_size: float, steps: int,
               init: str = "uniform", generator: torch.Generator | None = None) -> torch.Tensor:
    """without_DDPM/train_cifar.py: delta starts at U(-eps, eps) (``attack_pgd_divergence``) or 0.001 N(0,1)
    (``attack_trades_divergence``), kept in [-x, 1-x]; each step delta = clip(delta + step*sign(grad), -eps, eps)."""
    x = x.detach()
    delta = _uniform(x, -eps, eps, generator) if init == "uniform" else 0.001 * _normal(x, generator)
    delta = torch.max(torch.min(delta, 1 - x), 0 - x)
    for _ in range(steps):
        grad = _input_grad(forward, loss_fn, x + delta)
        d = torch.clamp(delta + step_size * torch.sign(grad), min=-eps, max=eps)
        delta = torch.max(torch.min(d, 1 - x), 0 - x)
    return torch.clamp(x + delta, 0.0, 1.0).detach()
