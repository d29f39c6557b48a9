"""The evaluations an entry lists, read with the one result reader (``zoo.results``).

zoo does not import harness, which writes result files; cards, eligibility,
studies, publishing and the harness itself all read them through
``zoo.results.EvaluationResult``. This module finds an entry's evaluations and
checks that an evaluation belongs to the weights it is attached to.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError, IntegrityError
from .registry import BUILTIN_DIR, Entry
from .results import EvaluationResult

# Two results report the same accuracy when they agree to this (the files hold two decimals).
SAME_ACCURACY = 0.005


def read_evaluation(path: str | os.PathLike) -> EvaluationResult:
    """Read one score-harness result file."""
    return EvaluationResult.from_json(path)


def _path(item: str) -> Path:
    return Path(item) if Path(item).is_absolute() else BUILTIN_DIR / item


def evaluation_paths(entry: Entry) -> list[Path]:
    """The files of the evaluations an entry lists by path (relative paths are under zoo/entries/)."""
    return [_path(item) for item in entry.evaluations if not isinstance(item, dict)]


def entry_evaluations(entry: Entry) -> list[EvaluationResult]:
    """The evaluation results an entry lists: embedded result dicts, or JSON paths (relative to zoo/entries/)."""
    return [EvaluationResult.from_dict(item, f"an evaluation embedded in entry '{entry.name}'")
            if isinstance(item, dict) else read_evaluation(_path(item)) for item in entry.evaluations]


def check_same_weights(results: list[EvaluationResult], sha256: str | None, what: str,
                       names: list[str] | None = None) -> None:
    """Refuse an evaluation of other weights than ``sha256`` (the weights of ``what``)."""
    if not sha256:
        return
    for i, result in enumerate(results):
        measured = result.evaluation.weights_sha256
        if measured != sha256:
            name = names[i] if names else f"evaluation {i + 1}"
            raise IntegrityError(f"{name} evaluated weights with sha256 {measured} but {what} has weights sha256 "
                                 f"{sha256}; attach only evaluations of these weights")


def reports_same_robust_accuracy(result: EvaluationResult, entry: Entry) -> bool:
    """Whether ``result``'s AutoAttack accuracy is the one the entry reports."""
    try:
        return abs(float(result.model_info.autoattack_acc) - float(entry.reported["autoattack_acc"])) < SAME_ACCURACY
    except (KeyError, TypeError, ValueError):
        return False


def dataset_of(result: EvaluationResult, entry: Entry) -> str:
    """The result's dataset, refused when it is not the entry's."""
    dataset = result.evaluation.dataset
    if dataset != entry.dataset:
        raise ConfigError(f"an evaluation on {dataset} cannot go into the card of '{entry.name}' ({entry.dataset})")
    return dataset
