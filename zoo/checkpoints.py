"""Import original PyTorch checkpoints (SCORE, RobustBench) into model directories.

Pickles are read with ``torch.load(weights_only=True)``: a file that needs
code execution to load is refused, never run.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

from .architectures import create_model
from .datasets_meta import NUM_CLASSES, check_dataset, check_threat_model
from .errors import CheckpointError
from .model_dir import load_state_dict_strict, load_weights, make_config, save_model_dir

# Where the weights sit inside the known checkpoint layouts, in order of preference:
# the SCORE releases keep the EMA (averaged) weights under 'model_state_dict'.
_NESTED_KEYS = ("model_state_dict", "state_dict", "model")
# torch.save writes a zip archive (PyTorch >= 1.6) or, in the legacy format, a pickle.
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a .pt checkpoint safely and return a flat state dict of tensors."""
    return extract_state_dict(load_checkpoint(path), str(path))


def load_checkpoint(path: str | os.PathLike):
    """``torch.load(weights_only=True)`` of a checkpoint file, as it is (no state dict extracted).

    An HTML page, a truncated file or a pickle that needs code execution is
    refused with one ``CheckpointError`` line; nothing in the file is run.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    check_checkpoint_file(path, str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unpickling refused"
        raise CheckpointError(f"{path} cannot be loaded safely ({first[:160]}); only plain tensor checkpoints are "
                              "read (weights_only=True)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path} is truncated or not a PyTorch checkpoint ({first[:160]})") from None


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a ``.pt`` checkpoint (read as ``read_checkpoint`` does)."""
    return load_weights(path) if str(path).endswith(".safetensors") else read_checkpoint(path)


def check_checkpoint_file(path: str | os.PathLike, what: str) -> None:
    """Refuse a file that cannot be a PyTorch checkpoint: empty, an HTML page, neither zip nor pickle.

    ``what`` names the file in the message (a path, or where a download came from).
    """
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        raise CheckpointError(f"{what} is empty, not a checkpoint (a failed download?)")
    if head.lstrip()[:1] == b"<" or b"<html" in head.lower():
        raise CheckpointError(f"{what} is an HTML page, not a checkpoint (a failed download?)")
    if not head.startswith(_ZIP_MAGIC) and head[:1] != _PICKLE_PROTO:
        raise CheckpointError(f"{what} is not a PyTorch checkpoint (it starts with {head[:12]!r})")


def extract_state_dict(obj, source: str) -> dict[str, torch.Tensor]:
    """Find the model weights in a loaded checkpoint object and strip ``module.`` prefixes."""
    if isinstance(obj, dict):
        for key in _NESTED_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{source} holds no state dict of tensors (looked at the top level and {', '.join(_NESTED_KEYS)})")
    return {_strip_prefix(k): v for k, v in obj.items()}


def _strip_prefix(key: str) -> str:
    for prefix in ("module.", "_orig_mod."):
        while key.startswith(prefix):
            key = key[len(prefix):]
    return key


def import_checkpoint(checkpoint: str | os.PathLike, arch: str, num_classes: int | None, dataset: str,
                      out_dir: str | os.PathLike, threat_model: str | None = None, eps: float | None = None,
                      overwrite: bool = False) -> str:
    """Convert an original checkpoint into a model directory; return the weights sha256.

    Every key and shape must match ``arch``; nothing is written otherwise.
    """
    if Path(out_dir).exists() and not overwrite:
        raise CheckpointError(f"{out_dir} already exists; choose another --out or remove it")
    if threat_model is not None:
        threat_model = check_threat_model(threat_model)
    state_dict = read_checkpoint(checkpoint)
    model = create_model(arch, num_classes=num_classes, dataset=dataset)
    load_state_dict_strict(model, state_dict, str(checkpoint))
    dataset = check_dataset(dataset)
    num_classes = NUM_CLASSES[dataset] if num_classes is None else num_classes
    config = make_config(arch, num_classes, dataset, threat_model, eps, imported_from=Path(checkpoint).name)
    return save_model_dir(model, out_dir, config, overwrite=overwrite)
