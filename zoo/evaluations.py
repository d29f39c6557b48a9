"""score-harness result files as zoo reads them: RobustBench's model_info keys plus an ``evaluation`` object.

zoo does not import harness, which writes these files; this module is the one
place zoo reads them (cards, eligibility, studies, publishing), as plain data
with missing provenance tolerated: a RobustBench model_info file has none.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError
from .fileio import read_json
from .registry import BUILTIN_DIR, Entry

# Two results report the same accuracy when they agree to this (the files hold two decimals).
SAME_ACCURACY = 0.005


def read_evaluation(path: str | os.PathLike) -> dict:
    """Read one evaluation result JSON as plain data."""
    data = read_json(path, "evaluation file")
    if not isinstance(data, dict) or "clean_acc" not in data or "autoattack_acc" not in data:
        raise ConfigError(f"{path} is not an evaluation result (it lacks clean_acc / autoattack_acc)")
    return data


def _path(item: str) -> Path:
    return Path(item) if Path(item).is_absolute() else BUILTIN_DIR / item


def evaluation_paths(entry: Entry) -> list[Path]:
    """The files of the evaluations an entry lists by path (relative paths are under zoo/entries/)."""
    return [_path(item) for item in entry.evaluations if not isinstance(item, dict)]


def entry_evaluations(entry: Entry) -> list[dict]:
    """The evaluation results an entry lists: embedded dicts, or JSON paths (relative to zoo/entries/)."""
    return [item if isinstance(item, dict) else read_evaluation(_path(item)) for item in entry.evaluations]


def provenance(result: dict) -> dict:
    """A result's ``evaluation`` object ({} when it has none)."""
    ev = result.get("evaluation")
    return ev if isinstance(ev, dict) else {}


def attack_settings(evaluation: dict) -> dict:
    """AutoAttack's settings of an ``evaluation`` object: version, attacks and n_iter (older files kept them flat)."""
    aa = evaluation.get("autoattack") if isinstance(evaluation.get("autoattack"), dict) else {}
    return {"version": aa.get("version") or evaluation.get("version"),
            "attacks": aa.get("attacks") or evaluation.get("attacks") or [],
            "n_iter": aa.get("n_iter")}


def reports_same_robust_accuracy(result: dict, entry: Entry) -> bool:
    """Whether ``result``'s AutoAttack accuracy is the one the entry reports."""
    try:
        return abs(float(result["autoattack_acc"]) - float(entry.reported["autoattack_acc"])) < SAME_ACCURACY
    except (KeyError, TypeError, ValueError):
        return False
