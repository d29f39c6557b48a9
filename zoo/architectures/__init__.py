"""Architecture registry: build a model from a name like ``wrn-28-10-swish``.

Names:
- ``wrn-D-W-swish`` / ``wrn-D-W`` (ReLU): DeepMind-style WideResNet of any
  depth D = 6n+4 and width W, identical to RobustBench's ``DMWideResNet``.
- ``preact-resnet-18``.

timm's spelling (underscores: ``wrn_28_10_swish``) names the same models.
Every architecture has timm's model interface (``timm_interface.TimmModel``).
"""

from __future__ import annotations

import re

import torch.nn as nn

from ..datasets_meta import MEAN_STD, NUM_CLASSES, check_dataset
from ..errors import UnknownNameError, close_matches_hint
from .preact_resnet import PreActResNet
from .timm_interface import TimmModel
from .wideresnet import WideResNet

# The names listed by ``list_architectures``; any wrn-D-W[-swish] is accepted.
KNOWN_ARCHITECTURES = (
    "wrn-28-10-swish",
    "wrn-70-16-swish",
    "wrn-34-10",
    "wrn-28-10",
    "wrn-16-4-swish",
    "wrn-16-2-swish",
    "wrn-10-1-swish",
    "preact-resnet-18",
)

_WRN = re.compile(r"^wrn-(\d+)-(\d+)(?:-(swish|relu))?$")


def list_architectures() -> list[str]:
    """Return the named architectures (any ``wrn-D-W[-swish]`` also works)."""
    return list(KNOWN_ARCHITECTURES)


def canonical_architecture(arch: str) -> str:
    """The zoo's spelling of an architecture name; timm's (``wrn_28_10_swish``) is accepted too.

    Raises ``UnknownNameError`` for a name that is not an architecture.
    """
    name = arch.lower().replace("_", "-")
    m = _WRN.match(name)
    if m:
        depth, width = int(m.group(1)), int(m.group(2))
        if (depth - 4) % 6 != 0 or depth < 10 or width < 1:
            raise UnknownNameError(f"invalid WideResNet '{arch}': depth must be 6n+4 (10, 16, 28, 34, 70, ...) and width >= 1")
        return name
    if name == "preact-resnet-18":
        return name
    raise UnknownNameError(
        f"unknown architecture '{arch}'; known: {', '.join(KNOWN_ARCHITECTURES)} (or any wrn-D-W[-swish])."
        + close_matches_hint(name, KNOWN_ARCHITECTURES)
    )


def architecture_class(arch: str) -> type[TimmModel]:
    """The model class an architecture name builds (its class attributes describe it to timm)."""
    return WideResNet if _WRN.match(canonical_architecture(arch)) else PreActResNet


def create_model(arch: str, num_classes: int | None = None, dataset: str = "cifar10", global_pool: str = "avg",
                 drop_rate: float = 0.0) -> nn.Module:
    """Build an untrained model by architecture name, normalising for ``dataset``.

    ``num_classes`` defaults to the dataset's number of classes (0: no classifier,
    the model returns pooled features); ``global_pool`` ('avg', 'max', '' for none)
    and ``drop_rate`` are timm's.
    """
    name = canonical_architecture(arch)
    dataset = check_dataset(dataset)
    num_classes = NUM_CLASSES[dataset] if num_classes is None else int(num_classes)
    mean, std = MEAN_STD[dataset]
    head = {"global_pool": global_pool, "drop_rate": drop_rate}
    m = _WRN.match(name)
    if m:
        depth, width, activation = int(m.group(1)), int(m.group(2)), m.group(3) or "relu"
        return WideResNet(num_classes, depth, width, activation, mean=mean, std=std, **head)
    return PreActResNet((2, 2, 2, 2), num_classes, mean, std, **head)


__all__ = ["architecture_class", "canonical_architecture", "create_model", "list_architectures", "TimmModel",
           "WideResNet", "PreActResNet", "KNOWN_ARCHITECTURES"]
