"""timm's model interface, shared by the zoo's architectures (timm itself is not imported).

timm's own models (``resnet.py``, ``resnetv2.py``) are the specification:
``num_classes``, ``num_features``, ``head_hidden_size``, ``feature_info``,
``get_classifier``, ``reset_classifier``, ``forward_features`` (the unpooled
map after the final norm), ``forward_head(x, pre_logits)``,
``forward_intermediates``, ``prune_intermediate_layers``,
``set_grad_checkpointing``, ``group_matcher``, ``global_pool`` ('avg', 'max',
'' for none) and ``drop_rate``.

No ``from __future__ import annotations`` here: TorchScript and fx-then-script
resolve the type hints of these modules at run time.
"""

from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError

POOL_TYPES = ("avg", "max", "")


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel; the statistics stay out of the state dict."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class GlobalPool(nn.Module):
    """Pool the whole feature map, whatever its size, to a (N, C) vector; '' passes the map through.

    'avg' is ``avg_pool2d`` with the map's own size as kernel: on 32x32 inputs
    exactly the operation RobustBench's models end with, so logits stay bit-identical.
    """

    def __init__(self, pool_type: str = "avg"):
        super().__init__()
        if pool_type not in POOL_TYPES:
            raise ConfigError(f"global_pool must be one of 'avg', 'max', '' (no pooling), got {pool_type!r}")
        self.pool_type = pool_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool_type == "avg":
            return F.avg_pool2d(x, (x.shape[-2], x.shape[-1])).flatten(1)
        if self.pool_type == "max":
            return F.max_pool2d(x, (x.shape[-2], x.shape[-1])).flatten(1)
        return x


def take_indices(num_features: int, indices: Optional[Union[int, Sequence[int]]]) -> Tuple[List[int], int]:
    """timm's feature selection: None = all, n = the last n, a sequence = those (negative from the end).

    Returns (absolute indices, largest index); raises ``ConfigError`` out of range.
    """
    if indices is None:
        indices = num_features
    if isinstance(indices, int):
        if not 0 < indices <= num_features:
            raise ConfigError(f"last-n feature count {indices} is out of range (1 to {num_features})")
        taken = list(range(num_features - indices, num_features))
    else:
        taken = [num_features + i if i < 0 else i for i in indices]
        bad = [i for i in taken if not 0 <= i < num_features]
        if bad or not taken:
            raise ConfigError(f"feature indices {list(indices)} are out of range (0 to {num_features - 1})")
    return taken, max(taken)


def checkpoint_blocks(stages: Sequence[nn.Sequential], x: torch.Tensor) -> torch.Tensor:
    """Run the blocks of ``stages`` in order, each under activation checkpointing (recomputed in backward)."""
    for stage in stages:
        for block in stage:
            x = checkpoint(block, x, use_reentrant=False)
    return x


def _linear_head(num_features: int, num_classes: int) -> nn.Module:
    return nn.Linear(num_features, num_classes) if num_classes > 0 else nn.Identity()


class TimmModel(nn.Module):
    """Base of the zoo's architectures: timm's interface over ``normalize`` -> feature modules -> final norm -> head.

    A subclass registers ``normalize`` first and its modules in the order they run
    (timm's ``features_only`` wrappers replay the top-level modules in that order),
    lists in ``feature_info`` the stem and each stage, whose chain after ``normalize``
    is the whole feature extractor, calls ``_init_head``, and defines
    ``forward_features`` and ``forward_head``. Class attributes:
    ``FIRST_CONV`` / ``CLASSIFIER`` (module names, as timm's pretrained config
    spells them), ``FINAL_NORM`` (the modules of the final norm and activation),
    ``FINAL_REDUCTION`` (input size / size of the final feature map),
    ``FEATURE_CFG`` (how timm's feature wrappers walk the model) and
    ``GROUP_MATCHER`` (fine, coarse: timm's parameter groups).

    Head arguments, as timm spells them: ``num_classes`` (0: no classifier, the
    model returns pooled features), ``global_pool`` ('avg', 'max', '' for none:
    then the model returns the map) and ``drop_rate`` (dropout before the classifier).
    Any input of at least 8x8 runs: the pooling adapts to the map.
    """

    FIRST_CONV = ""
    CLASSIFIER = ""
    FINAL_NORM = ()
    FINAL_REDUCTION = 1
    FEATURE_CFG = {}
    GROUP_MATCHER = ({}, {})

    def _init_head(self, num_features: int, num_classes: int, global_pool: str, drop_rate: float) -> None:
        if not 0.0 <= drop_rate < 1.0:
            raise ConfigError(f"drop_rate must be in [0, 1), got {drop_rate}")
        self.num_features = self.head_hidden_size = num_features
        self.drop_rate = float(drop_rate)
        self.grad_checkpointing = False
        self._set_head(num_classes, global_pool)

    def _set_head(self, num_classes: int, global_pool: str) -> None:
        if global_pool == "" and num_classes > 0:
            raise ConfigError("global_pool='' (no pooling) needs num_classes=0: "
                              "a linear classifier takes pooled features")
        self.num_classes = int(num_classes)
        self.global_pool = GlobalPool(global_pool)
        setattr(self, self.CLASSIFIER, _linear_head(self.num_features, self.num_classes))

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        """The classifier module (``nn.Identity`` when there is none)."""
        return getattr(self, self.CLASSIFIER)

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        """A new head of ``num_classes`` outputs (0: none, the model returns pooled features), maybe new pooling."""
        self._set_head(num_classes, self.global_pool.pool_type if global_pool is None else global_pool)

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward instead of storing them."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> Dict[str, object]:
        """timm's parameter groups (stem, blocks; the final norm joins the last block) for layer-wise decay."""
        return dict(self.GROUP_MATCHER[1 if coarse else 0])

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate > 0.0:
            x = F.dropout(x, p=self.drop_rate, training=self.training)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def _replace_module(self, name: str, module: nn.Module) -> None:
        parent, _, child = name.rpartition(".")
        setattr(self.get_submodule(parent) if parent else self, child, module)

    def forward_intermediates(
            self,
            x: torch.Tensor,
            indices: Optional[Union[int, List[int]]] = None,
            norm: bool = False,
            stop_early: bool = False,
            output_fmt: str = "NCHW",
            intermediates_only: bool = False,
    ) -> Union[List[torch.Tensor], Tuple[torch.Tensor, List[torch.Tensor]]]:
        """The feature maps of the stem and stages picked by ``indices`` (timm's convention).

        ``norm`` applies the final norm to the last stage's map; unless
        ``intermediates_only``, returns (final features as ``forward_features``
        gives them, intermediates). ``stop_early`` stops after the last map asked
        for (the first element is then that map, without the final norm).
        """
        if output_fmt != "NCHW":
            raise ConfigError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        taken, max_index = take_indices(len(self.feature_info), indices)
        last = len(self.feature_info) - 1
        modules = [self.get_submodule(info["module"]) for info in self.feature_info]
        if stop_early:
            modules = modules[:max_index + 1]
        intermediates = []
        x = self.normalize(x)
        for i, module in enumerate(modules):
            x = module(x)
            if i in taken:
                intermediates.append(self._final_norm(x) if norm and i == last else x)
        if intermediates_only:
            return intermediates
        return (self._final_norm(x) if len(modules) == len(self.feature_info) else x), intermediates

    def prune_intermediate_layers(self, indices: Union[int, List[int]] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Drop the stages after the last of ``indices`` (and the final norm, the head); return the indices."""
        taken, max_index = take_indices(len(self.feature_info), indices)
        for info in self.feature_info[max_index + 1:]:
            self._replace_module(info["module"], nn.Identity())
        if prune_norm:
            for name in self.FINAL_NORM:
                self._replace_module(name, nn.Identity())
        if prune_head:
            self.reset_classifier(0, "")
        return taken
