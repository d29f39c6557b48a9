"""RobustBench's model_info JSON (paper, authors, venue, accuracies, footnote) of the models it lists.

The pip package of robustbench does not ship model_info; a clone of its
repository has it beside the ``robustbench`` package, or ``--model-info-dir``
names it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..fileio import read_json

_DATASET_FOLDERS = ("cifar10", "cifar100", "imagenet")


@dataclass(frozen=True)
class ModelInfoTree:
    """RobustBench's model_info folder (``{dataset}/{threat_model}/{name}.json``) and how it was found."""

    path: Path
    how: str


def find_model_info_dir(given: str | os.PathLike | None = None) -> ModelInfoTree:
    """RobustBench's model_info tree: ``given`` (the tree, or a folder holding ``model_info/``), else next to robustbench.

    The pip package of robustbench does not ship model_info; a clone of its
    repository has it beside the ``robustbench`` package.
    """
    if given is not None:
        given = Path(given)
        for candidate in (given / "model_info", given):
            if _is_model_info_tree(candidate):
                return ModelInfoTree(candidate, "given with --model-info-dir")
        raise ConfigError(f"--model-info-dir {given} is not RobustBench's model_info tree (no {'/'.join(_DATASET_FOLDERS)} "
                          "folders in it or in its model_info/)")
    from importlib.util import find_spec

    package = Path(find_spec("robustbench").origin).resolve().parent   # found, not imported
    candidates = [package / "model_info", package.parent / "model_info"]
    for candidate in candidates:
        if _is_model_info_tree(candidate):
            return ModelInfoTree(candidate, "found next to the installed robustbench")
    raise ConfigError(f"RobustBench's model_info JSON is not installed with robustbench (looked in "
                      f"{' and '.join(map(str, candidates))}); pass --model-info-dir with the model_info folder of a "
                      "clone of github.com/RobustBench/robustbench")


def _is_model_info_tree(path: Path) -> bool:
    return path.is_dir() and any((path / d).is_dir() for d in _DATASET_FOLDERS)


def read_model_info(tree: ModelInfoTree, name: str, dataset: str, threat_model: str) -> dict:
    """RobustBench's model_info JSON of one model (paper, authors, venue, accuracies, footnote, ...)."""
    path = tree.path / dataset / threat_model / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"RobustBench's model_info has no {path.relative_to(tree.path)} in {tree.path}")
    info = read_json(path, "RobustBench model_info file")
    if not isinstance(info, dict) or "clean_acc" not in info:
        raise ConfigError(f"{path} is not a RobustBench model_info file (no clean_acc)")
    return info
