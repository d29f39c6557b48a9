"""The evaluation: AutoAttack's stages over pooled survivors, checked, resumable and shared out.

The per-example answers are those of one bare AutoAttack call on the evaluated
images (``stages``, ``attack``); chunk tasks run in this process, in local
worker processes or over torchrun ranks (``execution``), over one eps or an
increasing list of them (a nested robustness curve), and do not depend on how
they were spread out or interrupted.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import platform
import time
import warnings
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from zoo import devices, distributed
from zoo.datasets_meta import NUM_CLASSES, check_dataset
from zoo.errors import ConfigError

from zoo.results import CLEAN_BREAK, RESULT_FORMAT, EvaluationResult

from .adversarial import write_adversarial
from .assembly import assemble
from .beyond import provenance, split_outcomes
from .cost import evaluation_cost, print_profile
from .bpda import find_modules
from .diagnostics import evaluation_diagnostics
from .engine.attack import RANDOMIZED_WARNING, AttackSettings, Job
from .engine.checks import check_logits
from .data import BundledSubsetWarning, load_tensors, locate
from .engine.execution import Tracker, execute
from zoo.locking import output_lock
from .models import ResolvedModel, resolve_model
from .engine.numerics import choose_numerics
from .engine.passes import counting_passes
from .engine.shards import parse_shard, shard_range
from .extra_attacks import BPDA_ATTACK, check_extra_attacks_fit, recorded_settings
from .options import EvaluationOptions
from .repeats import combine
from .engine.stages import StagePlan
from .engine.state import StateDir
from .threat_models import attacks_for, check_threat_model, main_eps_index, resolve_eps_list

class TrainModeWarning(UserWarning):
    """The model was in train mode and has been switched to eval mode."""


def data_fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    """sha256 of the evaluated images and labels."""
    digest = hashlib.sha256(x.contiguous().numpy().tobytes())
    digest.update(y.contiguous().numpy().tobytes())
    return digest.hexdigest()


def default_state_dir(out: str | Path) -> Path:
    """``RESULT.json`` -> ``RESULT.state/`` beside it."""
    out = Path(out)
    return out.with_name(out.stem + ".state")


def _versions() -> dict:
    import pyautoattack

    import zoo
    return {"score-zoo": zoo.__version__, "torch": torch.__version__, "pyautoattack": pyautoattack.__version__,
            "python": platform.python_version()}


def _summarize_warnings(items: list[tuple[str, str]]) -> list[dict]:
    counts = Counter(items)
    return [{"source": s, "message": m, "count": c} for (s, m), c in counts.items()]


def evaluate(model, dataset: str | None = None, threat_model: str | None = None, eps=None,
             n_examples: int | None = None, *, options: EvaluationOptions | None = None,
             **keywords) -> EvaluationResult:
    """Evaluate ``model`` (a spec string or an nn.Module) under AutoAttack; return the result.

    The per-example answers are those of one bare ``AutoAttack(...).run_standard_evaluation(x, y,
    batch_size=batch_size)`` call on the evaluated images (and so of RobustBench's ``benchmark()``):
    after each attack the still-robust examples of the whole evaluation are pooled and attacked in
    chunks of ``batch_size`` (see ``stages`` and ``attack``).

    The keywords are the fields of :class:`EvaluationOptions` (``batch_size``, ``version``, ``seed``,
    ``out``, ``shard``, ``workers``, ``extra_attacks``, ``repeats``, ...), or pass ``options``; the
    keywords override it. ``dataset`` / ``threat_model`` default to what a zoo entry or model directory
    was made for, else cifar10 / Linf; ``eps`` to the standard budget, and may be an increasing list
    (``"1/255,2/255,4/255,8/255"``): a nested robustness curve in one run. ``n_examples`` defaults to
    the whole test split. With ``out`` the result is written there (atomically, under a lock; with a
    curve also ``OUT.curve.png`` / ``.svg``) and progress kept in ``state_dir`` (default
    ``RESULT.state/``); re-running resumes. ``shard="K/N"`` evaluates one slice as a bare call on that
    slice would; under torchrun the ranks share every attack's chunks and rank 0 writes. ``repeats`` K
    > 1 re-evaluates a ``version="rand"`` model K times and keeps each example's worst case (see
    ``repeats``).
    """
    given = {k: v for k, v in (("dataset", dataset), ("threat_model", threat_model), ("eps", eps),
                               ("n_examples", n_examples)) if v is not None}
    if options is not None and not isinstance(options, EvaluationOptions):
        raise ConfigError(f"options must be an EvaluationOptions, got {type(options).__name__}")
    opts = EvaluationOptions.from_keywords(**{**(vars(options) if options else {}), **given, **keywords})
    if opts.repeats > 1:
        return _evaluate_repeats(model, opts)
    where = devices.placement(opts.device)
    with distributed.joined(where) as group:
        return _evaluate(model, opts, where, group)


def _evaluate_repeats(model, opts: EvaluationOptions) -> EvaluationResult:
    """K evaluations of a randomized defense (seeds seed..seed+K-1), combined per example (worst case)."""
    root = Path(opts.state_dir) if opts.state_dir is not None else (
        default_state_dir(opts.out) if opts.out is not None else None)
    runs = [evaluate(model, options=opts.replace(seed=opts.seed + r, repeats=1, out=None, profile=False,
                                                 state_dir=root / f"repeat-{r}" if root is not None else None,
                                                 diagnostics=opts.diagnostics and r == 0))
            for r in range(opts.repeats)]
    result = combine(runs)
    if opts.out is not None:
        result.to_json(opts.out)
    if opts.profile:
        print_profile(result.evaluation.cost)
    return result


@dataclass
class _Run:
    """What an evaluation fixes before its first attack."""

    resolved: ResolvedModel
    x: torch.Tensor
    y: torch.Tensor
    examples: range                 # the evaluated indices (a shard's slice, else all)
    shard: tuple[int, int] | None
    eps_list: list
    settings: AttackSettings
    job: Job
    config: dict                    # what a resumed run must agree with (and the result records)
    worker_list: list[str]
    threads: int | None
    notes: list[tuple[str, str]]    # (source, message) warnings for the result
    checks: dict                    # {name: passes} of the checks made before the run (see ``cost``)


def _test_images(dataset: str, data_dir, n_examples: int | None, notes: list) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The test images and labels, and where they came from (a bundled-subset warning is noted and re-raised)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BundledSubsetWarning)
        x, y = load_tensors(dataset, "test", data_dir, n_examples)
    notes += [("harness", str(w.message)) for w in caught if issubclass(w.category, BundledSubsetWarning)]
    for _, msg in notes:
        warnings.warn(msg, BundledSubsetWarning, stacklevel=5)
    path, official = locate(dataset, "test", data_dir) if data_dir else (None, False)
    data = {"source": str(path.resolve()) if path else "bundled-subset", "official": official,
            "sha256": data_fingerprint(x, y), "leaderboard_eligible": official and n_examples is None}
    return x, y, data


def _prepare(model, opts: EvaluationOptions, where: devices.Placement, group: distributed.Group) -> _Run:
    """Resolve the model, threat model, images, workers and settings; check the model on the first chunk."""
    notes: list[tuple[str, str]] = []
    batch_size, workers, n_iter = opts.batch_size, opts.workers, opts.n_iter
    resolved = resolve_model(model, opts.dataset, opts.threat_model, opts.weights, opts.model_dir)
    dataset = check_dataset(opts.dataset or resolved.defaults.get("dataset", "cifar10"))
    threat_model = check_threat_model(opts.threat_model or resolved.defaults.get("threat_model", "Linf"))
    eps_list = resolve_eps_list(threat_model, opts.eps)
    attack_list = attacks_for(opts.version, threat_model, opts.attacks)
    extra = opts.extra_attacks + ((BPDA_ATTACK,) if opts.bpda else ())
    check_extra_attacks_fit(extra, len(eps_list), threat_model)
    if len(eps_list) > 1 and opts.version == "rand":
        raise ConfigError("an eps list needs a deterministic model, but --version rand is for randomized defenses "
                          "(an example broken at a smaller eps need not stay broken); evaluate one eps per run")
    numerics = choose_numerics(resolved.model, opts.exact, opts.channels_last, opts.tf32, opts.cudnn_benchmark)
    shard = parse_shard(opts.shard)
    if group.enabled and shard:
        raise ConfigError("--shard cannot be combined with torchrun: the ranks already share the work")
    x, y, data = _test_images(dataset, opts.data_dir, opts.n_examples, notes)
    examples = shard_range(len(x), batch_size, shard)
    net = resolved.model
    if net.training:
        msg = "the model was in train mode; switched it to eval mode for the evaluation"
        warnings.warn(msg, TrainModeWarning, stacklevel=4)
        notes.append(("harness", msg))
        net.eval()
    if opts.bpda:
        find_modules(net, opts.bpda)   # a name that matches nothing is one line before any work
    n_chunks = -(-len(examples) // batch_size)
    if workers is not None and workers > n_chunks > 0 and not group.enabled:  # an empty shard needs no worker
        raise ConfigError(f"--workers {workers} is more than the {n_chunks} chunk(s) of the evaluation "
                          f"({len(examples)} examples, --batch-size {batch_size}); use at most {n_chunks} workers "
                          "or a smaller --batch-size")
    worker_list = devices.worker_devices(workers, where, n_chunks, devices.cpu_cores())
    threads = max(1, devices.cpu_cores() // len(worker_list)) if len(worker_list) > 1 else None
    settings = AttackSettings(opts.seed, threat_model, tuple(eps_list), opts.version, tuple(attack_list),
                              NUM_CLASSES[dataset], dataset, n_iter, extra, opts.bpda)
    job = Job(net, x, y, settings, numerics)
    checks = {}
    if len(worker_list) == 1:  # fail on a wrong model before any work
        with job.placed(where.device) as placed_net, torch.no_grad(), counting_passes(placed_net, "model") as meter:
            first = x[examples.start:examples.start + batch_size].to(where.device)
            check_logits(placed_net(first), NUM_CLASSES[dataset], dataset, "the first chunk")
        checks = meter.parts()
    config = {"model": {"spec": resolved.spec, "kind": resolved.kind}, "weights_sha256": resolved.weights_sha256,
              "dataset": dataset, "threat_model": threat_model, "eps": [v for v, _ in eps_list], "n_examples": len(x),
              "data": data, "autoattack": {"version": opts.version, "attacks": attack_list, "n_iter": n_iter},
              "seed": opts.seed, "batch_size": batch_size, "numerics": asdict(numerics),
              "device_kind": devices.device_kind(where.device)}
    if extra:   # only then: the state of a run without extra attacks keeps its config
        config["extra_attacks"] = recorded_settings(extra, n_iter)
    if opts.bpda:   # likewise
        config["bpda"] = list(opts.bpda)
    return _Run(resolved, x, y, examples, shard, eps_list, settings, job, config, worker_list, threads, notes, checks)


def _open_state(run: _Run, group: distributed.Group, out, state_dir, started: str) -> StateDir | None:
    """The resumable state directory (None without ``out`` or ``state_dir``); rank 0 creates it."""
    if out is None and state_dir is None:
        return None
    path = Path(state_dir) if state_dir is not None else default_state_dir(out)
    x, y = run.x, run.y

    def open_state(create: bool) -> StateDir:
        return StateDir(path, run.config, started, run.examples, lambda k: data_fingerprint(x[:k], y[:k]), create)

    state = open_state(True) if group.is_main else None
    group.barrier()  # rank 0 made the state dir before the others open it
    state = state or open_state(False)
    if state.grown_from is not None:
        run.notes.append(("harness", f"grown from an evaluation of the first {state.grown_from} images: images "
                                     f"{state.grown_from}..{len(x) - 1} are a separate segment (attacked as a "
                                     "separate AutoAttack call) and the finished chunks were kept"))
    return state


def _evaluate(model, opts: EvaluationOptions, where: devices.Placement, group: distributed.Group) -> EvaluationResult:
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    run = _prepare(model, opts, where, group)
    out = opts.out
    settings, notes, examples = run.settings, run.notes, run.examples
    lock = output_lock(out) if out is not None and group.is_main else contextlib.nullcontext()
    with lock:
        state = _open_state(run, group, out, opts.state_dir, started)
        started = state.started_at if state is not None else started
        segments = state.segments if state is not None else [(examples.start, examples.stop)]
        plans = [StagePlan(a, b, opts.batch_size, settings.n_levels) for a, b in segments]
        tracker = Tracker(plans, state, settings, opts.progress, position=group.rank)
        try:
            used = execute(run.job, tracker, where, group, run.worker_list, run.threads, opts.workers is not None,
                           notes)
        finally:
            tracker.close()
        records = tracker.records
        outcome, broken_at = outcomes(plans, settings)
        extra_info = None
        if settings.extra:   # AutoAttack's outcomes stay as they are; the extra attacks' are recorded apart
            outcome, broken_at, extra_outcome = split_outcomes(outcome, broken_at, list(settings.extra))
            extra_info = provenance(list(settings.extra), run.config["extra_attacks"], extra_outcome, outcome)
        notes += [("autoattack", m) for r in records.values() for m in r["warnings"]]
        diagnostics = diagnostics_cost = None
        if opts.diagnostics and group.is_main and len(examples):
            with run.job.placed(where.device) as net, counting_passes(net, "diagnostics") as meter:
                eps_value = run.eps_list[main_eps_index(settings.threat_model, run.eps_list)][0]
                # with BPDA the indicators judge the attacks through it (Square then runs on their survivors)
                diagnostics = evaluation_diagnostics(
                    net, run.x[examples.start:examples.stop].to(where.device),
                    run.y[examples.start:examples.stop].to(where.device), eps_value, settings.threat_model,
                    None if opts.bpda else outcome, n_iter=opts.n_iter, bpda=opts.bpda, version=opts.version,
                    seed=opts.seed)
            diagnostics_cost = meter.parts()["diagnostics"]
        earlier_s = sum(r["seconds"] for r in records.values() if r.get("resumed"))
        if tracker.resumed:
            notes.append(("harness", f"resumed: {tracker.resumed} chunk task(s) were finished by an earlier run; "
                                     "duration_s includes their attack time and started_at is the first run's start"))
        shard_info = ({"index": run.shard[0], "count": run.shard[1], "start": examples.start, "stop": examples.stop}
                      if run.shard is not None else None)
        randomized = any(source == "autoattack" and RANDOMIZED_WARNING in m for source, m in notes)
        adversarial = None
        if opts.save_adversarial is not None and group.is_main:
            adversarial = write_adversarial(opts.save_adversarial, records, run.x, run.y, settings, run.resolved.spec)
        label = devices.describe(used, run.threads) + (f" x{group.world_size} processes" if group.enabled else "")
        config = run.config
        result = assemble(
            run.resolved, opts.model_info, outcome=outcome, broken_at=broken_at, eps_list=run.eps_list,
            randomized=randomized, format=RESULT_FORMAT, model=config["model"], dataset=config["dataset"],
            threat_model=config["threat_model"], n_examples=config["n_examples"], data=config["data"],
            autoattack=config["autoattack"], seed=opts.seed, batch_size=opts.batch_size, versions=_versions(), device=label,
            weights_sha256=run.resolved.weights_sha256, started_at=started,
            duration_s=round(time.perf_counter() - t0 + earlier_s, 3), warnings=_summarize_warnings(notes),
            shard=shard_info, numerics=config["numerics"], segments=[list(s) for s in segments],
            execution={"workers": len(used), "threads_per_worker": run.threads or torch.get_num_threads(),
                       "processes": group.world_size},
            adversarial=adversarial, per_example_start=examples.start, extra_attacks=extra_info,
            bpda=list(opts.bpda) or None, diagnostics=diagnostics,
            cost=evaluation_cost(records, settings, run.checks, diagnostics_cost))
        if out is not None and group.is_main:
            result.to_json(out)
            if len(run.eps_list) > 1:
                from .curves import write_result_plots

                write_result_plots(result, out)
    if opts.profile and group.is_main:
        print_profile(result.evaluation.cost)
    return result


def outcomes(plans: list[StagePlan], settings: AttackSettings) -> tuple[list, list]:
    """Per example, in index order: (outcome, broken_at) from the finished plans."""
    outcome, broken_at = [], []
    for plan in sorted(plans, key=lambda p: p.start):
        for level in plan.broken_level().tolist():
            if level < 0:
                outcome.append(None)
                broken_at.append(None)
            elif level == 0:
                outcome.append("clean")
                broken_at.append(CLEAN_BREAK)
            else:
                j, attack = settings.level(level)
                outcome.append(attack)
                broken_at.append(settings.eps[j][1])
    return outcome, broken_at
