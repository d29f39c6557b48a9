"""Accuracy of a model during training: the held-out selection attack and the test-split logs.

Model selection (official train-wa.py): the weight average's accuracy under
PGD-40 with the clamped CW loss, step ``attack_step_size``, uniform random
start (core/attacks/pgd.py), on the held-out images; the best epoch (ties go
to the later one) is the released ``model-best``. The same attack on the test
split is only logged, never used for selection.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from zoo import devices

from .attacks import advertorch_pgd
from .bn import eval_mode
from .config import TrainConfig
from .data import to_float
from .losses import cw_loss


def selection_step_size(cfg: TrainConfig) -> float:
    """Step of the selection attack: ``eval_attack_step_size``, or the training attack's step (official)."""
    return cfg.eval_attack_step_size or cfg.attack_step_size


@torch.no_grad()
def accuracy(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, group: devices.Group,
             generator: torch.Generator, attack_steps: int) -> tuple[float, float | None]:
    """Clean and PGD-CW accuracy in % of ``model`` (eval mode) on uint8 images, sharded over ranks.

    ``attack_steps = 0`` measures clean accuracy only (the second value is None).
    """
    x_u8, y = x_u8[group.rank::group.world_size], y[group.rank::group.world_size]
    counts = torch.zeros(3, dtype=torch.float64, device=group.where.device)
    with eval_mode(model):
        for i in range(0, len(y), cfg.eval_batch_size):
            xb = to_float(x_u8[i:i + cfg.eval_batch_size], group.where.device)
            yb = y[i:i + cfg.eval_batch_size].to(group.where.device)
            counts[0] += (model(xb).argmax(1) == yb).sum()
            if attack_steps:
                with torch.enable_grad():
                    xb = advertorch_pgd(model, xb, lambda logits, t=yb: cw_loss(logits, t), cfg.threat, cfg.eps,
                                        selection_step_size(cfg), attack_steps, generator)
                counts[1] += (model(xb).argmax(1) == yb).sum()
            counts[2] += len(yb)
    group.all_reduce_sum(counts)
    n = max(1.0, counts[2].item())
    return 100.0 * counts[0].item() / n, (100.0 * counts[1].item() / n if attack_steps else None)
