"""A training run's saved state, for resume: one checkpoint file holding everything a resumed run needs, written
atomically, and the check that a resumed run keeps its config. (Original released checkpoints: zoo.checkpoints.)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from zoo.errors import CheckpointError, ConfigError
from zoo.fileio import atomic_file, read_json


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, numbers, strings, nested dicts/lists) to ``path`` atomically."""
    with atomic_file(path) as f:
        torch.save(state, f)


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


def check_same_config(path: str | os.PathLike, new: dict, run_dir: Path, differ: str, hint: str,
                      ignored: tuple[str, ...] = ()) -> None:
    """Raise ConfigError unless the run config stored at ``path`` equals ``new`` (keys in ``ignored`` aside).

    The error names the run and up to four differences as ``key: stored -> new``,
    e.g. "cannot resume RUN with {differ} (epochs: 2 -> 3); {hint}".
    """
    try:
        stored = read_json(Path(path), "run config")
    except ValueError as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); choose a new --out") from None
    keys = sorted((set(stored) | set(new)) - set(ignored))
    diffs = [f"{k}: {stored.get(k)!r} -> {new.get(k)!r}" for k in keys if stored.get(k) != new.get(k)]
    if diffs:
        raise ConfigError(f"cannot resume {run_dir} with {differ} ({'; '.join(diffs[:4])}"
                          f"{' ...' if len(diffs) > 4 else ''}); {hint}")
