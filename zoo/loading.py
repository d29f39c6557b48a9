"""Loading a model by entry name or model directory: locate its weights, verify them once, build it."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from .devices import resolve_device
from .fileio import sha256_file
from .model_dir import WEIGHTS_NAME, load_model_dir
from .registry import Entry, get_entry
from .sources import Located, locate


def resolve_model_dir(name_or_path: str | os.PathLike, revision: str | None = None) -> tuple[Path, str | None]:
    """Return (model directory, expected sha256 or None) for an entry name or a path.

    A path to a folder with config.json is used as it is; any other name is an
    entry, found or fetched by ``zoo.sources.locate``.
    """
    found = locate(name_or_path, revision)
    return found.path, found.sha256


def load_located(found: Located, device: str | torch.device = "cpu") -> nn.Module:
    """Build the model of a located directory; its weights are hashed only where the source has not already."""
    return load_model_dir(found.path, device=device, expected_sha256=None if found.verified else found.sha256)


def load_model(name_or_path: str | os.PathLike, revision: str | None = None,
               device: str | torch.device = "cpu") -> nn.Module:
    """Load a zoo entry (by name) or a model directory; return it in eval mode."""
    return load_located(locate(name_or_path, revision), device)


def load_report(name_or_path: str | os.PathLike, revision: str | None = None,
                device: str | torch.device = "cpu") -> tuple[nn.Module, dict, Entry | None]:
    """``load_model`` plus what ``score-zoo load`` reports: where the weights came from, their sha256, the entry."""
    device = resolve_device(device)  # checked before any download
    found = locate(name_or_path, revision)
    model = load_located(found, device)
    entry = None if found.source == "model-dir" else get_entry(str(name_or_path))
    info = {
        "name": str(name_or_path),
        "path": str(found.path),
        "source": found.source,
        "source_detail": found.detail,
        "sha256": found.sha256 or sha256_file(found.path / WEIGHTS_NAME),
        "verified": found.sha256 is not None,
        "parameters": sum(p.numel() for p in model.parameters()),
        "architecture": type(model).__name__,
        "device": str(device),
        "hub": entry.hub if entry else {},
        "reported": entry.reported if entry else {},
    }
    return model, info, entry
