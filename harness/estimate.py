"""``score-harness estimate``: an evaluation's passes and time, projected from a small sample of it.

The sample is the run's first images (default 1 % of them, at least one chunk of
``batch_size``), evaluated with the run's own options (nothing written). Its
``evaluation.cost`` gives, per stage (the clean pass, each attack), the images
that entered the stage, their passes and seconds. The projection keeps each
stage's passes and seconds per entering image and scales the images: the run's
size times the share of the sample that entered the stage. Which examples
survive to the later attacks is what varies from sample to run, so the range
takes each share's 95 % Clopper-Pearson interval on the sample; a stage no
sample image reached costs nothing in the projection and, at the range's top,
the most expensive measured attack's seconds per image. The harness's
determinism check scales with the run's images (its other checks are made once),
the indicators cost what they cost on the sample
(a fixed 32 examples; scaled up when the sample is smaller), and the time
outside every stage (loading the model and images) is added as measured.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from zoo import devices
from zoo.errors import ConfigError

from .diagnostics import IndicatorSettings
from .engine.passes import KINDS, no_passes
from .options import EvaluationOptions
from .verification import clopper_pearson

SCALED_CHECKS = ("determinism",)   # made on every attacked image; the others once per run or segment
DEFAULT_SHARE = 0.01
DIAGNOSTICS_EXAMPLES = IndicatorSettings().n_examples   # what the indicators of a run cost does not grow past


def sample_size(n_run: int, batch_size: int, sample: int | None, workers: int = 1) -> int:
    """The sample's images: ``sample`` if given (at most the run), else 1 % of the run, at least one chunk per
    worker of the run (so that the sample runs on the run's worker layout)."""
    if n_run < 1:
        raise ConfigError("the run evaluates no images; nothing to estimate")
    if sample is None:
        return min(n_run, max(batch_size * workers, math.ceil(DEFAULT_SHARE * n_run)))
    if sample < 1:
        raise ConfigError(f"--sample must be at least 1, got {sample}")
    if sample > n_run:
        raise ConfigError(f"--sample {sample} is more than the {n_run} images of the run; sample at most {n_run}")
    return sample


def _passes(record: dict, scale: float = 1.0) -> dict:
    return {k: record.get(k, 0) * scale for k in KINDS}


@dataclass
class StageProjection:
    """One stage of the projection: what the sample measured and what the run will take."""

    stage: str
    eps: str | None
    sample_images: int
    images: tuple[float, float, float]       # projected images entering the stage (low, expected, high)
    passes_per_image: dict
    seconds_per_image: float | None
    seconds: tuple[float, float, float]

    def to_dict(self) -> dict:
        return dict(vars(self))


def busiest(images: float, batch_size: int, workers: int) -> float:
    """The images of a stage the busiest worker attacks: the stage's chunks of ``batch_size`` dealt out to
    ``workers``, so its wall time (never less as the stage grows)."""
    return min(images, math.ceil(math.ceil(images / batch_size) / workers) * batch_size)


def _run_checks(checks: dict, n_run: int, n_sample: int, workers: int) -> dict:
    """The run's checks from the sample's: the determinism check scales with the run's images (shared by its
    workers, like the stages); the others are made once."""
    out = no_passes()
    for name, part in checks.items():
        scale, sharing = (n_run / n_sample, workers) if name in SCALED_CHECKS else (1.0, 1)
        for kind in KINDS:
            out[kind] += part.get(kind, 0) * scale
        out["seconds"] += part.get("seconds", 0.0) * scale / sharing
    return out


def project(cost: dict, n_sample: int, n_run: int, overhead_s: float, batch_size: int, workers: int = 1,
            diagnostics_examples: int = DIAGNOSTICS_EXAMPLES) -> dict:
    """The run's passes and wall seconds from the sample's ``cost`` (``evaluation.cost``; see the module
    docstring). A stage's seconds are summed over the workers that ran its chunks; its wall time is that of the
    busiest worker."""
    rates = {s["stage"]: s["seconds"] / s["images"] for s in cost["stages"] if s["images"]}
    top = max((r for stage, r in rates.items() if stage != "clean"), default=0.0)
    stages = []
    for s in cost["stages"]:
        k = s["images"]
        low, high = clopper_pearson(k, n_sample)
        images = (n_run * low, n_run * k / n_sample, n_run * high)
        rate = s["seconds"] / k if k else None
        seconds = tuple(busiest(i, batch_size, workers) * (rate if rate is not None else (top if j == 2 else 0.0))
                        for j, i in enumerate(images))
        stages.append(StageProjection(s["stage"], s.get("eps"), k, images,
                                      _passes(s, 1 / k) if k else _passes({}), rate, seconds))
    checks = _run_checks(cost.get("checks") or {}, n_run, n_sample, workers)
    diag = cost.get("diagnostics") or {}
    scale = diagnostics_examples / min(diagnostics_examples, n_sample)
    diag = {**_passes(diag, scale), "seconds": diag.get("seconds", 0.0) * scale}
    seconds = [overhead_s + sum(st.seconds[j] for st in stages) + checks["seconds"] + diag["seconds"]
               for j in range(3)]
    passes = {kind: round(sum(st.images[1] * st.passes_per_image[kind] for st in stages) + checks[kind] + diag[kind])
              for kind in KINDS}
    return {"n_sample": n_sample, "n_run": n_run, "stages": [st.to_dict() for st in stages], "checks": checks,
            "diagnostics": diag, "overhead_s": overhead_s, "passes": passes,
            "seconds": dict(zip(("low", "expected", "high"), seconds))}


def estimate(model, *, sample: int | None = None, options: EvaluationOptions | None = None, **keywords) -> dict:
    """Evaluate a sample of the run ``options`` describes and project the whole run (see the module docstring)."""
    from .data import load_tensors
    from .evaluation import evaluate

    opts = EvaluationOptions.from_keywords(**{**(vars(options) if options else {}), **keywords})
    if opts.shard is not None:
        raise ConfigError("estimate projects a whole run, not a shard; drop --shard (a shard of N takes about 1/N)")
    resolved_n = opts.n_examples
    t0 = time.perf_counter()
    if resolved_n is None:   # the whole split of the dataset the model was made for
        from .models import resolve_model

        resolved = resolve_model(model, opts.dataset, opts.threat_model, opts.weights, opts.model_dir)
        dataset = opts.dataset or resolved.defaults.get("dataset", "cifar10")
        resolved_n = len(load_tensors(dataset, "test", opts.data_dir)[1])
    run_chunks = math.ceil(resolved_n / opts.batch_size)
    workers = len(devices.worker_devices(opts.workers, devices.placement(opts.device), run_chunks,
                                         devices.cpu_cores()))
    n_sample = sample_size(resolved_n, opts.batch_size, sample, workers)
    runs = opts.repeats
    sample_opts = opts.replace(n_examples=n_sample, out=None, state_dir=None, save_adversarial=None, repeats=1)
    result = evaluate(model, options=sample_opts)
    wall = time.perf_counter() - t0
    cost = result.evaluation.cost
    sample_workers = result.evaluation.execution["workers"]
    # the time outside the stages, checks and indicators: the sample's wall time less their modelled wall time
    modelled = project(cost, n_sample, n_sample, 0.0, opts.batch_size, sample_workers,
                       diagnostics_examples=min(DIAGNOSTICS_EXAMPLES, n_sample))["seconds"]["expected"]
    report = project(cost, n_sample, resolved_n, max(0.0, wall - modelled), opts.batch_size, workers)
    if runs > 1:   # --repeats K: K runs of the same cost (the indicators run once)
        for key in ("low", "expected", "high"):
            report["seconds"][key] = runs * report["seconds"][key] - (runs - 1) * report["diagnostics"]["seconds"]
        report["passes"] = {k: runs * v - (runs - 1) * round(report["diagnostics"][k]) for k, v in
                            report["passes"].items()}
    report.update(model=result.evaluation.model["spec"], repeats=runs, device=result.evaluation.device, workers=workers,
                  sample_seconds=round(wall, 3),
                  method="per stage: passes and seconds per entering image from the sample; images entering a "
                         "stage = run size x the sample's share (range: its 95 % Clopper-Pearson interval)")
    return report


def describe(report: dict) -> list[str]:
    """The projection as lines of text: a table per stage, then the totals and how they were made."""
    lines = [f"{'stage':<12} {'eps':<8} {'sample in':>9} {'run in (range)':>22} {'passes/img':>11} {'s/img':>8} "
             f"{'seconds (range)':>24}"]
    for st in report["stages"]:
        lo, mid, hi = st["images"]
        slo, smid, shi = st["seconds"]
        per = st["passes_per_image"]
        spi = f"{st['seconds_per_image']:.4f}" if st["seconds_per_image"] is not None else "-"
        lines.append(f"{st['stage']:<12} {st['eps'] or '':<8} {st['sample_images']:>9} "
                     f"{f'{mid:.0f} ({lo:.0f}-{hi:.0f})':>22} {sum(per.values()):>11.1f} {spi:>8} "
                     f"{f'{smid:.1f} ({slo:.1f}-{shi:.1f})':>24}")
    for name in ("checks", "diagnostics"):
        part = report[name]
        lines.append(f"{name:<12} {'':<8} {'':>9} {'':>22} {'':>11} {'':>8} {part['seconds']:>24.1f}")
    p, s = report["passes"], report["seconds"]
    repeats = f" x{report['repeats']} repeats" if report["repeats"] > 1 else ""
    lines.append(f"projected for {report['n_run']} images{repeats}: {p['forward']:,} forward, "
                 f"{p['forward_grad']:,} forward with grad, {p['backward']:,} backward image passes; "
                 f"{s['expected']:.0f} s ({s['low']:.0f} to {s['high']:.0f} s) on {report['device']}")
    lines.append(f"from a sample of {report['n_sample']} images ({report['sample_seconds']:.1f} s); "
                 + report["method"])
    return lines
