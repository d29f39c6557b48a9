"""`score-train toy`: the paper's toy demonstration (its Figures 1 and 2), run as generate_toy_demo.py runs it.

For each objective (training/toy/objectives.py) a small MLP learns P(y|x) of
two 1-D Gaussians (training/toy/problem.py) from the exact posterior: 500
iterations of Adam on a fresh draw of 60,000 points, R_SCORE and R_standard
recorded after every step; C is computed once before training; at the end the
model is compared with P*(y=0|x) at 10,000 points uniform in [-10, 10]. The
run writes ``toy.json`` (settings, C, final figures, curves),
``posteriors.json`` (the final test points) and the figures
(training/toy/figures.py).

The objectives are independent runs from the same initial model and the same
samples, so they go to worker processes, one CPU thread each: on one thread
every row of a matrix product gets the same bits whatever the batch holds
(what makes the attack's shortcuts exact, training/toy/attacks.py), and the
numbers do not depend on the number of workers or cores.

Each objective's state (model, optimiser, random streams, curves) is saved to
``RUN_DIR/checkpoints/<objective>.pt`` every ten iterations and at its end,
atomically; ``resume=True`` continues from there and gives the numbers of an
uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import queue
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

import zoo
from zoo.errors import ConfigError
from zoo.fileio import atomic_write_json

from ..run_state import check_same_config, load_checkpoint, save_checkpoint
from .figures import FIGURES, write_figures
from .objectives import ToyMLP, c_draw, measure, prob, training_loss, uniform_start
from .problem import Problem, seeded
from .settings import LABELS, ToySettings

FORMAT = "score-train-toy/1"
RESULT_NAME = "toy.json"
POSTERIORS_NAME = "posteriors.json"  # P*(y=0|x) and each model's P(y=0|x) at the final test points
CHECKPOINTS = "checkpoints"  # RUN_DIR/checkpoints/<objective>.pt and the run's settings.json
CHECKPOINT_EVERY = 10  # iterations


@contextlib.contextmanager
def one_thread():
    """Run torch on one CPU thread inside the block (the results then do not depend on the machine's cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Start:
    """The initial model and random states after the C draws (shared by every objective), and C under each distance."""

    weights: dict
    sample_state: torch.Tensor
    attack_state: torch.Tensor
    c: dict = field(default_factory=dict)


@dataclass
class Job:
    """One objective's run, from the shared start; ``checkpoint`` is its file (None: no checkpoints),
    ``stop_after`` its last iteration in this launch (None: the end)."""

    objective: str
    settings: ToySettings
    start: Start
    checkpoint: Path | None = None
    stop_after: int | None = None


def prepare(s: ToySettings) -> Start:
    """Initial model and C, consuming the random streams as the script does before its training loop."""
    problem = Problem(s.counts)
    model, samples, attacks = seeded(s.seed, lambda: ToyMLP(s.width))
    totals = {s.distance: 0.0, s.measure_distance: 0.0}
    for _ in range(s.c_draws):
        x = problem.sample(samples)
        start = uniform_start(x, s.eps, attacks)  # one start per draw; C under D_C reuses it
        for name in totals:
            totals[name] = totals[name] + c_draw(problem, x, start, name, s)
    c = {name: (total / s.c_draws).item() for name, total in totals.items()}
    return Start({k: v.clone() for k, v in model.state_dict().items()}, samples.get_state(), attacks.get_state(), c)


def train_objective(job: Job, tick=None) -> dict | None:
    """Train and measure one objective from ``job`` (or from its checkpoint); ``tick()`` is called after each
    iteration. Returns None when the launch stops (``job.stop_after``) before the last iteration."""
    s, problem = job.settings, Problem(job.settings.counts)
    model = ToyMLP(s.width)
    model.load_state_dict(job.start.weights)
    model.train()
    samples, attacks = torch.Generator(), torch.Generator()
    samples.set_state(job.start.sample_state)
    attacks.set_state(job.start.attack_state)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=0)
    curves = {"train_loss": [], "R_SCORE": [], "R_standard": []}
    done = 0
    if job.checkpoint is not None and job.checkpoint.is_file():
        state = load_checkpoint(job.checkpoint)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        samples.set_state(state["samples"])
        attacks.set_state(state["attacks"])
        curves, done = state["curves"], state["iteration"]
    last = s.iterations if job.stop_after is None else min(job.stop_after, s.iterations)
    for it in range(done + 1, last + 1):
        x = problem.sample(samples)
        opt.zero_grad()
        loss, _ = training_loss(job.objective, model, problem, x, attacks, s)
        loss.backward()
        opt.step()
        r_score, r_standard = measure(model, problem, x, attacks, s)
        for key, value in zip(curves, (loss.item(), r_score, r_standard)):
            curves[key].append(value)
        if job.checkpoint is not None and (it % CHECKPOINT_EVERY == 0 or it == last):
            save_checkpoint(job.checkpoint, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                             "samples": samples.get_state(), "attacks": attacks.get_state(),
                                             "curves": curves, "iteration": it})
        if tick:
            tick()
    if last < s.iterations:
        return None
    model.eval()
    x_test = problem.test_points(samples)
    with torch.no_grad():
        truth, learned = problem.posterior(x_test)[:, 0], prob(model, x_test)[:, 0]
    error = (learned - truth).abs()
    final = {"mean_abs_error": error.mean().item(), "max_abs_error": error.max().item(),
             "R_SCORE": curves["R_SCORE"][-1], "R_standard": curves["R_standard"][-1],
             "train_loss": curves["train_loss"][-1]}
    return {"objective": job.objective, "final": final, "curves": curves,
            "x_test": x_test[:, 0].tolist(), "learned": learned.tolist(), "truth": truth.tolist()}


_TICKS: queue.Queue | None = None


def _worker_init(ticks) -> None:
    global _TICKS
    _TICKS = ticks
    torch.set_num_threads(1)


def _worker_run(job: Job) -> dict | None:
    return train_objective(job, tick=lambda: _TICKS.put(job.objective))


def _run_jobs(jobs: list[Job], workers: int, bar: tqdm) -> list[dict | None]:
    if workers == 1:
        with one_thread():
            return [train_objective(job, tick=lambda: bar.update(1)) for job in jobs]
    ctx = multiprocessing.get_context("spawn")
    ticks = ctx.Queue()
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(ticks,)) as pool:
        futures = [pool.submit(_worker_run, job) for job in jobs]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for f in done:
                f.result()  # a worker's error, raised here
            with contextlib.suppress(queue.Empty):
                while True:
                    ticks.get_nowait()
                    bar.update(1)
        bar.update(bar.total - bar.n)  # ticks still in the queue when the last run returned
        return [f.result() for f in futures]


def _prepare_out(out: Path, s: ToySettings, resume: bool) -> None:
    """Create the run directory, or check that it may be resumed with ``s``; write the run's settings."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a run directory")
    settings_path = out / CHECKPOINTS / "settings.json"
    if settings_path.is_file() and not resume:
        raise ConfigError(f"{out} already holds a toy run; pass --resume to continue it, or choose a new --out")
    if resume and not settings_path.is_file():
        raise ConfigError(f"cannot resume {out}: there is no toy run there; check the path, or leave out --resume "
                          "to start a new run")
    if settings_path.is_file():
        check_same_config(settings_path, json.loads(json.dumps(asdict(s))), out, "different settings",
                          "use the original options, or a new --out")
    (out / CHECKPOINTS).mkdir(parents=True, exist_ok=True)  # now, not after the training
    atomic_write_json(settings_path, asdict(s))


def _iterations_done(path: Path) -> int:
    return load_checkpoint(path)["iteration"] if path.is_file() else 0


def run_toy(settings: ToySettings, out_dir: str | Path, workers: int | None = None, progress: bool = True,
            resume: bool = False, stop_after: int | None = None) -> dict | None:
    """Run the demonstration; write toy.json, posteriors.json and the figures into ``out_dir``; return the summary.

    ``workers`` processes (default: one per objective) train the objectives
    side by side; the results do not depend on it. ``resume`` continues the
    run in ``out_dir`` from its checkpoints (same settings); ``stop_after``
    ends this launch after that many iterations of each objective (checkpoints
    written, None returned) unless the run ends first.
    """
    s = settings.checked()
    workers = len(s.objectives) if workers is None else workers
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, not {workers}")
    if stop_after is not None and stop_after < 1:
        raise ConfigError(f"stop-after must be at least 1, not {stop_after}")
    out = Path(out_dir)
    _prepare_out(out, s, resume)
    with one_thread():
        start = prepare(s)
    # the three attacking objectives first: they take about twice as long as Standard
    order = sorted(s.objectives, key=lambda o: o == "Standard")
    jobs = [Job(o, s, start, out / CHECKPOINTS / f"{o}.pt", stop_after) for o in order]
    last = s.iterations if stop_after is None else min(stop_after, s.iterations)
    done = sum(min(_iterations_done(job.checkpoint), last) for job in jobs)
    with tqdm(total=last * len(jobs), initial=done, desc="toy " + ",".join(order), unit="it", file=sys.stderr,
              disable=not progress, dynamic_ncols=True) as bar:
        results = _run_jobs(jobs, min(workers, len(jobs)), bar)
    if last < s.iterations:
        return None
    runs = {r["objective"]: r for r in results}
    runs = {o: runs[o] for o in s.objectives}
    first = runs[s.objectives[0]]
    posteriors = {"x": first["x_test"], "truth": first["truth"],
                  "learned": {o: r["learned"] for o, r in runs.items()}}
    summary = _summary(s, start.c, runs)
    atomic_write_json(out / POSTERIORS_NAME, posteriors)
    atomic_write_json(out / RESULT_NAME, summary)
    write_figures(out, summary, posteriors)
    return summary


def _round(values: list[float]) -> list[float]:
    return [float(f"{v:.6g}") for v in values]


def _summary(s: ToySettings, c: dict, runs: dict) -> dict:
    settings = asdict(s)
    settings["attack_step_size"] = s.alpha
    settings["test_points"] = len(next(iter(runs.values()))["x_test"])
    return {
        "format": FORMAT,
        "settings": settings,
        "C": {"distance": s.distance, "value": c[s.distance],
              "note": "official compute_C: the training distance, mean over c_draws draws"},
        "C_measure": {"distance": s.measure_distance, "value": c[s.measure_distance],
                      "note": "the same draws and starts under the measuring distance (that of R_SCORE, R_standard)"},
        "objectives": {o: {"label": LABELS[o], "final": r["final"],
                           "curves": {k: _round(v) for k, v in r["curves"].items()}} for o, r in runs.items()},
        "figures": list(FIGURES),
        "posteriors": POSTERIORS_NAME,
        "versions": {"score-zoo": zoo.__version__, "torch": torch.__version__},
    }
