"""SCORE Zoo: adversarially robust SCORE models, verified and ready to use.

>>> import zoo
>>> model = zoo.load_model("cifar10-linf")          # sha256-checked; see zoo.sources for where from
>>> model = zoo.create_model("wrn-28-10-swish", dataset="cifar10")   # untrained

Importing ``zoo`` has its architectures, and its published entries that have a
RobustBench name, registered with timm when timm is imported (``zoo.timm_models``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from .architectures import create_model, list_architectures
from .errors import ScoreZooError
from .model_dir import load_model_dir, read_config, save_model_dir
from .registry import Entry, get_entry, list_entries
from .sources import Located, locate
from .timm_models import register_timm_models, register_when_timm_is_imported

__version__ = "0.1.0"


def resolve_model_dir(name_or_path: str | os.PathLike, revision: str | None = None) -> tuple[Path, str | None]:
    """Return (model directory, expected sha256 or None) for an entry name or a path.

    A path to a folder with config.json is used as it is; any other name is an
    entry, found or fetched by ``zoo.sources.locate``.
    """
    found = locate(name_or_path, revision)
    return found.path, found.sha256


def load_model(name_or_path: str | os.PathLike, revision: str | None = None,
               device: str | torch.device = "cpu") -> nn.Module:
    """Load a zoo entry (by name) or a model directory; return it in eval mode."""
    model_dir, sha256 = resolve_model_dir(name_or_path, revision)
    return load_model_dir(model_dir, device=device, expected_sha256=sha256)


register_when_timm_is_imported()

__all__ = [
    "Entry", "Located", "ScoreZooError", "create_model", "get_entry", "list_architectures", "list_entries",
    "load_model", "load_model_dir", "locate", "read_config", "register_timm_models", "resolve_model_dir",
    "save_model_dir", "__version__",
]
