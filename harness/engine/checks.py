"""Checks on model outputs and adversarial examples: violations are errors."""

from __future__ import annotations

import torch

from zoo.errors import ScoreZooError

from ..threat_models import perturbation_norms


class EvaluationCheckError(ScoreZooError):
    """A model output or an adversarial example that fails a validity check."""


def check_logits(logits: torch.Tensor, num_classes: int, dataset: str, where: str) -> None:
    """The model must return finite (N, num_classes) logits."""
    if not isinstance(logits, torch.Tensor):
        raise EvaluationCheckError(f"the model returns a {type(logits).__name__} on {where}, not a tensor of logits; "
                                   "wrap it so that forward returns only the logits (N, classes)")
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise EvaluationCheckError(f"the model returns outputs of shape {tuple(logits.shape)} on {where}, "
                                   f"but {dataset} has {num_classes} classes; pass a model for {dataset}")
    bad = (~torch.isfinite(logits)).any(dim=1)
    if bad.any():
        raise EvaluationCheckError(f"the model returns NaN or infinite logits for {int(bad.sum())} example(s) "
                                   f"on {where}; fix the model before evaluating it")


def adversarial_tolerance(eps: float, threat_model: str) -> float:
    """How far past eps a returned example may lie (float rounding only)."""
    return 1e-6 + (1e-5 * eps if threat_model != "Linf" else 1e-7)


def check_adversarial(x: torch.Tensor, x_adv: torch.Tensor, eps: float, threat_model: str, where: str) -> None:
    """Every adversarial example must be finite, inside [0,1] and inside the eps ball."""
    if x_adv.shape != x.shape:
        raise EvaluationCheckError(f"AutoAttack returned examples of shape {tuple(x_adv.shape)} for inputs "
                                   f"{tuple(x.shape)} on {where}")
    finite = torch.isfinite(x_adv).flatten(1).all(dim=1)
    if not finite.all():
        raise EvaluationCheckError(f"{int((~finite).sum())} adversarial example(s) on {where} are not finite")
    lo, hi = float(x_adv.min()), float(x_adv.max())
    if lo < 0.0 or hi > 1.0:
        raise EvaluationCheckError(f"adversarial examples on {where} leave the image range [0,1] "
                                   f"(min {lo:.6g}, max {hi:.6g})")
    norms = perturbation_norms(x_adv - x, threat_model)
    limit = eps + adversarial_tolerance(eps, threat_model)
    over = norms > limit
    if over.any():
        raise EvaluationCheckError(f"{int(over.sum())} adversarial example(s) on {where} lie outside the "
                                   f"{threat_model} ball of radius {eps:.6g} (largest {float(norms.max()):.6g})")
