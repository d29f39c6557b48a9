"""Deterministic weights and inputs for the architecture reference logits (``tests/data/architecture_logits.pt``).

Shared by the script that made the file (``tests/data/make_architecture_logits.py``, run with RobustBench's own
definitions) and by the core test that compares the zoo's architectures with it. The weights depend only on each
parameter's name and shape, never on an architecture's own initialisation.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import torch

LOGITS_FILE = Path(__file__).parent / "data" / "architecture_logits.pt"
# (zoo architecture, dataset): the reference each was compared with is named in the script
ARCHITECTURES = [("wrn-10-1-swish", "cifar10"), ("wrn-16-2-swish", "cifar10"), ("wrn-10-1", "cifar10"),
                 ("wrn-10-1", "cifar100"), ("preact-resnet-18", "cifar10")]


def reference_inputs() -> torch.Tensor:
    """Four images in [0, 1]."""
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2024))


def reference_state(template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights for every entry of ``template`` (a state dict), seeded by the entry's name: convolutions and
    linear layers at He scale, BatchNorm weights, biases and running statistics away from their defaults."""
    state = {}
    for key, value in template.items():
        g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
        shape = value.shape
        if key.endswith("num_batches_tracked"):
            state[key] = value.clone()
        elif key.endswith("running_var") or (key.endswith(".weight") and len(shape) == 1):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        elif key.endswith(("running_mean", ".bias")):
            state[key] = 0.2 * torch.rand(shape, generator=g) - 0.1
        else:
            fan_in = math.prod(shape[1:])
            state[key] = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
    return state
