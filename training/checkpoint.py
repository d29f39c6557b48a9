"""Training checkpoints: one file holding everything a resumed run needs, written atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from zoo.errors import CheckpointError
from zoo.fileio import atomic_path


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, nested dicts/lists) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for corrupt files
        raise CheckpointError(f"{path} is not a readable training checkpoint ({type(e).__name__}: {e}); "
                              "delete it to start the run again") from None
