"""Multi-seed studies: the same recipe trained with several seeds per objective, and what differs.

A study file (``entries/studies/NAME.json``) lists one row per run, each taken
from that run's evaluation JSON and registry entry by ``score-zoo study``
(never typed): objective, seed, clean accuracy (with its image count),
AutoAttack accuracy (with its image count), held-out PGD accuracy and the
evaluation file. :func:`summary` computes per objective the mean and sample
standard deviation, and the paired difference between two objectives over
the seeds they share; :func:`markdown` renders it for cards and the README.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from .errors import ConfigError
from .evaluations import evaluation_paths, read_evaluation, reports_same_robust_accuracy
from .fileio import atomic_write_bytes, atomic_write_json, read_json
from .model_dir import read_config
from .registry import BUILTIN_DIR, get_entry

METRICS = (("clean_acc", "clean"), ("autoattack_acc", "AutoAttack"), ("holdout_robust_acc", "held-out PGD"))


def load_study(path: str | Path) -> dict:
    """Read a study file."""
    return read_json(Path(path), "study")


def _evaluation_path(entry) -> Path:
    paths = evaluation_paths(entry)
    if not paths:
        raise ConfigError(f"entry '{entry.name}' has no evaluation JSON to take its figures from")
    return paths[0]


def study_row(name: str) -> dict:
    """One run of a study, read from entry ``name``: its evaluation JSON, its reported clean figure and the
    training config of its model directory (objective, seed, held-out accuracy of the selected epoch)."""
    entry = get_entry(name)
    evaluation = read_evaluation(_evaluation_path(entry))
    training = read_config(entry.local_path()).get("training", {})
    recipe = training.get("recipe", {})
    if "holdout_robust_acc" not in training:
        raise ConfigError(f"entry '{name}': its model directory records no held-out accuracy (not a score-train run)")
    if not reports_same_robust_accuracy(evaluation, entry):
        raise ConfigError(f"entry '{name}': reported AutoAttack accuracy differs from its evaluation JSON")
    return {"entry": name, "objective": recipe.get("objective", "score"), "seed": recipe.get("seed", 0),
            "clean_acc": float(entry.reported["clean_acc"]), "clean_n_examples": entry.reported["clean_n_examples"],
            "autoattack_acc": float(evaluation.model_info.autoattack_acc), "n_examples": evaluation.evaluation.n_examples,
            "holdout_robust_acc": float(training["holdout_robust_acc"]), "selected_epoch": training.get("epoch")}


def check_runs(runs: list[dict]) -> None:
    """Refuse a study whose runs cannot be summarised together: two runs of one objective with the same seed, or
    figures measured on different numbers of images (one header names the image counts of all rows)."""
    seen: dict[tuple, str] = {}
    for r in runs:
        key = (r["objective"], r["seed"])
        if key in seen:
            raise ConfigError(f"'{seen[key]}' and '{r['entry']}' are both {r['objective']} with seed {r['seed']}: a "
                              "study counts seeds, so give one run per seed of each objective")
        seen[key] = r["entry"]
    for key, label in (("n_examples", "AutoAttack"), ("clean_n_examples", "clean")):
        sizes = {r[key]: r["entry"] for r in runs}
        if len(sizes) > 1:
            shown = ", ".join(f"{n:,} in '{entry}'" for n, entry in sizes.items())
            raise ConfigError(f"the runs' {label} figures are measured on different numbers of images ({shown}); "
                              "register every run on the same images (--n-examples, --clean-n-examples)")


def build_study(names: list[str], out: str | Path, description: str, data: str,
                evaluations_dir: str | Path | None = None) -> dict:
    """Write the study of entries ``names`` to ``out``; with ``evaluations_dir`` copy each evaluation JSON there
    (so a package keeps every seed's evaluation) and point the rows at the copies."""
    rows = [study_row(n) for n in names]
    check_runs(rows)
    if evaluations_dir is not None:
        for row in rows:
            target = Path(evaluations_dir) / f"{row['entry']}.json"
            atomic_write_bytes(target, _evaluation_path(get_entry(row["entry"])).read_bytes())
            row["evaluation"] = str(target.relative_to(BUILTIN_DIR)) if target.is_relative_to(BUILTIN_DIR) else str(target)
    study = {"description": description, "data": data, "runs": rows}
    atomic_write_json(Path(out), study)
    return study


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value: one seed has no spread)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def spread(mean: float, std: float | None, signed: bool = False) -> str:
    """``mean ± std`` as the tables print it; a single value says it has no spread."""
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return f"{text} ± {std:.2f}" if std is not None else f"{text} (one seed, no spread)"


def summary(study: dict) -> dict:
    """Per objective ``{metric: (mean, std, n)}`` and, for the first two objectives, the paired differences over
    the seeds they share (none without a shared seed)."""
    check_runs(study["runs"])
    objectives = list(dict.fromkeys(r["objective"] for r in study["runs"]))
    per: dict[str, dict] = {}
    for obj in objectives:
        rows = [r for r in study["runs"] if r["objective"] == obj]
        per[obj] = {m: (*mean_std([r[m] for r in rows]), len(rows)) for m, _ in METRICS}
    out = {"objectives": objectives, "per_objective": per, "paired": {}}
    if len(objectives) >= 2:
        a, b = objectives[:2]
        by_seed = {(r["objective"], r["seed"]): r for r in study["runs"]}
        seeds = sorted(s for (o, s) in by_seed if o == a and (b, s) in by_seed)
        for m, _ in METRICS:
            diffs = [by_seed[a, s][m] - by_seed[b, s][m] for s in seeds]
            if diffs:
                out["paired"][m] = (*mean_std(diffs), len(diffs))
    return out


def markdown(study: dict) -> str:
    """Per-seed table, mean ± standard deviation per objective, and the paired difference."""
    s = summary(study)
    first = study["runs"][0]
    head = (f"| objective | seed | clean ({first['clean_n_examples']:,} images) | AutoAttack "
            f"({first['n_examples']:,} images) | held-out PGD |")
    lines = [head, "|---|---|---|---|---|"]
    for r in sorted(study["runs"], key=lambda r: (s["objectives"].index(r["objective"]), r["seed"])):
        lines.append(f"| {r['objective']} | {r['seed']} | {r['clean_acc']:.2f} | {r['autoattack_acc']:.2f} | "
                     f"{r['holdout_robust_acc']:.2f} |")
    for obj in s["objectives"]:
        p = s["per_objective"][obj]
        lines.append(f"| **{obj}** mean ± std (n={p['clean_acc'][2]}) | | "
                     + " | ".join(spread(*p[m][:2]) for m, _ in METRICS) + " |")
    if s["paired"]:
        a, b = s["objectives"][:2]
        cells = [spread(*s["paired"][m][:2], signed=True) for m, _ in METRICS]
        n = s["paired"]["clean_acc"][2]
        lines.append(f"| **{a} − {b}**, paired by seed (n={n}) | | " + " | ".join(cells) + " |")
    return "\n".join(lines)
