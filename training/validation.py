"""Accuracy of a model during training: the held-out selection attack and the test-split logs.

Model selection (official train-wa.py): the weight average's accuracy under
PGD-40 with the clamped CW loss, step ``attack_step_size``, uniform random
start (core/attacks/pgd.py), on the held-out images; the best epoch (ties go
to the later one) is the released ``model-best``. The same attack on the test
split is only logged, never used for selection.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from harness.data import load_arrays
from zoo import distributed
from zoo.errors import ScoreZooError

from .attacks import advertorch_pgd
from .bn import eval_mode
from .config import TrainConfig
from .data import TrainData, to_float
from .losses import cw_loss
from .randomness import step_generator

_EVAL_STREAM = 2**31  # random stream of the evaluations, apart from every epoch's (randomness.step_generator)


def selection_step_size(cfg: TrainConfig) -> float:
    """Step of the selection attack: ``eval_attack_step_size``, or the training attack's step (official)."""
    return cfg.eval_attack_step_size or cfg.attack_step_size


@torch.no_grad()
def accuracy(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, group: distributed.Group,
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


def load_test_split(cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The test split logged during training: ``test_data``, else the test split next to the training data."""
    if not (cfg.test_clean_every or cfg.test_robust_every):
        return None
    if cfg.test_data:
        x, y = load_arrays(cfg.dataset, "test", cfg.test_data)
    else:  # best effort: the training data's folder may hold no test split
        try:
            where = Path(cfg.resolved_data_dir())
            x, y = load_arrays(cfg.dataset, "test", where if where.is_dir() else where.parent)
        except ScoreZooError:
            return None
    if cfg.test_size:
        x, y = x[:cfg.test_size], y[:cfg.test_size]
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))


def epoch_accuracies(cfg: TrainConfig, model: nn.Module, data: TrainData, test: tuple | None, epoch: int,
                     group: distributed.Group) -> dict[str, float]:
    """The accuracies due after ``epoch`` (counted from 0): held-out selection every ``eval_every`` epochs,
    the test-split logs every ``test_clean_every`` / ``test_robust_every``, each also after the last epoch."""
    out: dict[str, float] = {}
    last = epoch + 1 == cfg.epochs

    def due(every: int) -> bool:
        return bool(every) and ((epoch + 1) % every == 0 or last)

    if due(cfg.eval_every):
        gen = step_generator(cfg.seed, _EVAL_STREAM, 0, group.rank, torch.device(group.where.device))
        out["holdout_clean_acc"], out["holdout_robust_acc"] = accuracy(
            model, data.holdout_x, data.holdout_y, cfg, group, gen, cfg.eval_attack_steps)
    if test is not None and (due(cfg.test_clean_every) or due(cfg.test_robust_every)):
        gen = step_generator(cfg.seed, _EVAL_STREAM, 1, group.rank, torch.device(group.where.device))
        clean, robust = accuracy(model, test[0], test[1], cfg, group, gen,
                                 cfg.eval_attack_steps if due(cfg.test_robust_every) else 0)
        out["test_clean_acc"] = clean
        if robust is not None:
            out["test_robust_acc"] = robust
    return out
