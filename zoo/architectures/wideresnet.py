"""DeepMind-style pre-activation WideResNet (Gowal et al. 2020; Rebuffi et al. 2021).

The module layout and parameter names are those of RobustBench's
``DMWideResNet``, so SCORE and RobustBench checkpoints load with
``strict=True`` and give the same logits. Input normalisation is part of the
model: it takes images in [0, 1].
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

BN_MOMENTUM = 0.01


class _Block(nn.Module):
    """Pre-activation block with "SAME"-style padding before its first conv."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, activation_fn):
        super().__init__()
        self.batchnorm_0 = nn.BatchNorm2d(in_planes, momentum=BN_MOMENTUM)
        self.relu_0 = activation_fn()
        self.conv_0 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(out_planes, momentum=BN_MOMENTUM)
        self.relu_1 = activation_fn()
        self.conv_1 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.has_shortcut = in_planes != out_planes
        self.shortcut = (
            nn.Conv2d(in_planes, out_planes, 1, stride=stride, padding=0, bias=False)
            if self.has_shortcut else None
        )
        self._stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu_0(self.batchnorm_0(x))
        if self.has_shortcut:
            x = out
        pad = (1, 1, 1, 1) if self._stride == 1 else (0, 1, 0, 1)
        out = self.conv_0(F.pad(out, pad))
        out = self.conv_1(self.relu_1(self.batchnorm_1(out)))
        return (self.shortcut(x) if self.has_shortcut else x) + out


class _BlockGroup(nn.Module):
    def __init__(self, num_blocks: int, in_planes: int, out_planes: int, stride: int, activation_fn):
        super().__init__()
        self.block = nn.Sequential(*[
            _Block(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, activation_fn)
            for i in range(num_blocks)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class WideResNet(nn.Module):
    """WRN-depth-width for 32x32 inputs in [0, 1], normalised inside the model."""

    def __init__(
        self,
        num_classes: int = 10,
        depth: int = 28,
        width: int = 10,
        activation: str = "swish",
        mean: Sequence[float] = (0.4914, 0.4822, 0.4465),
        std: Sequence[float] = (0.2471, 0.2435, 0.2616),
    ):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n+4 with n >= 1, got {depth}")
        activation_fn = {"swish": nn.SiLU, "relu": nn.ReLU}[activation]
        channels = [16, 16 * width, 32 * width, 64 * width]
        num_blocks = (depth - 4) // 6
        # Non-persistent: the state dict stays identical to RobustBench's DMWideResNet.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.init_conv = nn.Conv2d(3, channels[0], 3, stride=1, padding=1, bias=False)
        self.layer = nn.Sequential(
            _BlockGroup(num_blocks, channels[0], channels[1], 1, activation_fn),
            _BlockGroup(num_blocks, channels[1], channels[2], 2, activation_fn),
            _BlockGroup(num_blocks, channels[2], channels[3], 2, activation_fn),
        )
        self.batchnorm = nn.BatchNorm2d(channels[3], momentum=BN_MOMENTUM)
        self.relu = activation_fn()
        self.logits = nn.Linear(channels[3], num_classes)
        self.num_channels = channels[3]
        self._init_weights()

    def _init_weights(self) -> None:
        """The official SCORE WideResNet initialisation: conv N(0, sqrt(2 / (k*k*out))), BN 1/0, linear bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.init_conv((x - self.mean) / self.std)
        out = self.layer(out)
        out = self.relu(self.batchnorm(out))
        out = F.avg_pool2d(out, 8)
        return self.logits(out.flatten(1))
