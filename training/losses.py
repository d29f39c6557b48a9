"""Loss terms on logits, each written as the official SCORE code computes it.

Objectives (training/objectives.py) compose these per example; the attacks
(training/attacks.py) maximise some of them. Labels are class indices (N,)
or, with CutMix, probability vectors (N, K).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .distances import kl_terms


def smooth_labels(y: torch.Tensor, num_classes: int, label_smoothing: float = 0.0) -> torch.Tensor:
    """``(1 - K*ls/(K-1)) * onehot(y) + ls/(K-1)`` (trades_loss_LSE's targets); soft labels pass through."""
    if y.dim() == 2:
        return y.float()
    onehot = F.one_hot(y, num_classes)
    return (1 - num_classes * label_smoothing / (num_classes - 1)) * onehot + label_smoothing / (num_classes - 1)


def smooth_cross_entropy(logits: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-example cross-entropy of the official SmoothCrossEntropyLoss: (1-ls) on the label, ls/K everywhere.

    With soft labels (CutMix) it is the official ``KLDivLoss(log_softmax(logits), y)`` per example.
    """
    logprobs = F.log_softmax(logits.float(), dim=-1)
    if y.dim() == 2:
        return kl_terms(y.float(), logprobs).sum(dim=-1)
    nll = -logprobs.gather(dim=-1, index=y.unsqueeze(1)).squeeze(1)
    return (1.0 - label_smoothing) * nll + label_smoothing * (-logprobs.mean(dim=-1))


def cw_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The official CWLoss (model selection attack), summed: -relu(f_y - max_{k != y} f_k)."""
    logits = logits.float()
    onehot = torch.zeros_like(logits).scatter_(1, y.unsqueeze(1), 1.0)
    real = (onehot * logits).sum(1)
    other = ((1.0 - onehot) * logits - onehot * 10000.0).max(1)[0]
    return -torch.clamp(real - other, min=0.0).sum()


def mart_loss(logits_clean: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """MART (Wang et al. 2020) as core/utils/mart.py computes it."""
    logits_clean, logits_adv = logits_clean.float(), logits_adv.float()
    batch_size = len(y)
    adv_probs = F.softmax(logits_adv, dim=1)
    top2 = torch.argsort(adv_probs, dim=1)[:, -2:]
    new_y = torch.where(top2[:, -1] == y, top2[:, -2], top2[:, -1])
    loss_adv = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - adv_probs + 1e-12), new_y)
    nat_probs = F.softmax(logits_clean, dim=1)
    true_probs = torch.gather(nat_probs, 1, y.unsqueeze(1).long()).squeeze()
    kl = F.kl_div(torch.log(adv_probs + 1e-12), nat_probs, reduction="none")
    loss_robust = (1.0 / batch_size) * torch.sum(torch.sum(kl, dim=1) * (1.0000001 - true_probs))
    return loss_adv + float(beta) * loss_robust
