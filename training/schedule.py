"""Optimizer and learning-rate schedule of a run, built from torch's own schedulers.

Paper recipes (train-wa.py, ``--scheduler cosinew``): ``OneCycleLR(max_lr,
pct_start=0.025, total_steps=epochs)`` stepped once per epoch, so Nesterov
SGD's momentum also cycles 0.95 -> 0.85 -> 0.95. Runs without generated data
(without_DDPM/train_cifar.py): lr set before every step to
``f(epoch + (i + 1) / n)`` with f dropping x10 at epochs 100 and 105, which is
``MultiStepLR`` stepped per optimiser step with milestones ``m * n - 1``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .bn import batchnorms
from .config import TrainConfig

Scheduler = torch.optim.lr_scheduler.LRScheduler


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with weight decay on every parameter, except BatchNorm weights and biases unless bn_weight_decay."""
    bn_params = {id(p) for m in batchnorms(model) for p in m.parameters(recurse=False)}
    exempt = set() if cfg.bn_weight_decay else bn_params
    groups = [{"params": [p for p in model.parameters() if id(p) not in exempt], "weight_decay": cfg.weight_decay},
              {"params": [p for p in model.parameters() if id(p) in exempt], "weight_decay": 0.0}]
    return torch.optim.SGD([g for g in groups if g["params"]], lr=cfg.lr, momentum=cfg.momentum,
                           nesterov=cfg.nesterov and cfg.momentum > 0)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int) -> Scheduler:
    """The run's scheduler; call ``step()`` once per epoch or per optimiser step as ``cfg.lr_schedule_unit`` says."""
    per_step = cfg.lr_schedule_unit == "step"
    if cfg.lr_schedule == "onecycle":
        total = cfg.epochs * steps_per_epoch if per_step else cfg.epochs
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total,
                                                   pct_start=cfg.warmup_fraction, cycle_momentum=cfg.cycle_momentum)
    if cfg.lr_schedule == "piecewise":
        milestones = [m * steps_per_epoch - 1 for m in cfg.milestones] if per_step else cfg.milestones
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=cfg.lr_decay)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
