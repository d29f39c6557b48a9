"""An evaluation's cost: image passes (see ``engine.passes``) and seconds, per stage, per check, for the indicators.

``evaluation.cost`` holds ``stages`` (the clean pass, then each attack at each eps,
extra attacks included: the images entering the stage, its passes and seconds:
the work of one bare AutoAttack call), ``checks`` (the harness's own: ``model``,
the first-chunk check before the run; ``autoattack``, AutoAttack's first-chunk
checks, which a bare call makes too; ``determinism``, the second classification
of every adversarial example), ``diagnostics`` (the indicators; None when they
did not run) and ``total``. A chunk task's passes are saved with its record, so
a resumed run counts the tasks an earlier run finished once, with that run's
seconds; the checks before the run and the indicators are those of the run that
wrote the result. Shards and repeats add up (:func:`summed_cost`).
"""

from __future__ import annotations

import sys

from .engine.passes import KINDS, add_passes, no_passes

UNIT = "image passes"


def _stage(stage: str, eps: str | None) -> dict:
    return {"stage": stage, "eps": eps, "images": 0, **no_passes()}


def _add_stage(row: dict, images: int, passes: dict) -> dict:
    return {**row, **add_passes(row, passes), "images": row["images"] + images}


def _add_checks(a: dict, b: dict) -> dict:
    return {name: add_passes(a.get(name, no_passes()), b.get(name, no_passes())) for name in {**a, **b}}


def _with_total(stages: list[dict], checks: dict, diagnostics: dict | None) -> dict:
    total = no_passes()
    for part in [*stages, *checks.values(), *([diagnostics] if diagnostics else [])]:
        total = add_passes(total, part)
    return {"unit": UNIT, "stages": stages, "checks": checks, "diagnostics": diagnostics, "total": total}


def evaluation_cost(records: dict, settings, checks: dict, diagnostics: dict | None) -> dict:
    """The cost of one evaluation from its finished tasks' records (``{Task: record}``), the checks made before
    the run (``{name: passes}``) and the indicators' passes."""
    stages = [_stage("clean", None)] + [_stage(settings.level(level)[1], settings.eps[settings.level(level)[0]][1])
                                        for level in range(1, settings.n_levels)]
    for task, record in records.items():
        parts = dict(record["passes"])
        stages[task.level] = _add_stage(stages[task.level], len(task.members), parts.pop("attack"))
        checks = _add_checks(checks, parts)
    return _with_total(stages, checks, diagnostics)


def summed_cost(costs: list[dict | None]) -> dict | None:
    """The costs of several results (shards, repeats) added stage by stage; None when one has none."""
    if not costs or any(c is None for c in costs):
        return None
    stages: dict[tuple, dict] = {}
    checks: dict = {}
    diagnostics = None
    for cost in costs:
        for row in cost["stages"]:
            key = (row["stage"], row["eps"])
            stages[key] = _add_stage(stages.get(key, _stage(*key)), row["images"], row)
        checks = _add_checks(checks, cost["checks"])
        if cost["diagnostics"]:
            diagnostics = add_passes(diagnostics or no_passes(), cost["diagnostics"])
    return _with_total(list(stages.values()), checks, diagnostics)


def passes_text(passes: dict) -> str:
    """'N image passes (F forward, G forward with grad, B backward)'."""
    n = sum(passes[k] for k in KINDS)
    return (f"{n:,} {UNIT} ({passes['forward']:,} forward, {passes['forward_grad']:,} forward with grad, "
            f"{passes['backward']:,} backward)")


def profile_table(cost: dict) -> list[str]:
    """Where the time went: one line per stage, check and the indicators, with passes, seconds, image passes per
    second and share of the time."""
    rows = [(row["stage"] + (f" {row['eps']}" if row["eps"] else ""), row) for row in cost["stages"]]
    rows += [(f"check: {name}", part) for name, part in cost["checks"].items()]
    rows += [("diagnostics", cost["diagnostics"])] if cost["diagnostics"] else []
    seconds = cost["total"]["seconds"]
    lines = [f"{'stage':<22} {'forward':>10} {'fwd+grad':>10} {'backward':>10} {'seconds':>9} {'images/s':>10} "
             f"{'share':>7}"]
    for name, part in [*rows, ("total", cost["total"])]:
        n = sum(part[k] for k in KINDS)
        rate = f"{n / part['seconds']:,.0f}" if part["seconds"] > 0 else "-"
        share = 100.0 * part["seconds"] / seconds if seconds > 0 else 0.0
        lines.append(f"{name:<22} {part['forward']:>10,} {part['forward_grad']:>10,} {part['backward']:>10,} "
                     f"{part['seconds']:>9.2f} {rate:>10} {share:>6.1f}%")
    return lines


def print_profile(cost: dict) -> None:
    """``--profile``: the table on stderr."""
    print("\n".join(profile_table(cost)), file=sys.stderr)
