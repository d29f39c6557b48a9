"""The toy demonstration's model, objectives and measurements, each as generate_toy_demo.py computes it.

With D a distance of training/toy/distances.py, P* the exact posterior
(training/toy/problem.py) and every max over |delta| <= eps taken by the
script's attack (training/toy/attacks.py) from a uniform start:

    Standard         D(f(x), P*(x))
    PGDAT            max_delta D(f(x+delta), P*(x))               robust error: local invariance
    PGDATconsistent  max_delta D(f(x+delta), P*(x+delta))         SCORE: local equivariance
    TRADES           D(f(x), P*(x)) + 1.0 * D(f(x+delta), P*(x)), delta maximising D(f(x+delta), f(x))

(the script's TRADES compares f(x+delta) with P*(x), not with f(x) as TRADES
proper does). Measured with a second distance D_C: R_SCORE =
max_delta D_C(f(x+delta), P*(x+delta)) and R_standard = D_C(f(x), P*(x)); and
C = max_delta D(P*(x+delta), P*(x)).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attacks import sign_ascent
from .distances import point_terms, toy_distance
from .problem import Problem
from .settings import ToySettings


class ToyMLP(nn.Module):
    """The official ``Small_NN``: Linear(1, 100), tanh, Linear(100, 100), tanh, Linear(100, 2); same parameter names."""

    def __init__(self, width: int = 100):
        super().__init__()
        self.model = nn.Sequential(nn.Linear(1, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                                   nn.Linear(width, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def uniform_start(like: torch.Tensor, eps: float, rng: torch.Generator) -> torch.Tensor:
    """An attack's start: uniform in [-eps, eps], drawn from ``rng`` (``delta.uniform_(-eps, eps)``)."""
    return torch.empty_like(like).uniform_(-eps, eps, generator=rng)


def prob(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's P(y|x): ``F.softmax(model(x), dim=1)``."""
    return F.softmax(model(x), dim=1)


def c_delta(problem: Problem, x: torch.Tensor, start: torch.Tensor, distance: str, s: ToySettings) -> torch.Tensor:
    """The official ``compute_C`` from ``start``: the delta maximising D(P*(x+delta), P*(x))."""
    target = problem.posterior(x)

    def terms(rows, d):
        return point_terms(distance, problem.posterior(x[rows] + d), target[rows])

    return sign_ascent(terms, start, s.eps, s.alpha, s.attack_steps)


def c_draw(problem: Problem, x: torch.Tensor, start: torch.Tensor, distance: str, s: ToySettings) -> torch.Tensor:
    """One draw's term of C: D(P*(x+delta), P*(x)) at the ``c_delta`` from ``start`` (the script averages 10)."""
    delta = c_delta(problem, x, start, distance, s)
    return toy_distance(distance, problem.posterior(x + delta), problem.posterior(x))


def consistent_delta(model: nn.Module, problem: Problem, x: torch.Tensor, start: torch.Tensor, distance: str,
                     s: ToySettings) -> torch.Tensor:
    """The official ``attack_pgd_consistent``: the delta maximising D(f(x+delta), P*(x+delta))."""
    def terms(rows, d):
        z = x[rows] + d
        return point_terms(distance, prob(model, z), problem.posterior(z))

    return sign_ascent(terms, start, s.eps, s.alpha, s.attack_steps)


def target_delta(model: nn.Module, x: torch.Tensor, target: torch.Tensor, start: torch.Tensor, distance: str,
                 s: ToySettings) -> torch.Tensor:
    """The delta maximising D(f(x+delta), target): the official ``attack_pgd`` (target P*(x)) and
    ``attack_trades`` (target the detached f(x))."""
    def terms(rows, d):
        return point_terms(distance, prob(model, x[rows] + d), target[rows])

    return sign_ascent(terms, start, s.eps, s.alpha, s.attack_steps)


def training_loss(objective: str, model: nn.Module, problem: Problem, x: torch.Tensor, rng: torch.Generator,
                  s: ToySettings) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One iteration's loss of ``objective`` on the batch ``x`` (with its graph), and its delta (None for Standard).

    The attack's uniform start is drawn from ``rng`` as the official script draws it.
    """
    d = s.distance
    if objective == "PGDATconsistent":
        delta = consistent_delta(model, problem, x, uniform_start(x, s.eps, rng), d, s)
        return toy_distance(d, prob(model, x + delta), problem.posterior(x + delta)), delta
    y = problem.posterior(x)
    if objective == "Standard":
        return toy_distance(d, prob(model, x), y), None
    start = uniform_start(x, s.eps, rng)
    if objective == "PGDAT":
        delta = target_delta(model, x, y, start, d, s)
        return toy_distance(d, prob(model, x + delta), y), delta
    clean = prob(model, x)  # TRADES: the attack's target and the loss's clean term, computed once
    delta = target_delta(model, x, clean.detach(), start, d, s)
    loss = toy_distance(d, clean, y)
    return loss + s.trades_lambda * toy_distance(d, prob(model, x + delta), y), delta


@torch.no_grad()
def _risks(model: nn.Module, problem: Problem, x: torch.Tensor, delta: torch.Tensor, distance: str
           ) -> tuple[float, float]:
    z = x + delta
    r_score = toy_distance(distance, prob(model, z), problem.posterior(z))
    return r_score.item(), toy_distance(distance, prob(model, x), problem.posterior(x)).item()


def measure(model: nn.Module, problem: Problem, x: torch.Tensor, rng: torch.Generator, s: ToySettings
            ) -> tuple[float, float]:
    """R_SCORE and R_standard of ``model`` on the batch ``x`` (measuring distance), as the script records them."""
    delta = consistent_delta(model, problem, x, uniform_start(x, s.eps, rng), s.measure_distance, s)
    return _risks(model, problem, x, delta, s.measure_distance)
