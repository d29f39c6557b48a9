"""Whether a result is leaderboard-grade, read from its evaluation provenance.

RobustBench's leaderboards hold standard-AutoAttack evaluations on the whole
official test split. A result measured on a prefix of the test set, on a copy
of the data that is not the official files (the bundled JPEG-decoded subset,
any ``.npz`` copy), with custom attacks, another AutoAttack version or reduced
iterations, or one shard of an evaluation, is not: each such fact is one reason
here. A result without provenance (a RobustBench model_info file) has none.
"""

from __future__ import annotations

from pathlib import Path

from .datasets_meta import TEST_SIZE
from .evaluations import attack_settings, provenance, reports_same_robust_accuracy
from .registry import Entry

LEADERBOARD_VERSION = "standard"


def data_problem(evaluation: dict) -> str | None:
    """Why the evaluated images are not the official test files, or None when nothing says so."""
    data = evaluation.get("data") if isinstance(evaluation.get("data"), dict) else {}
    source = str(data.get("source") or "")
    if source == "bundled-subset":
        return "the bundled JPEG-decoded subset, not the official test files"
    if source.endswith(".npz"):
        return f"{Path(source).name}, a copy of the test data, not the official test files"
    return None


def problems(evaluation: dict, dataset: str) -> list[str]:
    """The reasons an evaluation (a result's ``evaluation`` object) is not leaderboard-grade."""
    out = []
    n, full = evaluation.get("n_examples"), TEST_SIZE.get(dataset)
    shard = evaluation.get("shard")
    if isinstance(shard, dict):
        out.append(f"one shard ({shard.get('index')}/{shard.get('count')}) of an evaluation: merge the shards")
    elif isinstance(n, int) and full and n < full:
        out.append(f"a subset: {n:,} of the {full:,} test images")
    data = data_problem(evaluation)
    if data:
        out.append(data)
    settings = attack_settings(evaluation)
    version = settings["version"]
    if version == "custom":
        out.append(f"custom attacks ({', '.join(settings['attacks']) or 'unnamed'})")
    elif version and version != LEADERBOARD_VERSION:
        out.append(f"AutoAttack version {version} (leaderboards use {LEADERBOARD_VERSION})")
    if settings["n_iter"]:
        out.append(f"reduced attack iterations (n_iter={settings['n_iter']})")
    if evaluation.get("randomized") and version != "rand":
        out.append("a randomized defense evaluated with the standard version (use --version rand)")
    return out


def backing_evaluation(entry: Entry, evaluations: list[dict]) -> dict | None:
    """The evaluation whose AutoAttack figure the entry reports (same accuracy and examples), if listed."""
    for result in evaluations:
        ev = provenance(result)
        if reports_same_robust_accuracy(result, entry) and ev.get("n_examples") in (None, entry.reported.get("n_examples")):
            return ev
    return None


def entry_problems(entry: Entry, evaluations: list[dict]) -> list[str]:
    """The reasons an entry's reported AutoAttack figure is not leaderboard-grade."""
    ev = backing_evaluation(entry, evaluations)
    if ev is not None:
        return problems(ev, entry.dataset)
    n, full = entry.reported.get("n_examples"), TEST_SIZE.get(entry.dataset)
    return [f"a subset: {n:,} of the {full:,} test images"] if isinstance(n, int) and full and n < full else []
