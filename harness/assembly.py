"""A result from per-example outcomes: the one place evaluation, merge and repeats build results.

``assemble`` turns per-example outcomes into the curve, the accuracies at the
main eps and RobustBench's model_info; ``combined_fields`` carries the
provenance of several results (shards, repeats) into one: the first one's
settings, warnings summed, durations added.
"""

from __future__ import annotations

from collections import Counter

from zoo.errors import ConfigError
from zoo.results import DESCRIPTIVE_KEYS, Evaluation, EvaluationResult, ModelInfo, curve_points, fmt_acc

from .beyond import apply_external
from .cost import summed_cost
from .threat_models import main_eps_index

RANDOMIZED_NOTE = ("AutoAttack flags this model as a randomized defense; RobustBench does not rank randomized "
                   "defenses under the standard version.")
# Fields of an Evaluation that assemble derives from the outcomes (never carried over from an input result).
DERIVED = ("eps", "eps_text", "clean_accuracy", "robust_accuracy", "robust_accuracy_after", "per_example", "curve",
           "randomized")


def build_model_info(resolved, dataset: str, eps_text: str, clean: float, robust: float,
                     overrides: dict | None = None, base: ModelInfo | None = None,
                     randomized: bool = False) -> ModelInfo:
    """RobustBench's model_info for a measured result (entry metadata, then user overrides).

    A model AutoAttack flags as randomized is marked ``unreliable`` with a footnote.
    """
    info = ModelInfo(**vars(base)) if base is not None else ModelInfo()
    if base is not None and base.reported == base.autoattack_acc:
        info.reported = ""  # it was only the measured value; re-derive it below
    if resolved is not None:
        info.architecture = info.architecture or resolved.architecture
        entry = resolved.entry
        if entry is not None:
            src = entry.source
            info.link, info.name = src.get("link", ""), src.get("title", "")
            info.authors, info.venue = src.get("authors", ""), src.get("venue", "")
            info.additional_data, info.footnote = entry.additional_data, entry.footnote
            if entry.reported.get("autoattack_acc") is not None and entry.eps == eps_text:
                info.reported = fmt_acc(float(entry.reported["autoattack_acc"]))
    for key, value in (overrides or {}).items():
        if key not in DESCRIPTIVE_KEYS:
            raise ConfigError(f"model info key '{key}' cannot be set; settable keys: {', '.join(DESCRIPTIVE_KEYS)}")
        setattr(info, key, value)
    info.dataset, info.eps = dataset, eps_text
    info.clean_acc, info.autoattack_acc = fmt_acc(clean), fmt_acc(robust)
    info.reported = info.reported or info.autoattack_acc
    if randomized:
        info.unreliable = True
        if RANDOMIZED_NOTE not in (info.footnote or ""):
            info.footnote = f"{info.footnote} {RANDOMIZED_NOTE}" if info.footnote else RANDOMIZED_NOTE
    return info


def assemble(resolved, model_info: dict | None, *, outcome: list, broken_at: list,
             eps_list: list[tuple[float, str]], randomized: bool, per_example_start: int,
             base: ModelInfo | None = None, **fields) -> EvaluationResult:
    """The result from per-example outcomes: the curve, the accuracies at the main eps, model_info."""
    clean, curve = curve_points(outcome, broken_at, eps_list, fields["autoattack"]["attacks"])
    main = curve[main_eps_index(fields["threat_model"], eps_list)]
    evaluation = Evaluation(eps=main["eps"], eps_text=main["eps_text"], clean_accuracy=clean,
                            robust_accuracy=main["robust_accuracy"], robust_accuracy_after=main["robust_accuracy_after"],
                            per_example={"start": per_example_start, "outcome": outcome, "broken_at": broken_at},
                            curve=curve, randomized=randomized, **fields)
    info = build_model_info(resolved, fields["dataset"], main["eps_text"], clean, main["robust_accuracy"],
                            model_info, base=base, randomized=randomized)
    if evaluation.extra_attacks or info.external:
        apply_external(info, evaluation)
    return EvaluationResult(info, evaluation)


def summed_warnings(evaluations: list[Evaluation]) -> list[dict]:
    """The warnings of several evaluations, counts added per (source, message)."""
    notes = Counter()
    for ev in evaluations:
        for w in ev.warnings:
            notes[(w["source"], w["message"])] += w["count"]
    return [{"source": s, "message": m, "count": c} for (s, m), c in notes.items()]


def combined_fields(results: list[EvaluationResult]) -> dict:
    """The provenance of several results as one: the first's settings, warnings summed, durations and costs
    added."""
    evaluations = [r.evaluation for r in results]
    fields = {k: v for k, v in vars(evaluations[0]).items() if k not in DERIVED}
    fields.update(duration_s=round(sum(ev.duration_s for ev in evaluations), 3),
                  warnings=summed_warnings(evaluations), cost=summed_cost([ev.cost for ev in evaluations]))
    return fields
