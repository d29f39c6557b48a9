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
"""

from __future__ import annotations

import torch

from zoo.errors import ConfigError

from .results import Evaluation, ModelInfo, fmt_acc, percent

EXTRA_ATTACKS = ("malt",)
CITATIONS = {"malt": "MALT (Melamed et al., 2024)"}


def check_extra_attacks(extra: list[str] | None, eps_list: list, threat_model: str) -> list[str]:
    """The validated extra attacks (may be empty); one clear line for anything unsupported."""
    extra = [a.strip().lower() for a in (extra or []) if a.strip()]
    unknown = [a for a in extra if a not in EXTRA_ATTACKS]
    if unknown:
        raise ConfigError(f"unknown extra attack(s) {', '.join(unknown)}; choose from {', '.join(EXTRA_ATTACKS)}")
    if len(set(extra)) != len(extra):
        raise ConfigError(f"--extra-attacks {','.join(extra)} repeats an attack")
    if extra and len(eps_list) > 1:
        raise ConfigError("--extra-attacks needs one eps (an eps list nests each eps on the previous one's survivors, "
                          "which extra attacks would change); evaluate one eps per run")
    if "malt" in extra and threat_model not in ("Linf", "L2"):
        raise ConfigError(f"MALT supports the Linf and L2 threat models, not {threat_model}")
    return extra


def extra_settings(extra: list[str], n_iter: int | None) -> dict:
    """Each extra attack's settings, as recorded in the result (``n_iter`` reduces iterations, as for AutoAttack)."""
    from dataclasses import asdict

    from .malt import MaltSettings

    return {attack: asdict(MaltSettings.with_n_iter(n_iter)) for attack in extra if attack == "malt"}


def run_extra(model, settings, eps: float, attack: str, x: torch.Tensor, y: torch.Tensor, device) -> torch.Tensor:
    """One extra attack on one chunk (the engine checks and classifies its output as for AutoAttack's)."""
    if attack == "malt":
        from .malt import MaltSettings, malt_attack

        adv, _ = malt_attack(model, x, y, eps, settings.threat_model, MaltSettings.with_n_iter(settings.n_iter),
                             seed=settings.seed, device=device)
        return adv
    raise ValueError(f"extra attack '{attack}' is not supported")


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
    return "AutoAttack + " + " + ".join(CITATIONS[a] for a in attacks)


def footnote(attacks: list[str]) -> str:
    return f"External evaluation: {method(attacks)}."


def apply_external(info: ModelInfo, evaluation: Evaluation) -> ModelInfo:
    """Set ``external`` and its footnote when the extra attacks lower the robust accuracy (else clear them)."""
    extra = evaluation.extra_attacks
    note = footnote(extra["attacks"]) if extra else None
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
