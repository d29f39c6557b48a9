"""RobustBench's checkpoints: where its loader keeps them, fetching them, and loading them by its rules.

A checkpoint is taken where robustbench's own loader keeps it,
``{model_dir}/{dataset}/{threat_model}/{name}.pt`` (an ensemble's members:
``{name}.pt_m{i}.pt``), else fetched from RobustBench's Google Drive copy
(``zoo.sources.drive``) and kept there, so robustbench reuses it; an HTML
answer (quota, virus-scan notice) is refused and not kept. It is read with
``weights_only=True`` (a pickle that needs code execution is refused) and
loaded into RobustBench's own definition by robustbench's own rules (its
prefix stripping, the ``last`` checkpoints, the partial checkpoints it knows).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
import torch.nn as nn

from ..checkpoints import check_checkpoint_file, load_checkpoint
from ..errors import CheckpointError, ConfigError, ScoreZooError
from ..fileio import sha256_file
from ..architectures.robustbench import create_robustbench_model
from ..extras import import_robustbench
from ..sources import drive


def checkpoint_files(model_dir: Path, name: str, dataset: str, threat_model: str,
                     gdrive_id: str | list[str]) -> list[tuple[Path, str]]:
    """(path, Google Drive id) of each checkpoint file, where robustbench's loader keeps them."""
    base = Path(model_dir) / dataset / threat_model / f"{name}.pt"
    if isinstance(gdrive_id, list):
        return [(Path(f"{base}_m{i}.pt"), gid) for i, gid in enumerate(gdrive_id)]
    return [(base, gdrive_id)]


def fetch_checkpoints(name: str, files: list[tuple[Path, str]]) -> list[str]:
    """Download the checkpoint files not on disk from RobustBench's Drive copy; return each file's source.

    A download is checked (not empty, not an HTML page) before it is moved into
    place, so a refused or interrupted download never leaves a file robustbench
    would take for the checkpoint.
    """
    sources = []
    for path, gdrive_id in files:
        if path.is_file():
            sources.append("model-dir")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
            part = Path(tmp) / path.name
            try:
                where = drive.download_id(gdrive_id, part)
                check_checkpoint_file(part, f"the answer from {where}")
            except ScoreZooError as e:
                raise type(e)(f"{drive.LABEL} of {name}: {e}") from None
            os.replace(part, path)
        sources.append(drive.NAME)
    return sources


def robustbench_state_dict(checkpoint, ensemble: bool, source: str) -> dict[str, torch.Tensor]:
    """The state dict robustbench's loader takes from a (safely read) checkpoint, by its own rules."""
    rm_substr_from_state_dict = import_robustbench("robustbench.utils", "RobustBench's checkpoint rules"
                                                   ).rm_substr_from_state_dict

    if isinstance(checkpoint, dict) and "state_dict" not in checkpoint and isinstance(checkpoint.get("last"), dict):
        checkpoint = checkpoint["last"]  # robustbench takes 'last' of the Kireev2021Effectiveness and
        # Andriushchenko2020Understanding checkpoints, the ones that hold 'last' and 'best'
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{source} holds no state dict of tensors (looked at the top level, state_dict and last)")
    state = rm_substr_from_state_dict(state, "module.")
    return state if ensemble else rm_substr_from_state_dict(state, "model.")


def _load_targets(model: nn.Module, name: str, n_files: int) -> list[nn.Module]:
    """The modules the checkpoint files go into: the model, or each member of an ensemble."""
    if n_files == 1:
        return [model]
    members = getattr(model, "models", None)
    if not isinstance(members, (list, nn.ModuleList)) or len(members) != n_files:
        raise ConfigError(f"{name} is an ensemble whose {n_files} checkpoints robustbench's loader assembles with "
                          "code specific to it; the mirror does not support it")
    return list(members)


def load_robustbench_weights(targets: list[nn.Module], name: str, dataset: str, paths: list[Path]) -> None:
    """Load each checkpoint file (``weights_only=True``) into its module as robustbench's loader does."""
    purpose = "RobustBench's checkpoint rules"
    BenchmarkDataset = import_robustbench("robustbench.model_zoo.enums", purpose).BenchmarkDataset
    # robustbench's rules for the partial checkpoints it knows
    _safe_load_state_dict = import_robustbench("robustbench.utils", purpose)._safe_load_state_dict

    for target, path in zip(targets, paths):
        state = robustbench_state_dict(load_checkpoint(path), len(paths) > 1, str(path))
        try:
            _safe_load_state_dict(target, name, state, BenchmarkDataset(dataset))
        except RuntimeError as e:
            first = " ".join(str(e).split())[:300]
            raise CheckpointError(f"{path} does not fit RobustBench's definition of {name} ({first})") from None


def build_mirrored_model(name: str, dataset: str, threat_model: str,
                         files: list[tuple[Path, str]]) -> tuple[nn.Module, list[dict]]:
    """Fetch the checkpoint files if needed, build RobustBench's definition and load them; return the model (eval
    mode) and a record of each file (name, Drive id, sha256, where it came from)."""
    sources = fetch_checkpoints(name, files)   # kept in the model folder: a rerun (after a fix) reuses them
    model = create_robustbench_model(name, dataset, threat_model)
    load_robustbench_weights(_load_targets(model, name, len(files)), name, dataset, [path for path, _ in files])
    records = [{"file": path.name, "gdrive_id": gid, "sha256": sha256_file(path), "source": source}
               for (path, gid), source in zip(files, sources)]
    return model.eval(), records
