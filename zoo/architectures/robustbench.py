"""Models built with RobustBench's own definitions (``robustbench.model_zoo``): the mirrors of its checkpoints.

RobustBench defines 100+ architectures as Python classes; the zoo does not
re-implement them. A mirrored model says which definition to use:

- its model directory's config.json holds ``robustbench: {model, dataset,
  threat_model}`` (``model_for_config``);
- its registry entry has an architecture ``robustbench:<RobustBench's label>``
  (``robustbench:WideResNet-28-4``) and the RobustBench name in ``origin``
  (``model_for_entry``).

Loading one therefore needs robustbench installed (the ``robustbench`` extra;
without it, one error line names the extra); it is imported on first use only,
so ``import zoo`` stays light.
"""

from __future__ import annotations

import warnings

import torch.nn as nn

from ..architectures import create_model
from ..errors import ConfigError, UnknownNameError, close_matches_hint
from ..registry import Entry
from ..extras import import_robustbench

ARCHITECTURE_PREFIX = "robustbench:"
# The boards the zoo mirrors: 32x32 images, which the zoo's loaders, cards and harness handle.
MIRRORED_DATASETS = ("cifar10", "cifar100")


def is_robustbench_architecture(architecture: str) -> bool:
    """Whether an entry's architecture is one of RobustBench's definitions (``robustbench:...``)."""
    return architecture.startswith(ARCHITECTURE_PREFIX)


def robustbench_board(dataset: str, threat_model: str, purpose: str = "RobustBench's model zoo") -> dict:
    """RobustBench's model dict of a board: name -> ``{"model": constructor, "gdrive_id": ...}``.

    Without robustbench: ``ConfigError`` naming the extra, ``purpose`` saying what needed it.
    """
    model_dicts = import_robustbench("robustbench.model_zoo", purpose).model_dicts
    enums = import_robustbench("robustbench.model_zoo.enums", purpose)
    BenchmarkDataset, ThreatModel = enums.BenchmarkDataset, enums.ThreatModel
    try:
        return model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat_model)]
    except (ValueError, KeyError):
        raise UnknownNameError(f"RobustBench has no {dataset} {threat_model} model zoo") from None


def robustbench_model(name: str, dataset: str, threat_model: str, purpose: str | None = None) -> dict:
    """RobustBench's record of one model (its constructor and Google Drive id(s)); unknown names get close matches."""
    models = robustbench_board(dataset, threat_model, purpose or f"RobustBench's model {name}")
    if name not in models:
        raise UnknownNameError(f"RobustBench has no {dataset} {threat_model} model '{name}'."
                               f"{close_matches_hint(name, models)}")
    return models[name]


def create_robustbench_model(name: str, dataset: str, threat_model: str) -> nn.Module:
    """RobustBench's definition of ``name``, untrained; a definition that cannot be built here is one error line."""
    constructor = robustbench_model(name, dataset, threat_model, f"RobustBench's definition of {name}")["model"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return constructor()
    except ImportError as e:
        missing = e.name or str(e)
        raise ConfigError(f"RobustBench's definition of {name} needs '{missing}', which is not installed "
                          f"(pip install {missing.split('.')[0]})") from None
    except Exception as e:  # a definition may need CUDA, a download, ...: say so in one line
        first = " ".join(str(e).split())[:200]
        raise ConfigError(f"RobustBench's definition of {name} cannot be built here ({type(e).__name__}: {first})") from None


def model_for_config(config: dict) -> nn.Module:
    """The untrained model a model directory's config.json describes (RobustBench's definition or a zoo one)."""
    rb = config.get("robustbench")
    if rb:
        return create_robustbench_model(rb["model"], rb["dataset"], rb["threat_model"])
    return create_model(config["architecture"], num_classes=config["num_classes"], dataset=config["dataset"])


def model_for_entry(entry: Entry) -> nn.Module:
    """The untrained model of a registry entry (RobustBench's definition for ``robustbench:`` architectures)."""
    if not is_robustbench_architecture(entry.architecture):
        return create_model(entry.architecture, num_classes=entry.num_classes, dataset=entry.dataset)
    if entry.robustbench_id is None:
        raise ConfigError(f"entry '{entry.name}' has the architecture {entry.architecture} but no "
                          "origin.robustbench_name to build it from")
    return create_robustbench_model(*entry.robustbench_id)


def robustbench_pretrained_cfg(num_classes: int) -> dict:
    """timm's pretrained config of a RobustBench-defined model: RobustBench's 32x32 images in [0, 1].

    Any normalisation is inside RobustBench's models, so timm's data config
    must not normalise (identity mean/std).
    """
    return {"input_size": (3, 32, 32), "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center",
            "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "num_classes": num_classes}


def robustbench_timm_name(entry: Entry) -> str | None:
    """The timm name robustbench's ``load_model`` looks up for the entry's RobustBench name (or None)."""
    if entry.robustbench_id is None:
        return None
    return robustbench_timm_id(*entry.robustbench_id)


def robustbench_timm_id(name: str, dataset: str, threat_model: str) -> str:
    """The timm name robustbench's ``load_model`` looks up for a RobustBench model of a board."""
    return f"{name.lower().replace('-', '_')}_{dataset.lower()}_{threat_model.lower()}"
