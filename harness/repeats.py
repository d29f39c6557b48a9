"""``--repeats K`` for randomized defenses: evaluate K times and keep each example's worst case.

A randomized defense answers differently from run to run, so one AutoAttack
``rand`` run (EOT over 20 draws) can overrate it (AutoAttack's open PR #105 asks
for the same). Repeat ``r`` is the whole ``--version rand`` evaluation with seed
``SEED + r`` (so the model's and the attacks' random draws differ), resumable in
its own state folder ``STATE/repeat-R``. An example counts as robust only if it
is robust in every repeat; its outcome is that of the first repeat that broke
it. The result records K, the seeds and every repeat's accuracies in
``evaluation.repeats``.

Only ``--version rand`` repeats: a deterministic model gives the same answers
every time, so repeating it would only cost time (refused with one line).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from zoo.errors import ConfigError

from .results import EvaluationResult


def evaluate_repeats(model, dataset=None, threat_model=None, eps=None, n_examples=None, *, repeats: int,
                     version: str = "standard", seed: int = 0, out=None, state_dir=None, shard=None,
                     save_adversarial=None, extra_attacks=None, **kw) -> EvaluationResult:
    """K evaluations of a randomized defense (seeds seed..seed+K-1), combined per example (worst case)."""
    from .evaluation import default_state_dir, evaluate

    if repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {repeats}")
    if version != "rand":
        raise ConfigError(f"--repeats needs --version rand (randomized defenses); the {version} version evaluates a "
                          "deterministic model, which answers the same every time")
    for flag, value in (("--shard", shard), ("--save-adversarial", save_adversarial),
                        ("--extra-attacks", extra_attacks)):
        if value:
            raise ConfigError(f"--repeats cannot be combined with {flag} yet; evaluate without it")
    root = Path(state_dir) if state_dir is not None else default_state_dir(out) if out is not None else None
    runs = []
    for r in range(repeats):
        sub = root / f"repeat-{r}" if root is not None else None
        runs.append(evaluate(model, dataset, threat_model, eps, n_examples, version=version, seed=seed + r,
                             state_dir=sub, **kw))
    result = combine(runs)
    if out is not None:
        result.to_json(out)
    return result


def combine(runs: list[EvaluationResult]) -> EvaluationResult:
    """Per example the worst case over the runs (robust only if robust in every one)."""
    from .evaluation import assemble

    first = runs[0].evaluation
    outcome, broken_at = [], []
    for i in range(len(first.per_example["outcome"])):
        found = next(((r.evaluation.per_example["outcome"][i], r.evaluation.per_example["broken_at"][i])
                      for r in runs if r.evaluation.per_example["outcome"][i] is not None), (None, None))
        outcome.append(found[0])
        broken_at.append(found[1])
    notes = Counter()
    for r in runs:
        for w in r.evaluation.warnings:
            notes[(w["source"], w["message"])] += w["count"]
    fields = {k: v for k, v in vars(first).items()
              if k not in ("eps", "eps_text", "clean_accuracy", "robust_accuracy", "robust_accuracy_after",
                           "per_example", "curve", "randomized")}
    fields.update(duration_s=round(sum(r.evaluation.duration_s for r in runs), 3),
                  warnings=[{"source": s, "message": m, "count": c} for (s, m), c in notes.items()],
                  repeats={"k": len(runs), "seeds": [r.evaluation.seed for r in runs],
                           "clean_accuracy": [r.evaluation.clean_accuracy for r in runs],
                           "robust_accuracy": [r.evaluation.robust_accuracy for r in runs],
                           "robust_accuracy_after": [r.evaluation.robust_accuracy_after for r in runs],
                           "rule": "robust only if robust in every repeat"})
    return assemble(None, None, outcome=outcome, broken_at=broken_at, eps_list=first.eps_list(),
                    randomized=any(r.evaluation.randomized for r in runs),
                    per_example_start=first.per_example.get("start", 0), base=runs[0].model_info, **fields)
