"""Beyond AutoAttack: extra attacks after the standard version, and RobustBench's ``external`` figure.

``--extra-attacks malt`` adds one stage per extra attack after AutoAttack's
attacks (see ``engine.stages``): it takes the examples still robust after
AutoAttack, pooled over the evaluation in chunks of ``batch_size``, each chunk a
resumable task like any other (its own state file). AutoAttack's chunks do not
change, so ``autoattack_acc`` and the per-example outcomes are exactly those of
the run without extra attacks; the extra attacks are recorded apart, in
``evaluation.extra_attacks``, and when they lower the robust accuracy the result
sets RobustBench's ``external`` (two decimals) and a footnote naming the method,
so a leaderboard ranks it by the best known robust accuracy, as RobustBench does.
``--bpda MODULES`` is one such attack (``apgd-bpda``: APGD through the modules),
with RobustBench's footnote "The robust accuracy is due to APGD with BPDA".
"""

from __future__ import annotations

from zoo.errors import ConfigError
from zoo.results import Evaluation, ModelInfo, fmt_acc, percent

from .bpda import BPDA_FOOTNOTE
from .extra_attacks import EXTRA_ATTACKS


def split_outcomes(outcome: list, broken_at: list, extra: list[str]) -> tuple[list, list, list]:
    """(AutoAttack's outcomes, AutoAttack's broken_at, per example the extra attack that broke it or None)."""
    aa_outcome, aa_broken, extra_outcome = [], [], []
    for o, b in zip(outcome, broken_at):
        if o in extra:
            aa_outcome.append(None)
            aa_broken.append(None)
            extra_outcome.append(o)
        else:
            aa_outcome.append(o)
            aa_broken.append(b)
            extra_outcome.append(None)
    return aa_outcome, aa_broken, extra_outcome


def provenance(attacks: list[str], settings: dict, extra_outcome: list, aa_outcome: list) -> dict:
    """``evaluation.extra_attacks``: what ran, what it broke, and the robust accuracy after each."""
    n = len(aa_outcome)
    remaining = sum(o is None for o in aa_outcome)
    after = {}
    for attack in attacks:
        remaining -= sum(o == attack for o in extra_outcome)
        after[attack] = percent(remaining, n)
    return {"attacks": list(attacks), "method": method(attacks), "settings": settings,
            "broken": {a: sum(o == a for o in extra_outcome) for a in attacks},
            "robust_accuracy": percent(remaining, n), "robust_accuracy_after": after, "outcome": list(extra_outcome)}


def method(attacks: list[str]) -> str:
    return "AutoAttack + " + " + ".join(EXTRA_ATTACKS[a].citation for a in attacks)


def footnote(attacks: list[str], bpda: list[str] | None = None) -> str:
    """The footnote of an ``external`` figure; with BPDA, RobustBench's sentence naming the modules."""
    note = f"External evaluation: {method(attacks)}."
    return f"{note} The {BPDA_FOOTNOTE} through {', '.join(bpda)}." if bpda else note


def apply_external(info: ModelInfo, evaluation: Evaluation) -> ModelInfo:
    """Set ``external`` and its footnote when the extra attacks lower the robust accuracy (else clear them)."""
    extra = evaluation.extra_attacks
    note = footnote(extra["attacks"], evaluation.bpda) if extra else None
    if info.footnote and note and note in info.footnote:   # a merged or re-assembled result: re-derived below
        info.footnote = info.footnote.replace(note, "").strip() or None
    info.external = None
    if not extra or extra["robust_accuracy"] >= evaluation.robust_accuracy:
        return info
    info.external = fmt_acc(extra["robust_accuracy"])
    info.footnote = f"{info.footnote} {note}" if info.footnote else note
    return info


def merge_extra(parts: list[dict | None], names: list[str], aa_outcome: list) -> dict | None:
    """The ``extra_attacks`` of merged shards (in example order); refuse shards that ran different ones."""
    if all(p is None for p in parts):
        return None
    first = parts[0]
    for name, p in zip(names, parts):
        if p is None or p["attacks"] != first["attacks"] or p["settings"] != first["settings"]:
            raise ConfigError(f"{name} ran other extra attacks than {names[0]}; merge shards of one evaluation")
    outcome = [o for p in parts for o in p["outcome"]]
    return provenance(first["attacks"], first["settings"], outcome, aa_outcome)


def describe(result) -> str:
    """One line: what the extra attacks did."""
    ev = result.evaluation
    extra = ev.extra_attacks
    broke = ", ".join(f"{a} broke {n}" for a, n in extra["broken"].items())
    ext = (f"external {result.model_info.external}%" if result.model_info.external
           else "no external figure (robust accuracy unchanged)")
    return (f"beyond AutoAttack: {broke}; robust {extra['robust_accuracy']:.2f}% "
            f"(AutoAttack {ev.robust_accuracy:.2f}%) -> {ext}")
