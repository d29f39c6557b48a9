"""A training run's random streams, resumable bit for bit.

Every draw of a step (augmentation, CutMix, the attack's random start) comes
from a generator seeded by a pure function of (seed, epoch, step, rank), so a
run resumed mid-epoch sees the same numbers; the global torch generators, which
the model's own randomness uses, are saved in each checkpoint and restored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def step_generator(seed: int, epoch: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """A generator whose seed is a pure function of (seed, epoch, step, rank): resumable randomness."""
    g = torch.Generator(device=device)
    g.manual_seed(int(np.random.SeedSequence([seed, epoch, step, rank]).generate_state(1, np.uint64)[0] >> 1))
    return g


def rng_state(device: torch.device) -> dict[str, Any]:
    """The global torch generators' state (and ``device``'s CUDA generator), as a checkpoint stores it."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
