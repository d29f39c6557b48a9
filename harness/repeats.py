"""``--repeats K`` for randomized defenses: K results combined into one, each example's worst case kept.

A randomized defense answers differently from run to run, so one AutoAttack
``rand`` run (EOT over 20 draws) can overrate it (AutoAttack's open PR #105 asks
for the same). ``evaluate`` runs repeat ``r`` as the whole ``--version rand``
evaluation with seed ``SEED + r`` (so the model's and the attacks' random draws
differ), resumable in its own state folder ``STATE/repeat-R``; ``combine`` is a
pure function of those results: an example counts as robust only if it is
robust in every repeat, and its outcome is that of the first repeat that broke
it. The result records K, the seeds and every repeat's accuracies in
``evaluation.repeats``.

Only ``--version rand`` repeats (``EvaluationOptions`` refuses the others): a
deterministic model gives the same answers every time.
"""

from __future__ import annotations

from zoo.results import EvaluationResult

from .assembly import assemble, combined_fields


def combine(runs: list[EvaluationResult]) -> EvaluationResult:
    """Per example the worst case over the runs (robust only if robust in every one)."""
    first = runs[0].evaluation
    outcome, broken_at = [], []
    for i in range(len(first.per_example["outcome"])):
        found = next(((r.evaluation.per_example["outcome"][i], r.evaluation.per_example["broken_at"][i])
                      for r in runs if r.evaluation.per_example["outcome"][i] is not None), (None, None))
        outcome.append(found[0])
        broken_at.append(found[1])
    fields = combined_fields(runs)
    fields["repeats"] = {"k": len(runs), "seeds": [r.evaluation.seed for r in runs],
                         "clean_accuracy": [r.evaluation.clean_accuracy for r in runs],
                         "robust_accuracy": [r.evaluation.robust_accuracy for r in runs],
                         "robust_accuracy_after": [r.evaluation.robust_accuracy_after for r in runs],
                         "rule": "robust only if robust in every repeat"}
    return assemble(None, None, outcome=outcome, broken_at=broken_at, eps_list=first.eps_list(),
                    randomized=any(r.evaluation.randomized for r in runs),
                    per_example_start=first.per_example.get("start", 0), base=runs[0].model_info, **fields)
