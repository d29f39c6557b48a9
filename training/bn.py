"""BatchNorm controls the official training code uses around its forward passes."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch.nn as nn


def batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer of ``model``."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def set_bn_momentum(model: nn.Module, momentum: float) -> None:
    """Set the running-statistics momentum of every BatchNorm layer."""
    for m in batchnorms(model):
        m.momentum = momentum


@contextmanager
def frozen_bn_stats(model: nn.Module) -> Iterator[None]:
    """``track_bn_stats(model, False)``: in train mode BatchNorm keeps normalising with batch statistics
    but leaves its running statistics untouched."""
    layers = batchnorms(model)
    before = [m.track_running_stats for m in layers]
    for m in layers:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m, t in zip(layers, before):
            m.track_running_stats = t


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block, then restore its previous mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
