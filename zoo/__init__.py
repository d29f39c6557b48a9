"""SCORE Zoo: adversarially robust SCORE models, verified and ready to use.

>>> import zoo
>>> model = zoo.load_model("cifar10-linf")          # from the Hub, sha256-checked
>>> model = zoo.create_model("wrn-28-10-swish", dataset="cifar10")   # untrained
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from .architectures import create_model, list_architectures
from .errors import ScoreZooError
from .model_dir import CONFIG_NAME, load_model_dir, read_config, save_model_dir
from .registry import Entry, get_entry, list_entries

__version__ = "0.1.0"


def resolve_model_dir(name_or_path: str | os.PathLike, revision: str | None = None) -> tuple[Path, str | None]:
    """Return (model directory, expected sha256 or None) for an entry name or a path.

    A path to a folder with config.json is used as it is; an entry shipped with
    the package is used from there; any other entry is fetched from the Hub.
    """
    path = Path(name_or_path)
    if (path / CONFIG_NAME).is_file():
        return path, None
    entry = get_entry(str(name_or_path))
    local = entry.local_path()
    if local is not None and revision is None:
        return local, entry.sha256
    from .hub import fetch_model_dir

    return fetch_model_dir(entry, revision=revision), entry.sha256 if revision is None else None


def load_model(name_or_path: str | os.PathLike, revision: str | None = None,
               device: str | torch.device = "cpu") -> nn.Module:
    """Load a zoo entry (by name) or a model directory; return it in eval mode."""
    model_dir, sha256 = resolve_model_dir(name_or_path, revision)
    return load_model_dir(model_dir, device=device, expected_sha256=sha256)


__all__ = [
    "Entry", "ScoreZooError", "create_model", "get_entry", "list_architectures", "list_entries",
    "load_model", "load_model_dir", "read_config", "resolve_model_dir", "save_model_dir", "__version__",
]
