"""Pre-activation ResNet-18 (He et al. 2016) with input normalisation inside.

Identical to RobustBench's ``PreActResNet(PreActBlock, [2, 2, 2, 2],
bn_before_fc=True, out_shortcut=True)``: same parameter names and logits.
Any input of at least 8x8 works (global pooling adapts to the map); timm's
interface comes from ``TimmModel``.
No ``from __future__ import annotations``: TorchScript reads the type hints.
"""

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .timm_interface import Normalize, TimmModel, checkpoint_blocks


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = (nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))
                         if stride != 1 or in_planes != planes else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = x
        if self.shortcut is not None:
            shortcut = self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(TimmModel):
    """PreAct ResNet for images in [0, 1] (32x32 natively), normalised inside; head arguments as ``TimmModel``'s."""

    FIRST_CONV = "conv1"
    CLASSIFIER = "linear"
    FINAL_NORM = ("bn", "relu")
    FINAL_REDUCTION = 8
    FEATURE_CFG = {"out_indices": (0, 1, 2, 3, 4)}   # stem + 4 stages, all top-level modules
    GROUP_MATCHER = (
        {"stem": r"^conv1\.", "blocks": [(r"^layer(\d+)\.(\d+)\.", None), (r"^bn\.", (99999,))]},
        {"stem": r"^conv1\.", "blocks": [(r"^layer(\d+)\.", None), (r"^bn\.", (99999,))]},
    )

    def __init__(
        self,
        num_blocks: Sequence[int] = (2, 2, 2, 2),
        num_classes: int = 10,
        mean: Sequence[float] = (0.4914, 0.4822, 0.4465),
        std: Sequence[float] = (0.2471, 0.2435, 0.2616),
        global_pool: str = "avg",
        drop_rate: float = 0.0,
    ):
        super().__init__()
        self.in_planes = 64
        self.normalize = Normalize(mean, std)
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.layer1 = self._make_layer(64, num_blocks[0], 1)
        self.layer2 = self._make_layer(128, num_blocks[1], 2)
        self.layer3 = self._make_layer(256, num_blocks[2], 2)
        self.layer4 = self._make_layer(512, num_blocks[3], 2)
        self.bn = nn.BatchNorm2d(512)
        self.relu = nn.ReLU()
        channels, reductions = (64, 64, 128, 256, 512), (1, 1, 2, 4, self.FINAL_REDUCTION)
        modules = ("conv1", "layer1", "layer2", "layer3", "layer4")
        self.feature_info = [dict(num_chs=c, reduction=r, module=m) for c, r, m in zip(channels, reductions, modules)]
        self._init_head(512, num_classes, global_pool, drop_rate)

    def _make_layer(self, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(PreActBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def _final_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The unpooled feature map after the final norm and activation: (N, 512, H / 8, W / 8)."""
        x = self.conv1(self.normalize(x))
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_blocks([self.layer1, self.layer2, self.layer3, self.layer4], x)
        else:
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self._final_norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool (and drop out) the feature map; the pooled features with ``pre_logits``, else the logits."""
        x = self._pool(x)
        return x if pre_logits else self.linear(x)
