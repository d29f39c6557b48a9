"""The toy demonstration's attack: the official sign-gradient ascent, computed point by point.

Every attack of generate_toy_demo.py (``compute_C``, ``attack_pgd``,
``attack_pgd_consistent``, ``attack_trades``) starts from a uniform draw in
[-eps, eps] and takes ``steps`` steps of

    delta <- clip(delta + alpha * sign(d loss / d delta), -eps, eps)

on a loss that is a batch reduction of per-point terms. A point's gradient is
its own term's gradient times a positive number shared by the batch, so each
point moves on its own. Three things make that cheap without changing the
result:

- gradients are taken with respect to delta only (no parameter gradients);
- points go through in chunks whose activations stay in the CPU cache;
- a point whose delta stops moving (delta_k = delta_k-1) or comes back to
  where it was two steps before (delta_k = delta_k-2) repeats itself to the
  last step, since its next step is computed from exactly the same numbers:
  its final delta is known (delta_k, or delta_k-1 for an odd number of steps
  left) and it leaves the batch.

On one CPU thread the matrix products give each row the same bits whatever
the other rows are, so the result is bit for bit that of the whole batch.
"""

from __future__ import annotations

from typing import Callable

import torch

CHUNK = 8192

PointLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sign_ascent(point_loss: PointLoss, start: torch.Tensor, eps: float, alpha: float, steps: int) -> torch.Tensor:
    """The official attack loop from ``start`` (shape (N, 1)); returns the final delta.

    ``point_loss(rows, delta)`` gives the per-point terms (shape (n,)) of the
    points ``rows`` (indices into the batch) perturbed by ``delta`` (shape
    (n, 1)); the attack ascends their sum over the batch divided by N, the
    official mean.
    """
    delta = start.clone()
    for lo in range(0, len(start), CHUNK):
        rows = torch.arange(lo, min(lo + CHUNK, len(start)))
        delta[rows] = _ascend_rows(point_loss, rows, start[rows], len(start), eps, alpha, steps)
    return delta


def _ascend_rows(point_loss: PointLoss, rows: torch.Tensor, start: torch.Tensor, n_points: int, eps: float,
                 alpha: float, steps: int) -> torch.Tensor:
    now = start.clone()                       # delta_k of every row
    before = torch.full_like(start, torch.nan)  # delta_k-1 (none before the first step)
    live = torch.arange(len(rows))            # rows still moving
    for k in range(1, steps + 1):
        d = now[live].requires_grad_()
        with torch.enable_grad():
            loss = point_loss(rows[live], d).sum() / n_points
        grad, = torch.autograd.grad(loss, d)
        old = d.detach()
        new = torch.clamp(old + alpha * torch.sign(grad), min=-eps, max=eps)
        settled = (new == old) | (new == before[live])
        before[live], now[live] = old, new
        if k == steps or not settled.any():
            continue
        done = live[settled.squeeze(1)]
        if (steps - k) % 2:                   # a two-step cycle with an odd number of steps left ends on delta_k-1
            now[done] = before[done]
        live = live[~settled.squeeze(1)]
        if len(live) == 0:
            break
    return now
