"""Whether a result is leaderboard-grade, read from its evaluation provenance.

RobustBench's leaderboards hold standard-AutoAttack evaluations on the whole
official test split. A result measured on a prefix of the test set, on a copy
of the data that is not the official files (the bundled JPEG-decoded subset,
any ``.npz`` copy, whatever folder holds it), with custom attacks, another
AutoAttack version or reduced iterations, or one shard of an evaluation, is
not: each such fact is one reason here. A RobustBench model_info file has no
provenance, and so no reasons.
"""

from __future__ import annotations

from pathlib import Path

from .datasets_meta import TEST_SIZE
from .evaluations import reports_same_robust_accuracy
from .registry import Entry
from .results import Evaluation, EvaluationResult

LEADERBOARD_VERSION = "standard"


def data_problem(data: dict) -> str | None:
    """Why the evaluated images (an evaluation's ``data`` record) are not the official test files, or None.

    The loader records which file it read and whether it is the official one
    (``official``); results written before it recorded that are judged by the file's name.
    """
    source = str(data.get("source") or "")
    if source == "bundled-subset":
        return "the bundled JPEG-decoded subset, not the official test files"
    if data.get("official") is False or (data.get("official") is None and source.endswith(".npz")):
        return f"{Path(source).name}, a copy of the test data, not the official test files"
    return None


def problems(evaluation: Evaluation, dataset: str) -> list[str]:
    """The reasons an evaluation is not leaderboard-grade."""
    out = []
    n, full = evaluation.n_examples, TEST_SIZE.get(dataset)
    shard = evaluation.shard
    if shard:
        out.append(f"one shard ({shard.get('index')}/{shard.get('count')}) of an evaluation: merge the shards")
    elif full and n < full:
        out.append(f"a subset: {n:,} of the {full:,} test images")
    data = data_problem(evaluation.data)
    if data:
        out.append(data)
    version, attacks = evaluation.autoattack.get("version"), evaluation.autoattack.get("attacks") or []
    if version == "custom":
        out.append(f"custom attacks ({', '.join(attacks) or 'unnamed'})")
    elif version != LEADERBOARD_VERSION:
        out.append(f"AutoAttack version {version} (leaderboards use {LEADERBOARD_VERSION})")
    if evaluation.autoattack.get("n_iter"):
        out.append(f"reduced attack iterations (n_iter={evaluation.autoattack['n_iter']})")
    if evaluation.randomized and version != "rand":
        out.append("a randomized defense evaluated with the standard version (use --version rand)")
    return out


def backing_evaluation(entry: Entry, results: list[EvaluationResult]) -> Evaluation | None:
    """The evaluation whose AutoAttack figure the entry reports (same accuracy and examples), if listed."""
    for result in results:
        if reports_same_robust_accuracy(result, entry) and \
                result.evaluation.n_examples == entry.reported.get("n_examples", result.evaluation.n_examples):
            return result.evaluation
    return None


def entry_problems(entry: Entry, results: list[EvaluationResult]) -> list[str]:
    """The reasons an entry's reported AutoAttack figure is not leaderboard-grade."""
    ev = backing_evaluation(entry, results)
    if ev is not None:
        return problems(ev, entry.dataset)
    n, full = entry.reported.get("n_examples"), TEST_SIZE.get(entry.dataset)
    return [f"a subset: {n:,} of the {full:,} test images"] if isinstance(n, int) and full and n < full else []
