"""Robustness curves: robust accuracy against eps, for one result or several models, as PNG and SVG.

A curve starts at eps 0 with the clean accuracy; its other points are the
evaluated budgets of a nested evaluation (``--eps 1/255,2/255,4/255,8/255``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import ConfigError
from zoo.fileio import atomic_file

from zoo.results import EVALUATION_KEY, EvaluationResult

FIGURE_FORMATS = ("png", "svg")


@dataclass
class Curve:
    """One model's robust accuracy (percent) at each evaluated eps, clean accuracy at eps 0."""

    label: str
    dataset: str
    threat_model: str
    eps: list[float]
    eps_text: list[str]
    robust: list[float]
    clean: float
    n_examples: int


def curve_of(result: EvaluationResult, label: str) -> Curve:
    """The curve of a result."""
    ev = result.evaluation
    return Curve(label, ev.dataset, ev.threat_model, [p["eps"] for p in ev.curve], [p["eps_text"] for p in ev.curve],
                 [p["robust_accuracy"] for p in ev.curve], ev.clean_accuracy, ev.n_examples)


def curve_paths(out: str | os.PathLike) -> list[Path]:
    """``RESULT.json`` -> ``RESULT.curve.png`` and ``RESULT.curve.svg``."""
    out = Path(out)
    return [out.with_name(f"{out.stem}.curve.{fmt}") for fmt in FIGURE_FORMATS]


def write_result_plots(result: EvaluationResult, out: str | os.PathLike) -> list[Path]:
    """Write the curve of ``result`` beside its JSON (PNG and SVG); return the paths."""
    ev = result.evaluation
    label = ev.model.get("spec") or "model"
    title = f"{ev.dataset} {ev.threat_model}, AutoAttack {ev.autoattack['version']}, {ev.n_examples} examples"
    paths = curve_paths(out)
    for path in paths:
        plot_curves([curve_of(result, label)], path, title)
    return paths


def plot_curves(curves: list[Curve], path: str | os.PathLike, title: str | None = None) -> None:
    """Draw ``curves`` into one figure (one panel per dataset and threat model); format from the suffix."""
    import matplotlib
    from matplotlib.figure import Figure

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FIGURE_FORMATS:
        raise ConfigError(f"cannot write a figure to {path}: use a .png or .svg file name")
    if not curves:
        raise ConfigError("no robustness curves to draw")
    panels: dict[tuple[str, str], list[Curve]] = {}
    for c in curves:
        panels.setdefault((c.dataset, c.threat_model), []).append(c)
    fig = Figure(figsize=(5.5 * len(panels), 4.2), layout="constrained")
    for ax, ((dataset, threat_model), group) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels.items()):
        ticks: dict[float, str] = {0.0: "0"}
        for c in group:
            ax.plot([0.0, *c.eps], [c.clean, *c.robust], marker="o", label=f"{c.label} ({c.n_examples} ex.)")
            ticks.update(zip(c.eps, c.eps_text))
        ax.set_xticks(list(ticks), list(ticks.values()), rotation=45 if len(ticks) > 6 else 0)
        ax.set_xlabel(f"{threat_model} eps")
        ax.set_ylabel("robust accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.set_title(title or f"{dataset} {threat_model}")
        ax.legend(fontsize="small")
    with atomic_file(path) as f, matplotlib.rc_context({"svg.hashsalt": "score-harness", "svg.fonttype": "none"}):
        fig.savefig(f, format=fmt, dpi=120, metadata={"Date": None} if fmt == "svg" else None)


def tree_curves(root: str | os.PathLike, dataset: str | None = None, threat_model: str | None = None) -> list[Curve]:
    """The curves of every result under ``root`` (filters as in the leaderboard) that has more than one eps."""
    from .leaderboard import read_tree

    curves = []
    for row in read_tree(root, dataset, threat_model).rows:
        if not isinstance(row.info.get(EVALUATION_KEY), dict):
            continue  # a RobustBench model_info file: one eps, no provenance
        result = EvaluationResult.from_dict(row.info, row.source)
        if len(result.evaluation.curve) > 1:
            curves.append(curve_of(result, row.key))
    return curves


def plot_tree(root: str | os.PathLike, path: str | os.PathLike, dataset: str | None = None,
              threat_model: str | None = None) -> int:
    """Draw the curves of all results under ``root`` into one figure; return how many."""
    curves = tree_curves(root, dataset, threat_model)
    if not curves:
        raise ConfigError(f"no result under {root} has a robustness curve; evaluate with an eps list, "
                          "e.g. --eps 1/255,2/255,4/255,8/255")
    plot_curves(curves, path)
    return len(curves)
