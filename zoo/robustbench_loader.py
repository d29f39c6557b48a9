"""RobustBench's ``load_model``, drop-in: the zoo's weights for zoo models, robustbench's loader for the rest.

``load_model(model_name, model_dir="./models", dataset="cifar10", threat_model="Linf",
custom_checkpoint="", norm=None)`` takes robustbench's arguments (strings or its
``BenchmarkDataset`` / ``ThreatModel`` enums):

- a zoo entry name (``cifar10-linf``), or the RobustBench name of a zoo entry
  for that dataset and threat model (``Pang2022Robustness_WRN28_10``), loads the
  zoo's verified weights (``zoo.load_model``; see ``zoo.sources``);
- any other name goes to ``robustbench.utils.load_model`` unchanged (its
  ``model_dir`` layout, its Google Drive download).

``custom_checkpoint`` replaces the weights, as in robustbench.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch.nn as nn

from .checkpoints import read_weights
from .errors import CheckpointError, ConfigError, UnknownNameError, close_matches_hint
from .model_dir import load_state_dict_strict
from .registry import Entry, list_entries
from .robustbench_models import model_for_entry, robustbench_board

DEFAULT_DATASET, DEFAULT_THREAT_MODEL = "cifar10", "Linf"


def _value(x) -> str:
    """A robustbench enum's value, or the string as given."""
    return str(getattr(x, "value", x))


def load_model(model_name: str, model_dir: str | os.PathLike = "./models", dataset=DEFAULT_DATASET,
               threat_model=DEFAULT_THREAT_MODEL, custom_checkpoint: str = "", norm: str | None = None) -> nn.Module:
    """Load ``model_name`` as ``robustbench.utils.load_model`` does; zoo models come from the zoo (eval mode)."""
    dataset, threat_model = _value(dataset), _value(threat_model)
    if norm is not None:
        warnings.warn("`norm` has been deprecated and will be removed in a future version.", DeprecationWarning,
                      stacklevel=2)
        threat_model = _value(norm)
    entry = zoo_entry_for(model_name, dataset, threat_model)
    if entry is None:
        return robustbench_load(model_name, model_dir, dataset, threat_model, custom_checkpoint)
    if custom_checkpoint:
        model = model_for_entry(entry)
        load_state_dict_strict(model, read_weights(custom_checkpoint), str(custom_checkpoint))
        return model.eval()
    from . import load_model as zoo_load_model

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
                     custom_checkpoint: str = "") -> nn.Module:
    """``robustbench.utils.load_model`` for a name RobustBench lists; its failures as one-line zoo errors."""
    models = robustbench_board(dataset, threat_model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # robustbench's import-time deprecation noise
        from robustbench.utils import load_model as rb_load_model

    if model_name not in models:
        known = list(models) + [e.name for e in list_entries()]
        raise UnknownNameError(f"neither the zoo nor RobustBench ({dataset} {threat_model}) has a model "
                               f"'{model_name}'.{close_matches_hint(model_name, known)}")
    checkpoint = Path(model_dir) / dataset / threat_model / f"{model_name}.pt"
    try:
        return rb_load_model(model_name, model_dir=model_dir, dataset=dataset, threat_model=threat_model,
                             custom_checkpoint=custom_checkpoint)
    except Exception as e:  # robustbench's download and unpickling failures come in many types
        first = " ".join(str(e).split())[:300]
        raise CheckpointError(f"robustbench could not load {model_name} (expected {checkpoint}, or a download "
                              f"from Google Drive): {type(e).__name__}: {first}") from None
