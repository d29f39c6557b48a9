"""DeepMind-style pre-activation WideResNet (Gowal et al. 2020; Rebuffi et al. 2021).

The module layout and parameter names are those of RobustBench's
``DMWideResNet``, so SCORE and RobustBench checkpoints load with
``strict=True`` and give the same logits. Input normalisation is part of the
model: it takes images in [0, 1]. Any input of at least 8x8 works (global
pooling adapts to the map); timm's interface comes from ``TimmModel``.
No ``from __future__ import annotations``: TorchScript reads the type hints.
"""

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .timm_interface import Normalize, TimmModel, checkpoint_blocks

BN_MOMENTUM = 0.01


class _Block(nn.Module):
    """Pre-activation block with TensorFlow "SAME" padding before its first conv."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, activation_fn):
        super().__init__()
        self.batchnorm_0 = nn.BatchNorm2d(in_planes, momentum=BN_MOMENTUM)
        self.relu_0 = activation_fn()
        self.conv_0 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(out_planes, momentum=BN_MOMENTUM)
        self.relu_1 = activation_fn()
        self.conv_1 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        # The projection shortcut starts from the activated input, the identity from the block input.
        self.shortcut = (
            nn.Conv2d(in_planes, out_planes, 1, stride=stride, padding=0, bias=False)
            if in_planes != out_planes else None
        )
        self._stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu_0(self.batchnorm_0(x))
        if self.shortcut is not None:
            x = self.shortcut(out)
        if self._stride == 1:
            pad = [1, 1, 1, 1]
        else:   # TensorFlow's "SAME" for a 3x3 stride-2 conv: (0, 1) on even sizes (RobustBench's), (1, 1) on odd
            pad = [out.shape[-1] % 2, 1, out.shape[-2] % 2, 1]
        out = self.conv_0(F.pad(out, pad))
        out = self.conv_1(self.relu_1(self.batchnorm_1(out)))
        return x + out


class _BlockGroup(nn.Module):
    def __init__(self, num_blocks: int, in_planes: int, out_planes: int, stride: int, activation_fn):
        super().__init__()
        self.block = nn.Sequential(*[
            _Block(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, activation_fn)
            for i in range(num_blocks)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class WideResNet(TimmModel):
    """WRN-depth-width for images in [0, 1] (32x32 natively), normalised inside; head arguments as ``TimmModel``'s."""

    FIRST_CONV = "init_conv"
    CLASSIFIER = "logits"
    FINAL_NORM = ("batchnorm", "relu")
    FINAL_REDUCTION = 4
    # The stages sit one Sequential deep (layer.0, layer.1, layer.2); stem + 3 stages.
    FEATURE_CFG = {"flatten_sequential": True, "out_indices": (0, 1, 2, 3)}
    GROUP_MATCHER = (
        {"stem": r"^init_conv\.", "blocks": [(r"^layer\.(\d+)\.block\.(\d+)\.", None), (r"^batchnorm\.", (99999,))]},
        {"stem": r"^init_conv\.", "blocks": [(r"^layer\.(\d+)\.", None), (r"^batchnorm\.", (99999,))]},
    )

    def __init__(
        self,
        num_classes: int = 10,
        depth: int = 28,
        width: int = 10,
        activation: str = "swish",
        *,
        mean: Sequence[float],
        std: Sequence[float],
        global_pool: str = "avg",
        drop_rate: float = 0.0,
    ):
        super().__init__()
        if (depth - 4) % 6 != 0 or depth < 10:
            raise ValueError(f"WideResNet depth must be 6n+4 with n >= 1, got {depth}")
        activation_fn = {"swish": nn.SiLU, "relu": nn.ReLU}[activation]
        channels = [16, 16 * width, 32 * width, 64 * width]
        num_blocks = (depth - 4) // 6
        # Non-persistent statistics: the state dict stays identical to RobustBench's DMWideResNet.
        self.normalize = Normalize(mean, std)
        self.init_conv = nn.Conv2d(3, channels[0], 3, stride=1, padding=1, bias=False)
        self.layer = nn.Sequential(
            _BlockGroup(num_blocks, channels[0], channels[1], 1, activation_fn),
            _BlockGroup(num_blocks, channels[1], channels[2], 2, activation_fn),
            _BlockGroup(num_blocks, channels[2], channels[3], 2, activation_fn),
        )
        self.batchnorm = nn.BatchNorm2d(channels[3], momentum=BN_MOMENTUM)
        self.relu = activation_fn()
        reductions = (1, 1, 2, self.FINAL_REDUCTION)
        modules = ("init_conv", "layer.0", "layer.1", "layer.2")
        self.feature_info = [dict(num_chs=c, reduction=r, module=m) for c, r, m in zip(channels, reductions, modules)]
        self._init_head(channels[3], num_classes, global_pool, drop_rate)
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

    def _final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.batchnorm(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The unpooled feature map after the final norm and activation: (N, 64 * width, H / 4, W / 4)."""
        x = self.init_conv(self.normalize(x))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_blocks([group.block for group in self.layer], x)
        else:
            x = self.layer(x)
        return self._final_norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool (and drop out) the feature map; the pooled features with ``pre_logits``, else the logits."""
        x = self._pool(x)
        return x if pre_logits else self.logits(x)
