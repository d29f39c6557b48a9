"""Training objectives on logits: SCORE (squared error), TRADES (KL), PGD-AT (CE).

Each objective also has an *attack loss*: what the training attack maximises.
Attack losses are summed over the batch so that every example's input
gradient is independent of the batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smooth_labels(y: torch.Tensor, num_classes: int, label_smoothing: float = 0.0) -> torch.Tensor:
    """Return ``(1 - K*ls/(K-1)) * onehot(y) + ls/(K-1)``: 1-ls on the label, ls/(K-1) elsewhere."""
    onehot = F.one_hot(y, num_classes).float()
    if label_smoothing == 0:
        return onehot
    off = label_smoothing / (num_classes - 1)
    return (1 - num_classes * off) * onehot + off


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_k targets_k * log_softmax(logits)_k``."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


def score_objective(logits_clean: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float,
                    label_smoothing: float = 0.0, clip: float = 0.0) -> torch.Tensor:
    """SCORE loss: mean ||p(x) - y_ls||^2 + beta * mean relu(||p(x_adv) - p(x)||^2 - clip)."""
    num_classes = logits_clean.shape[1]
    p_clean = F.softmax(logits_clean.float(), dim=1)
    p_adv = F.softmax(logits_adv.float(), dim=1)
    loss_clean = (p_clean - smooth_labels(y, num_classes, label_smoothing)).pow(2).sum(1)
    loss_robust = F.relu((p_adv - p_clean).pow(2).sum(1) - clip)
    return loss_clean.mean() + beta * loss_robust.mean()


def trades_objective(logits_clean: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float,
                     label_smoothing: float = 0.0) -> torch.Tensor:
    """TRADES loss: CE_ls(f(x), y) + beta * KL(p(x) || p(x_adv)) averaged over the batch."""
    targets = smooth_labels(y, logits_clean.shape[1], label_smoothing)
    kl = F.kl_div(F.log_softmax(logits_adv.float(), dim=1), F.softmax(logits_clean.float(), dim=1),
                  reduction="batchmean")
    return soft_cross_entropy(logits_clean, targets) + beta * kl


def pgd_at_objective(logits_adv: torch.Tensor, y: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """PGD-AT (Madry et al.) loss: cross-entropy on the adversarial logits."""
    return soft_cross_entropy(logits_adv, smooth_labels(y, logits_adv.shape[1], label_smoothing))


# ---- what the attacks maximise (summed over the batch) ----

def squared_error_attack_loss(logits_adv: torch.Tensor, p_target: torch.Tensor) -> torch.Tensor:
    """SCORE inner maximisation: sum over the batch of ||p(x') - p_target||^2."""
    return (F.softmax(logits_adv.float(), dim=1) - p_target).pow(2).sum()


def kl_attack_loss(logits_adv: torch.Tensor, p_target: torch.Tensor) -> torch.Tensor:
    """TRADES inner maximisation: sum over the batch of KL(p_target || p(x'))."""
    return F.kl_div(F.log_softmax(logits_adv.float(), dim=1), p_target, reduction="sum")


def ce_attack_loss(logits_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PGD-AT inner maximisation: summed cross-entropy with the true labels."""
    return F.cross_entropy(logits_adv.float(), y, reduction="sum")


def cw_attack_loss(logits_adv: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner margin, summed: max_{k != y} f_k(x') - f_y(x') (used for model selection)."""
    logits = logits_adv.float()
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(1)
    return (other - true).sum()
