"""The toy demonstration's figures (PNG): learned posteriors (the paper's Figure 1), R_SCORE and R_standard (Figure 2).

As the official plot_toy_demo.m draws them: P(y=0|x) of the ground truth and of
each model at the final test points, over x in [-5, 8], y in [0, 1], the ground
truth in dark cyan. Everything is drawn from a run's ``toy.json`` and
``posteriors.json``, so the figures can be redrawn without training again.
"""

from __future__ import annotations

from pathlib import Path

from zoo.fileio import atomic_file

X_RANGE = (-5, 8)
TRUTH_COLOR = (0, 139 / 255, 139 / 255)
LEARNED_COLOR = (0.85, 0.325, 0.098)
FIGURES = ("posterior.png", "curves.png", "objectives.png")


def _posterior_panel(ax, xs, truth, learned, label: str, color=LEARNED_COLOR, with_truth: bool = True) -> None:
    order = sorted(range(len(xs)), key=xs.__getitem__)
    x_sorted = [xs[i] for i in order]
    if with_truth:
        ax.plot(x_sorted, [truth[i] for i in order], color=TRUTH_COLOR, lw=4, label="ground truth P*(y=0|x)")
    ax.plot(x_sorted, [learned[i] for i in order], color=color, lw=2, label=label)
    ax.set_xlim(*X_RANGE)
    ax.set_ylim(0, 1)
    ax.set_xticks(range(X_RANGE[0], X_RANGE[1] + 1))
    ax.set_yticks([i / 10 for i in range(11)])
    ax.grid(alpha=0.3)
    ax.set_xlabel("x")
    ax.set_ylabel("P(y=0|x)")


def _curves_panel(ax, curves: dict, measure_distance: str) -> None:
    its = range(1, len(curves["R_SCORE"]) + 1)
    ax.plot(its, curves["R_SCORE"], color="tab:red", label="R_SCORE")
    ax.plot(its, curves["R_standard"], color="tab:blue", label="R_standard")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("iteration")
    ax.set_ylabel(f"{measure_distance} distance")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def _save(fig, path: Path) -> None:
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=100)


def write_figures(out: str | Path, summary: dict, posteriors: dict) -> None:
    """Draw ``FIGURES`` into ``out`` from a run's summary (toy.json) and posteriors (posteriors.json)."""
    from matplotlib.figure import Figure

    out = Path(out)
    s, runs = summary["settings"], summary["objectives"]
    xs, truth, measure = posteriors["x"], posteriors["truth"], s["measure_distance"]
    how = f"trained with {s['distance']}, {s['iterations']} iterations, seed {s['seed']}"

    fig = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = fig.subplots()
    for i, (name, run) in enumerate(runs.items()):
        _posterior_panel(ax, xs, truth, posteriors["learned"][name], f"learned by {run['label']}",
                         color=f"C{(i + 1) % 10}", with_truth=i == 0)
    ax.legend(fontsize="small", loc="lower left")
    ax.set_title(f"Ground truth and learned posteriors ({how})", fontsize="medium")
    _save(fig, out / FIGURES[0])

    fig = Figure(figsize=(4 * len(runs), 3.6), layout="constrained")
    for ax, run in zip(fig.subplots(1, len(runs), squeeze=False, sharey=True)[0], runs.values()):
        _curves_panel(ax, run["curves"], measure)
        ax.set_title(f"trained by {run['label']}", fontsize="medium")
    fig.suptitle(f"R_SCORE and R_standard ({measure}) during training ({how})", fontsize="medium")
    _save(fig, out / FIGURES[1])

    fig = Figure(figsize=(4 * len(runs), 7), layout="constrained")
    grid = fig.subplots(2, len(runs), squeeze=False)
    for col, (name, run) in enumerate(runs.items()):
        _posterior_panel(grid[0][col], xs, truth, posteriors["learned"][name], f"learned by {run['label']}")
        grid[0][col].legend(fontsize="x-small", loc="lower left")
        grid[0][col].set_title(run["label"])
        _curves_panel(grid[1][col], run["curves"], measure)
    fig.suptitle(f"The toy demonstration, {how}; R_SCORE and R_standard measured with {measure}",
                 fontsize="medium")
    _save(fig, out / FIGURES[2])
