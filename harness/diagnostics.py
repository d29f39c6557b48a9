"""Attack-failure indicators: what an AutoAttack number cannot vouch for.

Following Pintor et al., "Indicators of Attack Failure" (NeurIPS 2022) and
Carlini et al., "On Evaluating Adversarial Robustness" (2019). Each indicator is
a record ``{name, figure, threshold, verdict, detail}`` (``verdict`` is
``"warning"`` when ``figure`` exceeds ``threshold``, else ``"ok"``; some records
add ``points``, the measurements behind the figure):

- ``silent-gradients``: percent of examples whose input gradient of the
  cross-entropy loss is zero, NaN or infinite at the clean point or at APGD's
  final point; threshold 0 (AutoAttack's ``check_zero_gradients`` also warns on any).
- ``black-box-beats-white-box``: percent of examples that Square (no gradients)
  broke after every gradient attack left them robust; threshold 0.2, the ``alpha``
  of AutoAttack's ``check_square_sr``.
- ``unreachable-misclassification``: APGD-CE's robust accuracy (percent of the
  subset) at the largest eps multiple (4x) and in the whole [0, 1] box, where
  every model must fall to about 0; threshold 2.
- ``non-convergence``: robust accuracy points APGD-CE still gains when its
  iterations are doubled; threshold 5.
- ``randomness``: AutoAttack's ``check_randomized`` (largest change of the
  L2-normalised outputs over 5 passes; threshold its alpha 1e-4; a change in the
  number of correct examples makes the figure at least 1); ``ok`` under ``version="rand"``.
- ``dynamic``: AutoAttack's ``check_dynamic`` (calls to autograd inside the
  forward pass, counted by its own tracer); threshold 0.

:func:`run_indicators` runs them all on a subset (one call for an evaluation);
the attacks are pyautoattack's APGD and Square, under BPDA when asked (see
``bpda``); accuracies and checks are exact. docs/diagnostics.md says why each
threshold is what it is.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
from pyautoattack import checks
from pyautoattack.autopgd_base import APGDAttack
from pyautoattack.other_utils import L2_norm
from pyautoattack.square import SquareAttack

from zoo.errors import ConfigError

from .bpda import bpda_modules, find_modules
from .pictures import input_gradients

OK, WARNING = "ok", "warning"
INDICATORS = ("silent-gradients", "black-box-beats-white-box", "unreachable-misclassification", "non-convergence",
              "randomness", "dynamic")
ADVICE = {
    "silent-gradients": "gradients vanish or break: attack through the non-differentiable or saturating modules "
                        "with --bpda NAME (BPDA)",
    "black-box-beats-white-box": "Square found what the gradient attacks missed (masked gradients): try --bpda NAME "
                                 "on the non-differentiable modules",
    "unreachable-misclassification": "APGD cannot misclassify even with a huge budget (masked gradients): try "
                                     "--bpda NAME on the non-differentiable modules",
    "non-convergence": "APGD has not converged: evaluate with more iterations (e.g. --n-iter 200)",
    "randomness": "the model is randomized: evaluate with --version rand --repeats K",
    "dynamic": "the forward pass runs autograd (a test-time defense): AutoAttack may be insufficient, use an "
               "adaptive attack",
}


@dataclass(frozen=True)
class IndicatorSettings:
    """How much work the indicators do (the defaults cost a few percent of a standard evaluation)."""

    n_examples: int = 32                      # the first N evaluated examples
    iterations: tuple[int, ...] = (100, 200)  # APGD-CE at eps; the last two compared (non-convergence)
    eps_factors: tuple[float, ...] = (4.0,)   # large budgets (times eps), then the [0, 1] box
    large_eps_iter: int = 25                  # APGD-CE iterations at the large budgets
    square_queries: int = 1000                # Square on the survivors when no evaluation outcome is given
    seed: int = 0

    def check(self) -> None:
        """One error line for a setting out of range."""
        its = self.iterations
        if self.n_examples < 1:
            raise ConfigError(f"the indicators need at least 1 example, got {self.n_examples}")
        if len(its) < 2 or min(its) < 1 or list(its) != sorted(set(its)) or its[-1] != 2 * its[-2]:
            raise ConfigError(f"iterations {list(its)} must increase and end with N, 2N (e.g. 100,200)")
        if min(self.large_eps_iter, self.square_queries) < 1 or not all(f > 1 for f in self.eps_factors):
            raise ConfigError("large_eps_iter and square_queries must be positive and every eps factor above 1")


def indicator(name: str, figure: float | None, threshold: float, detail: str, points: dict | None = None) -> dict:
    """A record; the verdict is ``warning`` when ``figure`` exceeds ``threshold`` (None: not measured, ok)."""
    record = {"name": name, "figure": figure, "threshold": threshold,
              "verdict": WARNING if figure is not None and figure > threshold else OK, "detail": detail}
    if points is not None:
        record["points"] = points
    return record


def verdict(records: Iterable[dict]) -> str:
    """``warning`` when any indicator warns, else ``ok``."""
    return WARNING if any(r["verdict"] == WARNING for r in records) else OK


def advice(records: Iterable[dict]) -> list[str]:
    """What to do next, one line per indicator that warns."""
    return next_steps(r["name"] for r in records if r["verdict"] == WARNING)


def next_steps(names: Iterable[str]) -> list[str]:
    """What to do next about the indicators ``names`` (those that warn), one line each."""
    return [f"{name}: {ADVICE[name]}" for name in names]


def _percent(count: int, total: int) -> float:
    return round(100.0 * count / total, 2) if total else 0.0


def silent_gradients(grads: Mapping[str, torch.Tensor], threshold: float = 0.0) -> dict:
    """Percent of examples whose gradient is zero or not finite at some point (``{"clean": g, "final": g}``)."""
    silent, parts = None, []
    for where, g in grads.items():
        flat = g.flatten(1)
        bad = (flat == 0).all(dim=1) | ~torch.isfinite(flat).all(dim=1)
        silent = bad if silent is None else silent | bad
        parts.append(f"{int(bad.sum())} at the {where} point")
    n = len(silent)
    return indicator("silent-gradients", _percent(int(silent.sum()), n), threshold,
                     f"{int(silent.sum())} of {n} examples have a zero or non-finite input gradient of the "
                     f"cross-entropy loss ({', '.join(parts)})")


def black_box_beats_white_box(outcome: Sequence[str | None], threshold: float = 0.2) -> dict:
    """Percent of examples broken by Square (``outcome[i] == "square"``) after the gradient attacks left them robust."""
    n = len(outcome)
    k = sum(o == "square" for o in outcome)
    return indicator("black-box-beats-white-box", _percent(k, n), threshold,
                     f"Square broke {k} of {n} examples that every gradient attack left robust")


def unreachable_misclassification(points: dict, threshold: float = 2.0) -> dict:
    """The larger robust accuracy at the last two budgets of ``points`` (the largest eps multiple and the box).

    ``points`` runs from the evaluated eps (first entry) up; entries in between are only drawn.
    """
    large = list(zip(points["eps_text"], points["robust_accuracy"]))[-2:]
    return indicator("unreachable-misclassification", max(acc for _, acc in large), threshold,
                     "APGD-CE robust accuracy " + ", ".join(f"{acc:.2f}% at {text}" for text, acc in large)
                     + " (about 0 expected)", points)


def non_convergence(points: dict, threshold: float = 5.0) -> dict:
    """Robust accuracy points gained by doubling APGD-CE's iterations (the last two of ``points``)."""
    (n, acc_n), (n2, acc_2n) = list(zip(points["n_iter"], points["robust_accuracy"]))[-2:]
    return indicator("non-convergence", round(acc_n - acc_2n, 2), threshold,
                     f"APGD-CE robust accuracy {acc_n:.2f}% with {n} iterations, {acc_2n:.2f}% with {n2}", points)


def randomness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rand_version: bool = False, passes: int = 5,
               alpha: float = 1e-4) -> dict:
    """AutoAttack's ``check_randomized`` as an indicator (``ok`` when evaluated with version rand)."""
    with torch.no_grad():
        outputs = [model(x) for _ in range(passes)]
    correct = {int((o.max(1)[1] == y).sum()) for o in outputs}
    normed = [o / (L2_norm(o, keepdim=True) + 1e-10) for o in outputs]
    change = max(float(L2_norm(a - b).max()) for i, a in enumerate(normed) for b in normed[i + 1:])
    figure = max(change, 1.0) if len(correct) > 1 else change
    record = indicator("randomness", figure, alpha,
                       f"largest change of the normalised outputs over {passes} passes {change:.3g}; correct "
                       f"examples per pass {sorted(correct)}")
    if rand_version and record["verdict"] == WARNING:
        record["verdict"] = OK
        record["detail"] += "; evaluated with version rand, as a randomized defense must be"
    return record


def dynamic(model: nn.Module, x: torch.Tensor) -> dict:
    """AutoAttack's ``check_dynamic`` as an indicator: autograd calls counted by its tracer during one forward pass."""
    saved, previous = dict(checks.funcs), sys.gettrace()
    checks.funcs.update(dict.fromkeys(checks.funcs, 0))
    sys.settrace(checks.tracefunc)
    try:
        with torch.enable_grad():
            model(x)
    finally:
        sys.settrace(previous)
        calls = sum(checks.funcs.values())
        checks.funcs.update(saved)
    return indicator("dynamic", calls, 0, f"{calls} call(s) to autograd ({', '.join(checks.funcs)}) during a "
                                          "forward pass")


def box_eps(threat_model: str, x: torch.Tensor) -> float:
    """The budget that reaches every image in [0, 1]^d from any other: the unbounded box."""
    d = x[0].numel()
    return {"Linf": 1.0, "L2": math.sqrt(d), "L1": float(d)}[threat_model]


def _correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).max(dim=1)[1] == y


def _apgd(model, x, y, eps, threat_model, n_iter, seed, bpda) -> torch.Tensor:
    attack = APGDAttack(model, n_iter=n_iter, norm=threat_model, eps=eps, seed=seed, loss="ce", device=x.device)
    with bpda_modules(model, bpda or []):
        return attack.perturb(x, y)


def _square_outcome(model, x, y, eps, threat_model, robust: torch.Tensor, clean: torch.Tensor,
                    s: IndicatorSettings) -> list:
    """Outcomes of a small evaluation: clean, the APGD-CE runs (``robust`` after all of them), then Square."""
    outcome = ["clean" if not c else None if r else "apgd-ce" for c, r in zip(clean.tolist(), robust.tolist())]
    idx = robust.nonzero().flatten()
    if len(idx):
        square = SquareAttack(model, norm=threat_model, n_queries=s.square_queries, eps=eps, p_init=.8, n_restarts=1,
                              seed=s.seed, verbose=False, device=x.device, resc_schedule=False)
        broken = ~_correct(model, square.perturb(x[idx], y[idx]), y[idx])
        for i in idx[broken].tolist():
            outcome[i] = "square"
    return outcome


def run_indicators(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, threat_model: str = "Linf", *,
                   outcome: Sequence[str | None] | None = None, settings: IndicatorSettings = IndicatorSettings(),
                   bpda: Iterable[str] | Mapping | None = None, version: str = "standard",
                   eps_text: str | None = None) -> list[dict]:
    """Every indicator for ``model`` (eval mode, on ``x``'s device) on the first ``settings.n_examples`` of ``x``.

    ``outcome`` holds an evaluation's per-example outcomes (the attack that broke
    example i, ``"clean"`` or None; over all its examples); without it Square runs
    on the subset's survivors of APGD-CE. ``bpda`` names modules to attack through
    (see ``bpda``); gradients are then the attacks' BPDA gradients. Returns the
    records in the order of ``INDICATORS``.
    """
    settings.check()
    if threat_model not in ("Linf", "L2", "L1"):
        raise ConfigError(f"the attack-failure indicators need an Lp threat model (Linf, L2, L1), not {threat_model}")
    if bpda:
        find_modules(model, bpda)   # a wrong name fails before any work
    s = settings
    xs, ys = x[:s.n_examples].contiguous(), y[:s.n_examples]
    n = len(xs)
    devices = [xs.device.index or 0] if xs.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        with torch.enable_grad():
            differentiable = model(xs[:1].clone().requires_grad_(True)).requires_grad
        if not differentiable:   # no gradient attack can run at all
            missing = "not measured: the model's output has no gradient with respect to its input"
            return [indicator("silent-gradients", 100.0, 0.0, "the model's output has no gradient with respect to "
                              "its input"),
                    *(indicator(name, None, 0.0, missing) for name in INDICATORS[1:4]),
                    randomness(model, xs, ys, version == "rand"), dynamic(model, xs[:8])]
        clean = _correct(model, xs, ys)
        robust_all, by_iter, final = clean.clone(), [], None
        for n_iter in s.iterations:
            adv = _apgd(model, xs, ys, eps, threat_model, n_iter, s.seed, bpda)
            robust = _correct(model, adv, ys)
            robust_all &= robust
            by_iter.append(_percent(int(robust.sum()), n))
            if n_iter == s.iterations[-2]:
                final = adv
        with bpda_modules(model, bpda or []):
            grads = {"clean": input_gradients(model, xs, ys), "final": input_gradients(model, final, ys)}
        clean_acc = _percent(int(clean.sum()), n)
        eps_points = {"eps": [eps], "eps_text": [eps_text or f"{eps:.4g}"], "robust_accuracy": [by_iter[-2]],
                      "clean_accuracy": clean_acc}
        large = [(f * eps, f"{f:g}x") for f in s.eps_factors] + [(box_eps(threat_model, xs), "box")]
        for value, text in large:
            adv = _apgd(model, xs, ys, value, threat_model, s.large_eps_iter, s.seed, bpda)
            eps_points["eps"].append(value)
            eps_points["eps_text"].append(text)
            eps_points["robust_accuracy"].append(_percent(int(_correct(model, adv, ys).sum()), n))
        if outcome is not None:
            black_box = black_box_beats_white_box(outcome)
        elif threat_model == "L1":
            black_box = indicator("black-box-beats-white-box", None, 0.2, "not measured: Square supports Linf and L2")
        else:
            black_box = black_box_beats_white_box(_square_outcome(model, xs, ys, eps, threat_model, robust_all,
                                                                  clean, s))
        return [silent_gradients(grads), black_box, unreachable_misclassification(eps_points),
                non_convergence({"n_iter": list(s.iterations), "robust_accuracy": by_iter, "clean_accuracy": clean_acc}),
                randomness(model, xs, ys, version == "rand"), dynamic(model, xs[:8])]


def evaluation_diagnostics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, threat_model: str,
                           outcome: Sequence[str | None], *, n_iter: int | None = None, bpda: Iterable[str] = (),
                           version: str = "standard", seed: int = 0) -> dict:
    """A result's ``diagnostics`` section: the indicators on the first evaluated examples, APGD-CE at the
    evaluation's iterations N (AutoAttack's 100 unless reduced) and 2N, Square read from ``outcome``."""
    n = n_iter or 100
    settings = IndicatorSettings(iterations=(n, 2 * n), large_eps_iter=min(25, n), seed=seed)
    records = run_indicators(model, x, y, eps, threat_model, outcome=outcome, settings=settings, bpda=list(bpda),
                             version=version)
    return {"verdict": verdict(records), "n_examples": min(len(x), settings.n_examples),
            "iterations": list(settings.iterations), "indicators": records}


def plot_indicators(records: list[dict], path, title: str) -> None:
    """Robust accuracy against eps (up to the box) and against APGD-CE's iterations, as PNG or SVG."""
    import matplotlib
    from matplotlib.figure import Figure

    from zoo.fileio import atomic_path

    from .curves import FIGURE_FORMATS

    fmt = str(path).rsplit(".", 1)[-1].lower()
    if fmt not in FIGURE_FORMATS:
        raise ConfigError(f"cannot write a figure to {path}: use a .png or .svg file name")
    by_name = {r["name"]: r for r in records}
    eps, iters = by_name["unreachable-misclassification"]["points"], by_name["non-convergence"]["points"]
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    labels = ["clean", *eps["eps_text"]]
    left.plot(range(len(labels)), [eps["clean_accuracy"], *eps["robust_accuracy"]], marker="o")
    left.set_xticks(range(len(labels)), labels)
    left.set_xlabel("budget (times eps; box: all of [0, 1])")
    left.set_title("APGD-CE robust accuracy against eps")
    right.plot(iters["n_iter"], iters["robust_accuracy"], marker="o")
    right.set_xscale("log", base=2)
    right.set_xticks(iters["n_iter"], [str(n) for n in iters["n_iter"]])
    right.set_xlabel("APGD-CE iterations")
    right.set_title("APGD-CE robust accuracy against iterations")
    for ax in (left, right):
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    with atomic_path(path) as tmp, matplotlib.rc_context({"svg.hashsalt": "score-harness", "svg.fonttype": "none"}):
        fig.savefig(tmp, format=fmt, dpi=120, metadata={"Date": None} if fmt == "svg" else None)


def sweep(n_iter: int) -> tuple[int, ...]:
    """APGD-CE iteration counts for the picture: N/4, N/2, N, 2N."""
    return tuple(sorted({max(1, n_iter // 4), max(1, n_iter // 2), n_iter, 2 * n_iter}))


def diagnose(model, dataset: str | None = None, threat_model: str | None = None, eps=None, n_examples: int = 64,
             n_iter: int = 100, *, bpda: Iterable[str] | Mapping | None = None, seed: int = 0,
             device: str | None = None, data_dir=None, weights: str | None = None,
             model_dir: str | None = None) -> dict:
    """The indicators alone for ``model`` (any MODEL spec or module) on the first ``n_examples`` test images.

    APGD-CE runs at N/4, N/2, N and 2N iterations (``n_iter`` = N), at 2x and 4x
    eps and in the box; Square (1000 queries) on what it leaves. Returns a report
    with every record, the overall verdict and what to do next.
    """
    import time
    import warnings

    from zoo import devices
    from zoo.datasets_meta import check_dataset

    from .data import BundledSubsetWarning, load_tensors
    from .models import resolve_model
    from .threat_models import check_threat_model, resolve_eps

    t0 = time.perf_counter()
    if n_iter < 1:
        raise ConfigError(f"--n-iter must be at least 1, got {n_iter}")
    settings = IndicatorSettings(n_examples=n_examples, iterations=sweep(n_iter), eps_factors=(2.0, 4.0), seed=seed)
    settings.check()
    resolved = resolve_model(model, dataset, threat_model, weights, model_dir)
    dataset = check_dataset(dataset or resolved.defaults.get("dataset", "cifar10"))
    threat_model = check_threat_model(threat_model or resolved.defaults.get("threat_model", "Linf"))
    eps_value, eps_text = resolve_eps(threat_model, eps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BundledSubsetWarning)
        x, y = load_tensors(dataset, "test", data_dir, n_examples)
    where = devices.resolve_device(device)
    net = resolved.model.eval().to(where)
    records = run_indicators(net, x.to(where), y.to(where), eps_value, threat_model, settings=settings, bpda=bpda,
                             eps_text=eps_text)
    return {"model": resolved.spec, "dataset": dataset, "threat_model": threat_model, "eps": eps_text,
            "n_examples": len(x), "data": data_dir or "bundled-subset", "seed": seed, "device": where,
            "bpda": sorted(bpda) if bpda else [], "iterations": list(settings.iterations),
            "verdict": verdict(records), "indicators": records, "advice": advice(records),
            "duration_s": round(time.perf_counter() - t0, 3)}
