"""One training step's forward passes and loss, per objective, as the official SCORE code computes them.

``semantics = "train-wa"`` follows train-wa.py with gowal21uncovering's
trainer (the released checkpoints):

- score / trades: the clean forward in train mode (BatchNorm statistics
  updated) gives the attack's target ``softmax(clean).detach()`` (with CutMix
  the mixed labels); the attack runs with frozen BatchNorm statistics
  (``sign_pgd`` Linf, ``sgd_l2`` L2); then the adversarial forward. The
  official code makes a separate frozen-statistics clean forward for the
  target; in train mode its output equals the statistics-updating one, so it
  is computed once. trades: SmoothCE(clean, y) + beta * KL(adv || clean);
  score: D(clean, y_ls) + beta * relu(D(adv, clean) - clip_value) with D the
  run's distance (LSE in the paper).
- pgd-at: the attack runs in eval mode (cross-entropy, mean); the loss is the
  cross-entropy of the adversarial logits (smoothed when label_smoothing > 0),
  or D(adv, y_ls) for another distance.
- mart: core/utils/mart.py (eval-mode attack from x + 0.001 N(0, 1)).

``semantics = "train-cifar"`` follows without_DDPM/train_cifar.py (the
paper's runs without generated data), Linf only:

- score / trades: an eval-mode clean forward gives the target; the attack
  maximises mean D(adv, target) from delta = 0.001 N(0, 1); then in train
  mode the adversarial forward comes first, the clean one second;
  D(clean, y_ls) + beta * D(adv, clean), the bound clipping the whole loss
  (or the robust term alone with not_clip_clean).
- pgd-at: the attack maximises mean D(adv, onehot) in train mode (its
  forwards update BatchNorm statistics, as in the official code); the loss
  is relu(D(adv, y_ls) - bound).

Softmax and every loss are computed in fp32 from the logits, also under bf16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attacks import advertorch_pgd, delta_linf, sgd_l2, sign_pgd
from .bn import eval_mode, frozen_bn_stats
from .config import TrainConfig
from .distances import clip_bound, distance, kl_terms
from .losses import mart_loss, smooth_cross_entropy, smooth_labels

Amp = Callable[[], object]  # returns an autocast context manager (or a no-op one)


@dataclass
class StepOutput:
    """What one training step computed: the loss to minimise and the logits for accuracy statistics."""

    loss: torch.Tensor
    logits_clean: torch.Tensor | None
    logits_adv: torch.Tensor
    x_adv: torch.Tensor


def _softmax(logits: torch.Tensor) -> torch.Tensor:
    return F.softmax(logits.float(), dim=1)


def _forward(module: nn.Module, amp: Amp) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(z: torch.Tensor) -> torch.Tensor:
        with amp():
            return module(z)
    return run


def _bounded(cfg: TrainConfig, num_classes: int, natural: torch.Tensor, robust: torch.Tensor) -> torch.Tensor:
    """Combine per-example natural and robust terms with the paper's clip_loss bound (train_cifar.py)."""
    if cfg.clip_loss == 0:
        return natural.mean() + cfg.beta * robust.mean()
    bound = clip_bound(cfg.distance_name, cfg.clip_loss, num_classes)
    if cfg.not_clip_clean:
        return (natural + cfg.beta * F.relu(robust - bound)).mean()
    return F.relu(natural + cfg.beta * robust - bound).mean()


def _pgd_at_loss(cfg: TrainConfig, logits_adv: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    if cfg.semantics == "train-wa" and cfg.distance_name == "KL" and cfg.clip_loss == 0:
        return smooth_cross_entropy(logits_adv, y, cfg.label_smoothing).mean()
    per_example = distance(cfg.distance_name, _softmax(logits_adv), smooth_labels(y, num_classes, cfg.label_smoothing))
    return F.relu(per_example - clip_bound(cfg.distance_name, cfg.clip_loss, num_classes)).mean()


def _train_wa_trades(model, raw, x, y, cfg, num_classes, amp, generator) -> StepOutput:
    with amp():
        logits_clean = model(x)
    target = y.float() if y.dim() == 2 else _softmax(logits_clean).detach()
    name = cfg.distance_name
    if name == "KL":  # KLDivLoss(reduction="batchmean")
        def attack_loss(logits):
            return kl_terms(target, F.log_softmax(logits.float(), dim=1)).sum() / len(logits)
    else:  # the official LSE attack sums over the batch; other distances likewise
        def attack_loss(logits):
            return distance(name, _softmax(logits), target).sum()
    with frozen_bn_stats(raw):
        forward = _forward(raw, amp)
        if cfg.threat == "linf":
            x_adv = sign_pgd(forward, x, attack_loss, cfg.eps, cfg.attack_step_size, cfg.attack_steps, "uniform", generator)
        else:
            x_adv = sgd_l2(forward, x, attack_loss, cfg.eps, cfg.attack_steps, generator)
    with amp():
        logits_adv = model(x_adv)
    p_clean, p_adv = _softmax(logits_clean), _softmax(logits_adv)
    if cfg.objective == "trades":
        natural = smooth_cross_entropy(logits_clean, y, cfg.label_smoothing)
        robust = kl_terms(p_clean, F.log_softmax(logits_adv.float(), dim=1)).sum(dim=1)
        return StepOutput(natural.mean() + cfg.beta * robust.mean(), logits_clean, logits_adv, x_adv)
    natural = distance(name, p_clean, smooth_labels(y, num_classes, cfg.label_smoothing))
    robust = F.relu(distance(name, p_adv, p_clean) - cfg.clip_value)
    return StepOutput(_bounded(cfg, num_classes, natural, robust), logits_clean, logits_adv, x_adv)


def _train_wa_pgd_at(model, raw, x, y, cfg, num_classes, amp, generator) -> StepOutput:
    if cfg.distance_name == "KL":
        def attack_loss(logits):
            return F.cross_entropy(logits.float(), y)
    else:
        onehot = F.one_hot(y, num_classes).float()

        def attack_loss(logits):
            return distance(cfg.distance_name, _softmax(logits), onehot).mean()
    with eval_mode(raw):
        x_adv = advertorch_pgd(_forward(raw, amp), x, attack_loss, cfg.threat, cfg.eps, cfg.attack_step_size,
                               cfg.attack_steps, generator)
    with amp():
        logits_adv = model(x_adv)
    return StepOutput(_pgd_at_loss(cfg, logits_adv, y, num_classes), None, logits_adv, x_adv)


def _train_wa_mart(model, raw, x, y, cfg, num_classes, amp, generator) -> StepOutput:
    with eval_mode(raw):
        x_adv = sign_pgd(_forward(raw, amp), x, lambda logits: F.cross_entropy(logits.float(), y), cfg.eps,
                         cfg.attack_step_size, cfg.attack_steps, "normal", generator)
    with amp():
        logits_clean = model(x)
        logits_adv = model(x_adv)
    return StepOutput(mart_loss(logits_clean, logits_adv, y, cfg.beta), logits_clean, logits_adv, x_adv)


def _train_cifar_trades(model, raw, x, y, cfg, num_classes, amp, generator) -> StepOutput:
    name = cfg.distance_name
    with eval_mode(raw), torch.no_grad(), amp():
        target = _softmax(raw(x))
    with eval_mode(raw):
        x_adv = delta_linf(_forward(raw, amp), x, lambda logits: distance(name, _softmax(logits), target).mean(),
                           cfg.eps, cfg.attack_step_size, cfg.attack_steps, "normal", generator)
    with amp():
        logits_adv = model(x_adv)
        logits_clean = model(x)
    p_clean, p_adv = _softmax(logits_clean), _softmax(logits_adv)
    natural = distance(name, p_clean, smooth_labels(y, num_classes, cfg.label_smoothing))
    return StepOutput(_bounded(cfg, num_classes, natural, distance(name, p_adv, p_clean)), logits_clean, logits_adv,
                      x_adv)


def _train_cifar_pgd_at(model, raw, x, y, cfg, num_classes, amp, generator) -> StepOutput:
    onehot = F.one_hot(y, num_classes).float()
    x_adv = delta_linf(_forward(raw, amp), x, lambda logits: distance(cfg.distance_name, _softmax(logits), onehot).mean(),
                       cfg.eps, cfg.attack_step_size, cfg.attack_steps, "uniform", generator)
    with amp():
        logits_adv = model(x_adv)
    return StepOutput(_pgd_at_loss(cfg, logits_adv, y, num_classes), None, logits_adv, x_adv)


_STEPS = {
    ("train-wa", "score"): _train_wa_trades, ("train-wa", "trades"): _train_wa_trades,
    ("train-wa", "pgd-at"): _train_wa_pgd_at, ("train-wa", "mart"): _train_wa_mart,
    ("train-cifar", "score"): _train_cifar_trades, ("train-cifar", "trades"): _train_cifar_trades,
    ("train-cifar", "pgd-at"): _train_cifar_pgd_at,
}


def adversarial_step(model: nn.Module, raw: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                     num_classes: int, amp: Amp, generator: torch.Generator | None = None) -> StepOutput:
    """Run the forward passes of one training step of ``cfg``'s objective; return its loss and logits.

    ``model`` (in train mode; possibly DDP-wrapped) runs the forwards whose
    gradients train it; ``raw`` (the bare module) runs the attack's forwards.
    ``y`` holds class indices, or probability vectors after CutMix. ``amp()``
    opens the autocast context of the run.
    """
    return _STEPS[cfg.semantics, cfg.objective](model, raw, x, y, cfg, num_classes, amp, generator)
