"""MALT: Mesoscopic Almost Linearity Targeting (Melamed, Yehudai and Shamir, NeurIPS 2024).

AutoAttack's APGD-T attacks the classes with the highest logits after the true
one. MALT chooses the target classes by a linear approximation of the model
around the image instead: for each candidate class ``c`` the estimated distance
to the boundary between the predicted class ``s`` and ``c`` is
``(z_s - z_c) / ||grad_x (z_c - z_y)||_q`` with ``q`` the dual norm of the
threat model (L1 for Linf, L2 for L2), and the ``n_targets`` classes with the
smallest estimate are attacked in that order with targeted APGD on the
targeted DLR loss, 100 iterations, one restart.

Followed as a specification, from github.com/odeliamel/MALT (commit 2e7d57b):

- ``targeting.py``: ``get_k_best_target_classes`` (candidates: the top
  ``testk`` = 100 classes by logit besides the label, capped at C - 1; the
  Jacobian rows ``grad(z_c - z_y)`` from ``fast_find_matrix_around_image``;
  the score of ``get_class_rank``, where a candidate whose gradient is zero
  scores 0 and a non-candidate scores infinity; the ``k`` = 9 smallest scores).
- ``MALT_attack.py``: ``MALTAttack.attack_batch`` (the targets in order, each
  attacking only the examples no earlier target broke; stop when none is left).
- ``demo.py``: the base attack, APGD targeted at eps with its defaults
  (100 iterations, one restart, DLR-targeted loss), k = 9, testk = 100.

Differences, on purpose: the base attack is pyautoattack's APGD-T
(``APGDAttack_targeted.attack_single_run`` with the MALT target set as its
``y_target``, i.e. AutoAttack's own targeted APGD, not adversarial-library's),
seeded once per call with the evaluation's seed; and an example counts as broken
when the model misclassifies it (robust accuracy, as AutoAttack counts), where
the reference counts only a hit on the target class. Supported norms: Linf and
L2 (the reference's two).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
from pyautoattack.autopgd_base import APGDAttack_targeted

from zoo.errors import ConfigError

DUAL_NORM = {"Linf": 1, "L2": 2}


@dataclasses.dataclass(frozen=True)
class MaltSettings:
    """The reference's settings (``demo.py``): 9 targets from 100 candidates, APGD-T 100 iterations, 1 restart."""

    n_targets: int = 9
    n_candidates: int = 100
    n_iter: int = 100
    n_restarts: int = 1

    @classmethod
    def with_n_iter(cls, n_iter: int | None) -> "MaltSettings":
        """The reference's settings, with ``n_iter`` APGD-T iterations where given (``--n-iter``, as for AutoAttack)."""
        return cls() if n_iter is None else cls(n_iter=n_iter)


def candidate_classes(logits: torch.Tensor, y: torch.Tensor, n_candidates: int) -> torch.Tensor:
    """The top ``n_candidates`` classes by logit besides the label (capped at C - 1), per example."""
    k = min(n_candidates, logits.shape[1] - 1)
    masked = logits.scatter(1, y[:, None], -float("inf"))
    return masked.topk(k, dim=1)[1]


def boundary_scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat_model: str = "Linf",
                    n_candidates: int = 100) -> torch.Tensor:
    """MALT's score per example and class (N, C): the linearly estimated distance to each class's boundary.

    Candidates score ``(z_s - z_c) / ||grad_x(z_c - z_y)||_q`` (``s`` the predicted
    class, ``q`` the dual norm), 0 where that gradient is zero (as the reference
    does); every other class (the label, non-candidates) scores infinity.
    """
    if threat_model not in DUAL_NORM:
        raise ConfigError(f"MALT supports the Linf and L2 threat models, not {threat_model}")
    with torch.no_grad():
        logits = model(x)
    pred = logits.argmax(1)
    cand = candidate_classes(logits, y, n_candidates)
    rows = torch.arange(len(x), device=x.device)
    norms = torch.empty(cand.shape, dtype=torch.float32, device=x.device)
    for j in range(cand.shape[1]):   # one backward per candidate rank: grad of z_c - z_y for each example's c
        xg = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = model(xg)
            weights = torch.zeros_like(out)
            weights[rows, cand[:, j]] = 1.0
            weights[rows, y] = -1.0
            (grad,) = torch.autograd.grad(out, xg, grad_outputs=weights)
        norms[:, j] = grad.flatten(1).norm(p=DUAL_NORM[threat_model], dim=1).float()
    diffs = (logits[rows, pred][:, None] - logits.gather(1, cand)).float()
    eps_est = torch.where(norms != 0, diffs / torch.where(norms != 0, norms, torch.ones_like(norms)),
                          torch.zeros_like(diffs))
    scores = torch.full(logits.shape, float("inf"), dtype=torch.float32, device=x.device)
    scores.scatter_(1, cand, eps_est)
    return scores


def target_classes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat_model: str = "Linf",
                   n_targets: int = 9, n_candidates: int = 100) -> torch.Tensor:
    """(N, k) target classes per example, closest estimated boundary first (k = min(n_targets, C - 1))."""
    scores = boundary_scores(model, x, y, threat_model, n_candidates)
    k = min(n_targets, scores.shape[1] - 1)
    return scores.topk(k, dim=1, largest=False)[1]


def malt_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, threat_model: str = "Linf",
                settings: MaltSettings = MaltSettings(), seed: int = 0,
                device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """MALT on a batch: (adversarial examples, target per example, -1 where none broke it).

    Each target in turn attacks the examples not yet misclassified; an example
    keeps the adversarial example of the target that broke it (else the clean image).
    """
    if len(x) == 0:
        return x.clone(), torch.zeros(0, dtype=torch.long)
    device = device or x.device
    x, y = x.detach().to(device), y.detach().to(device)
    targets = target_classes(model, x, y, threat_model, settings.n_targets, settings.n_candidates)
    apgd = APGDAttack_targeted(model, n_iter=settings.n_iter, norm=threat_model, n_restarts=1, eps=eps, seed=seed,
                               device=device)
    apgd.init_hyperparam(x)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed(seed)
    adv = x.clone()
    hit = torch.full((len(x),), -1, dtype=torch.long, device=device)
    for j in range(targets.shape[1]):
        for _ in range(settings.n_restarts):
            todo = (hit < 0).nonzero().flatten()
            if todo.numel() == 0:
                break
            apgd.y_target = targets[todo, j]
            _, robust, _, adv_now = apgd.attack_single_run(x[todo].clone(), y[todo].clone())
            broken = robust == 0
            adv[todo[broken]] = adv_now[broken].detach()
            hit[todo[broken]] = targets[todo[broken], j]
        if (hit >= 0).all():
            break
    return adv.detach(), hit.cpu()
