"""RobustBench's ``load_model``, drop-in: the zoo's weights for zoo models, RobustBench's checkpoints for the rest.

``load_model(model_name, model_dir="./models", dataset="cifar10", threat_model="Linf",
custom_checkpoint="", norm=None)`` takes robustbench's arguments (strings or its
``BenchmarkDataset`` / ``ThreatModel`` enums):

- a zoo entry name (``cifar10-linf``), or the RobustBench name of a zoo entry
  for that dataset and threat model (``Pang2022Robustness_WRN28_10``), loads the
  zoo's verified weights (``zoo.load_model``; see ``zoo.sources``);
- any other name RobustBench lists is built as ``robustbench.utils.load_model``
  builds it: its definition, its ``model_dir`` layout and Google Drive download,
  its loading rules (``robustbench_load``), except that checkpoints are read with
  ``weights_only=True``.

``custom_checkpoint`` replaces the weights, as in robustbench. Zoo models load
without robustbench; the other names need the ``robustbench`` extra (one error
line says so).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch.nn as nn

from ..checkpoints import read_weights
from ..errors import ConfigError, UnknownNameError, close_matches_hint
from ..model_dir import load_state_dict_strict
from ..registry import Entry, list_entries
from ..architectures.robustbench import create_robustbench_model, model_for_entry, robustbench_board
from .weights import build_mirrored_model, checkpoint_files, load_robustbench_weights

DEFAULT_DATASET, DEFAULT_THREAT_MODEL = "cifar10", "Linf"


def _value(x) -> str:
    """A robustbench enum's value, or the string as given."""
    return str(getattr(x, "value", x))


def load_model(model_name: str, model_dir: str | os.PathLike = "./models", dataset=DEFAULT_DATASET,
               threat_model=DEFAULT_THREAT_MODEL, custom_checkpoint: str = "", norm: str | None = None) -> nn.Module:
    """Load ``model_name`` as ``robustbench.utils.load_model`` does; zoo models come from the zoo (eval mode)."""
    if not isinstance(model_name, str):
        raise ConfigError(f"model_name is a RobustBench model name like 'Pang2022Robustness_WRN28_10', not "
                          f"{type(model_name).__name__} {model_name!r}")
    dataset, threat_model = _value(dataset), _value(threat_model)
    if norm is not None:
        warnings.warn("`norm` has been deprecated and will be removed in a future version.", DeprecationWarning,
                      stacklevel=2)
        threat_model = _value(norm)
    entry = zoo_entry_for(model_name, dataset, threat_model)
    if entry is None:
        return robustbench_load(model_name, model_dir, dataset, threat_model, custom_checkpoint)[0]
    if custom_checkpoint:
        model = model_for_entry(entry)
        load_state_dict_strict(model, read_weights(custom_checkpoint), str(custom_checkpoint))
        return model.eval()
    from ..loading import load_model as zoo_load_model

    return zoo_load_model(entry.name)


def zoo_entry_for(model_name: str, dataset: str, threat_model: str) -> Entry | None:
    """The zoo entry a robustbench-style name means, or None when the zoo has none.

    A zoo entry name stands for itself; dataset and threat model, unless left at
    robustbench's defaults, must then be the entry's. A RobustBench name matches
    the entry with that name, dataset and threat model (a published one first).
    """
    entries = list_entries()
    by_name = {e.name: e for e in entries}
    if model_name in by_name:
        entry = by_name[model_name]
        given = (dataset, threat_model)
        if given != (entry.dataset, entry.threat_model) and given != (DEFAULT_DATASET, DEFAULT_THREAT_MODEL):
            raise ConfigError(f"'{model_name}' is a {entry.dataset} {entry.threat_model} model, not {dataset} "
                              f"{threat_model}; leave dataset and threat_model out for zoo names")
        return entry
    matches = [e for e in entries if e.robustbench_id == (model_name, dataset, threat_model)]
    return max(matches, key=lambda e: bool(e.published and e.hub.get("repo_id")), default=None)


def robustbench_load(model_name: str, model_dir: str | os.PathLike, dataset: str, threat_model: str,
                     custom_checkpoint: str = "", purpose: str | None = None) -> tuple[nn.Module, list[Path]]:
    """A model RobustBench lists, built as robustbench's loader builds it (eval mode), and its checkpoint files.

    RobustBench's own definition, its checkpoint from the ``model_dir`` layout
    (downloaded from its Google Drive copy when missing) or ``custom_checkpoint``,
    loaded by robustbench's rules (``zoo.robustbench.weights``); read with ``weights_only=True``,
    and never through the zoo's timm registrations (which would answer a RobustBench
    name with the zoo's copy). Without robustbench installed: one ``ConfigError`` line
    naming the extra, ``purpose`` saying what needed it (default: this name as a RobustBench model).
    """
    if purpose is None:
        hint = close_matches_hint(model_name, [e.name for e in list_entries()]).strip()
        hint = f" ({hint[0].lower()}{hint[1:]})" if hint else ""
        purpose = f"'{model_name}' is not a SCORE Zoo model{hint}; loading it as a RobustBench model"
    models = robustbench_board(dataset, threat_model, purpose)
    if model_name not in models:
        known = list(models) + [e.name for e in list_entries()]
        raise UnknownNameError(f"neither the zoo nor RobustBench ({dataset} {threat_model}) has a model "
                               f"'{model_name}'.{close_matches_hint(model_name, known)}")
    if custom_checkpoint:
        model = create_robustbench_model(model_name, dataset, threat_model)
        load_robustbench_weights([model], model_name, dataset, [Path(custom_checkpoint)])
        return model.eval(), [Path(custom_checkpoint)]
    gdrive_id = models[model_name].get("gdrive_id")
    if not gdrive_id:
        raise ConfigError(f"RobustBench builds {model_name} from timm's pretrained weights, not from a checkpoint; "
                          "load it with robustbench.utils.load_model")
    files = checkpoint_files(Path(model_dir), model_name, dataset, threat_model, gdrive_id)
    return build_mirrored_model(model_name, dataset, threat_model, files)[0], [path for path, _ in files]
