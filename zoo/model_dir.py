"""The on-disk form of a model: a folder with model.safetensors + config.json.

The same layout is what a Hub repository of a zoo entry holds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from .devices import resolve_device
from .errors import CheckpointError, ConfigError
from .fileio import atomic_write_bytes, atomic_write_json, read_json, sha256_file, staged_dir
from .architectures.robustbench import model_for_config

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CONFIG_FORMAT = "score-zoo/1"


def make_config(architecture: str, num_classes: int, dataset: str, threat_model: str | None = None,
                eps: float | None = None, **extra: Any) -> dict:
    """Return a model-directory config dict (what config.json holds)."""
    config = {"format": CONFIG_FORMAT, "architecture": architecture, "num_classes": int(num_classes),
              "dataset": dataset, "threat_model": threat_model, "eps": eps}
    config.update(extra)
    return config


def state_dict_for_saving(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return a contiguous, CPU, de-duplicated copy of the model's state dict."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def save_weights(state_dict: dict[str, torch.Tensor], path: str | os.PathLike) -> str:
    """Write a state dict as safetensors atomically; return its sha256."""
    atomic_write_bytes(path, safetensors_bytes(state_dict, metadata={"format": "pt"}))
    return sha256_file(path)


def save_model_dir(model: nn.Module, out_dir: str | os.PathLike, config: dict, overwrite: bool = False) -> str:
    """Write ``model`` and ``config`` as a model directory; return the weights sha256.

    The folder appears atomically: an error leaves nothing behind.
    """
    with staged_dir(out_dir, overwrite=overwrite) as tmp:
        digest = save_weights(state_dict_for_saving(model), tmp / WEIGHTS_NAME)
        atomic_write_json(tmp / CONFIG_NAME, config)
    return digest


def read_config(model_dir: str | os.PathLike) -> dict:
    """Read and validate a model directory's config.json."""
    path = Path(model_dir) / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"{model_dir} is not a model directory: it has no {CONFIG_NAME}")
    config = read_json(path, "model config")
    missing = [k for k in ("architecture", "num_classes", "dataset") if k not in config]
    if missing:
        raise ConfigError(f"{path} lacks the key(s) {', '.join(missing)}")
    return config


def check_weights(path: str | os.PathLike, expected_sha256: str | None = None) -> Path:
    """Return the weights file ``path`` once it exists and, when one is given, has ``expected_sha256``."""
    from .errors import IntegrityError

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise IntegrityError(f"{path} has sha256 {actual}, expected {expected_sha256}: the file is corrupt or was replaced")
    return path


def load_weights(path: str | os.PathLike, expected_sha256: str | None = None) -> dict[str, torch.Tensor]:
    """Load a safetensors file, checking its sha256 first when one is given."""
    path = check_weights(path, expected_sha256)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e}); re-download or re-import it") from None


def load_state_dict_strict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` into ``model``; every key and shape must match.

    Raises ``CheckpointError`` naming the first mismatches.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [f"{k} {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
                   for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s) (first: {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s) (first: {', '.join(unexpected[:3])})")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} shape mismatch(es) (first: {'; '.join(wrong_shape[:3])})")
    if problems:
        raise CheckpointError(f"{source} does not fit the architecture: " + ", ".join(problems))
    model.load_state_dict(state_dict, strict=True)


def load_model_dir(model_dir: str | os.PathLike, device: str | torch.device = "cpu",
                   expected_sha256: str | None = None) -> nn.Module:
    """Build the architecture from config.json, load the weights strictly, return it in eval mode on ``device``.

    A mirrored RobustBench model (config.json names it under ``robustbench``) is
    built with RobustBench's own definition (``zoo.architectures.robustbench``).
    """
    device = resolve_device(device)  # a device this machine lacks is one clear error, before any work
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    model = model_for_config(config)
    weights = model_dir / WEIGHTS_NAME
    load_state_dict_strict(model, load_weights(weights, expected_sha256), str(weights))
    return model.to(device).eval()
