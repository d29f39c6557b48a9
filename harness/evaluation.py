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

from .adversarial import write_adversarial
from .beyond import apply_external, check_extra_attacks, extra_settings, provenance, split_outcomes
from .engine.attack import RANDOMIZED_WARNING, AttackSettings, Job
from .engine.checks import check_logits
from .data import BundledSubsetWarning, load_tensors
from .engine.execution import Tracker, execute
from zoo.locking import output_lock
from .models import ResolvedModel, resolve_model
from .engine.numerics import choose_numerics
from .results import CLEAN_BREAK, DESCRIPTIVE_KEYS, RESULT_FORMAT, Evaluation, EvaluationResult, ModelInfo, curve_points, fmt_acc
from .engine.shards import parse_shard, shard_range
from .engine.stages import StagePlan
from .engine.state import StateDir
from .threat_models import attacks_for, check_threat_model, main_eps_index, resolve_eps_list

RANDOMIZED_NOTE = ("AutoAttack flags this model as a randomized defense; RobustBench does not rank randomized "
                   "defenses under the standard version.")


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


def build_model_info(resolved: ResolvedModel | None, dataset: str, eps_text: str, clean: float, robust: float,
                     overrides: dict | None = None, base: ModelInfo | None = None,
                     randomized: bool = False) -> ModelInfo:
    """RobustBench's model_info for a measured result (entry metadata, then user overrides).

    A model AutoAttack flags as randomized is marked ``unreliable`` with a footnote.
    """
    info = ModelInfo(**vars(base)) if base is not None else ModelInfo()
    if base is not None and base.reported == base.autoattack_acc:
        info.reported = ""  # it was only the measured value; re-derive it below
    if resolved is not None:
        info.architecture = info.architecture or resolved.architecture
        entry = resolved.entry
        if entry is not None:
            src = entry.source
            info.link, info.name = src.get("link", ""), src.get("title", "")
            info.authors, info.venue = src.get("authors", ""), src.get("venue", "")
            info.additional_data, info.footnote = entry.additional_data, entry.footnote
            if entry.reported.get("autoattack_acc") is not None and entry.eps == eps_text:
                info.reported = fmt_acc(float(entry.reported["autoattack_acc"]))
    for key, value in (overrides or {}).items():
        if key not in DESCRIPTIVE_KEYS:
            raise ConfigError(f"model info key '{key}' cannot be set; settable keys: {', '.join(DESCRIPTIVE_KEYS)}")
        setattr(info, key, value)
    info.dataset, info.eps = dataset, eps_text
    info.clean_acc, info.autoattack_acc = fmt_acc(clean), fmt_acc(robust)
    info.reported = info.reported or info.autoattack_acc
    if randomized:
        info.unreliable = True
        if RANDOMIZED_NOTE not in (info.footnote or ""):
            info.footnote = f"{info.footnote} {RANDOMIZED_NOTE}" if info.footnote else RANDOMIZED_NOTE
    return info


def evaluate(model, dataset: str | None = None, threat_model: str | None = None, eps=None,
             n_examples: int | None = None, *, batch_size: int = 500, version: str = "standard",
             attacks: list[str] | None = None, seed: int = 0, device: str | None = None, data_dir=None,
             out=None, state_dir=None, shard=None, weights: str | None = None, n_iter: int | None = None,
             model_dir: str | None = None, model_info: dict | None = None, progress: bool = True,
             workers: int | None = None, exact: bool = False, channels_last: bool | None = None,
             tf32: bool | None = None, cudnn_benchmark: bool | None = None,
             save_adversarial=None, extra_attacks: list[str] | None = None, repeats: int = 1) -> EvaluationResult:
    """Evaluate ``model`` (a spec string or an nn.Module) under AutoAttack; return the result.

    The per-example answers are those of one bare ``AutoAttack(...).run_standard_evaluation(x, y,
    batch_size=batch_size)`` call on the evaluated images (and so of RobustBench's ``benchmark()``):
    after each attack the still-robust examples of the whole evaluation are pooled and attacked in
    chunks of ``batch_size`` (see ``stages`` and ``attack``).

    ``dataset`` / ``threat_model`` default to what a zoo entry or model directory
    was made for, else cifar10 / Linf; ``eps`` to the standard budget, and may
    be an increasing list (``"1/255,2/255,4/255,8/255"``): a nested robustness
    curve in one run. ``n_examples`` defaults to the whole test split. With
    ``out`` the result is written there (atomically, under a lock; with a curve
    also ``OUT.curve.png`` / ``.svg``) and progress kept in ``state_dir``
    (default ``RESULT.state/``); re-running resumes. ``shard="K/N"`` evaluates
    one slice as a bare call on that slice would; under torchrun the ranks
    share every attack's chunks and rank 0 writes. ``workers`` local processes
    share the chunks (default: one per core on CPU, one per GPU). ``exact`` turns
    every layout and precision change off; ``channels_last``, ``tf32`` and
    ``cudnn_benchmark`` override the defaults (see ``numerics``).
    ``save_adversarial`` writes the adversarial examples of the broken examples
    to that safetensors file (see ``adversarial``). ``extra_attacks`` (``["malt"]``)
    run after AutoAttack on its survivors and may set ``external`` (see ``beyond``);
    ``repeats`` K > 1 re-evaluates a ``version="rand"`` model K times and keeps
    each example's worst case (see ``repeats``).
    """
    if repeats != 1:
        from .repeats import evaluate_repeats

        return evaluate_repeats(model, dataset, threat_model, eps, n_examples, batch_size=batch_size,
                                version=version, attacks=attacks, seed=seed, device=device, data_dir=data_dir,
                                out=out, state_dir=state_dir, shard=shard, weights=weights, n_iter=n_iter,
                                model_dir=model_dir, model_info=model_info, progress=progress, workers=workers,
                                exact=exact, channels_last=channels_last, tf32=tf32, cudnn_benchmark=cudnn_benchmark,
                                save_adversarial=save_adversarial, extra_attacks=extra_attacks, repeats=repeats)
    where = devices.placement(device)
    with distributed.joined(where) as group:
        return _evaluate(model, dataset, threat_model, eps, n_examples, batch_size=batch_size, version=version,
                         attacks=attacks, seed=seed, where=where, group=group, data_dir=data_dir, out=out,
                         state_dir=state_dir, shard=shard, weights=weights, n_iter=n_iter, model_dir=model_dir,
                         model_info=model_info, progress=progress, workers=workers, exact=exact,
                         channels_last=channels_last, tf32=tf32, cudnn_benchmark=cudnn_benchmark,
                         save_adversarial=save_adversarial, extra_attacks=extra_attacks)


def _check_options(batch_size: int, seed: int, n_iter: int | None, workers: int | None) -> None:
    """One error line for each out-of-range number."""
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed}")
    if n_iter is not None and n_iter < 1:
        raise ConfigError(f"--n-iter must be at least 1, got {n_iter}")


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


def _test_images(dataset: str, data_dir, n_examples: int | None, notes: list) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """The test images and labels, and where they came from (a bundled-subset warning is noted and re-raised)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BundledSubsetWarning)
        x, y = load_tensors(dataset, "test", data_dir, n_examples)
    notes += [("harness", str(w.message)) for w in caught if issubclass(w.category, BundledSubsetWarning)]
    for _, msg in notes:
        warnings.warn(msg, BundledSubsetWarning, stacklevel=5)
    data = {"source": str(Path(data_dir).resolve()) if data_dir else "bundled-subset",
            "sha256": data_fingerprint(x, y), "leaderboard_eligible": data_dir is not None and n_examples is None}
    return x, y, data


def _prepare(model, dataset, threat_model, eps, n_examples, *, batch_size, version, attacks, seed,
             where: devices.Placement, group: distributed.Group, data_dir, shard, weights, n_iter, model_dir, workers,
             exact, channels_last, tf32, cudnn_benchmark, extra_attacks) -> _Run:
    """Resolve the model, threat model, images, workers and settings; check the model on the first chunk."""
    notes: list[tuple[str, str]] = []
    _check_options(batch_size, seed, n_iter, workers)
    resolved = resolve_model(model, dataset, threat_model, weights, model_dir)
    dataset = check_dataset(dataset or resolved.defaults.get("dataset", "cifar10"))
    threat_model = check_threat_model(threat_model or resolved.defaults.get("threat_model", "Linf"))
    eps_list = resolve_eps_list(threat_model, eps)
    attack_list = attacks_for(version, threat_model, attacks)
    extra = check_extra_attacks(extra_attacks, eps_list, threat_model)
    if len(eps_list) > 1 and version == "rand":
        raise ConfigError("an eps list needs a deterministic model, but --version rand is for randomized defenses "
                          "(an example broken at a smaller eps need not stay broken); evaluate one eps per run")
    numerics = choose_numerics(resolved.model, exact, channels_last, tf32, cudnn_benchmark)
    shard = parse_shard(shard)
    if group.enabled and shard:
        raise ConfigError("--shard cannot be combined with torchrun: the ranks already share the work")
    x, y, data = _test_images(dataset, data_dir, n_examples, notes)
    examples = shard_range(len(x), batch_size, shard)
    net = resolved.model
    if net.training:
        msg = "the model was in train mode; switched it to eval mode for the evaluation"
        warnings.warn(msg, TrainModeWarning, stacklevel=4)
        notes.append(("harness", msg))
        net.eval()
    n_chunks = -(-len(examples) // batch_size)
    if workers is not None and workers > n_chunks > 0 and not group.enabled:  # an empty shard needs no worker
        raise ConfigError(f"--workers {workers} is more than the {n_chunks} chunk(s) of the evaluation "
                          f"({len(examples)} examples, --batch-size {batch_size}); use at most {n_chunks} workers "
                          "or a smaller --batch-size")
    worker_list = devices.worker_devices(workers, where, n_chunks, devices.cpu_cores())
    threads = max(1, devices.cpu_cores() // len(worker_list)) if len(worker_list) > 1 else None
    settings = AttackSettings(seed, threat_model, tuple(eps_list), version, tuple(attack_list), NUM_CLASSES[dataset],
                              dataset, n_iter, tuple(extra))
    job = Job(net, x, y, settings, numerics)
    if len(worker_list) == 1:
        with job.placed(where.device) as placed_net, torch.no_grad():  # fail on a wrong model before any work
            first = x[examples.start:examples.start + batch_size].to(where.device)
            check_logits(placed_net(first), NUM_CLASSES[dataset], dataset, "the first chunk")
    config = {"model": {"spec": resolved.spec, "kind": resolved.kind}, "weights_sha256": resolved.weights_sha256,
              "dataset": dataset, "threat_model": threat_model, "eps": [v for v, _ in eps_list], "n_examples": len(x),
              "data": data, "autoattack": {"version": version, "attacks": attack_list, "n_iter": n_iter},
              "seed": seed, "batch_size": batch_size, "numerics": asdict(numerics),
              "device_kind": devices.device_kind(where.device)}
    if extra:   # only then: the state of a run without extra attacks keeps its config
        config["extra_attacks"] = extra_settings(extra, n_iter)
    return _Run(resolved, x, y, examples, shard, eps_list, settings, job, config, worker_list, threads, notes)


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


def _evaluate(model, dataset, threat_model, eps, n_examples, *, batch_size, version, attacks, seed,
              where: devices.Placement, group: distributed.Group, data_dir, out, state_dir, shard, weights, n_iter,
              model_dir, model_info, progress, workers, exact, channels_last, tf32, cudnn_benchmark,
              save_adversarial, extra_attacks=None) -> EvaluationResult:
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    run = _prepare(model, dataset, threat_model, eps, n_examples, batch_size=batch_size, version=version,
                   attacks=attacks, seed=seed, where=where, group=group, data_dir=data_dir, shard=shard,
                   weights=weights, n_iter=n_iter, model_dir=model_dir, workers=workers, exact=exact,
                   channels_last=channels_last, tf32=tf32, cudnn_benchmark=cudnn_benchmark, extra_attacks=extra_attacks)
    settings, notes, examples = run.settings, run.notes, run.examples
    lock = output_lock(out) if out is not None and group.is_main else contextlib.nullcontext()
    with lock:
        state = _open_state(run, group, out, state_dir, started)
        started = state.started_at if state is not None else started
        segments = state.segments if state is not None else [(examples.start, examples.stop)]
        plans = [StagePlan(a, b, batch_size, settings.n_levels) for a, b in segments]
        tracker = Tracker(plans, state, settings, progress, position=group.rank)
        try:
            used = execute(run.job, tracker, where, group, run.worker_list, run.threads, workers is not None, notes)
        finally:
            tracker.close()
        records = tracker.records
        outcome, broken_at = outcomes(plans, settings)
        extra_info = None
        if settings.extra:   # AutoAttack's outcomes stay as they are; the extra attacks' are recorded apart
            outcome, broken_at, extra_outcome = split_outcomes(outcome, broken_at, list(settings.extra))
            extra_info = provenance(list(settings.extra), run.config["extra_attacks"], extra_outcome, outcome)
        notes += [("autoattack", m) for r in records.values() for m in r["warnings"]]
        earlier_s = sum(r["seconds"] for r in records.values() if r.get("resumed"))
        if tracker.resumed:
            notes.append(("harness", f"resumed: {tracker.resumed} chunk task(s) were finished by an earlier run; "
                                     "duration_s includes their attack time and started_at is the first run's start"))
        shard_info = ({"index": run.shard[0], "count": run.shard[1], "start": examples.start, "stop": examples.stop}
                      if run.shard is not None else None)
        randomized = any(source == "autoattack" and RANDOMIZED_WARNING in m for source, m in notes)
        adversarial = None
        if save_adversarial is not None and group.is_main:
            adversarial = write_adversarial(save_adversarial, records, run.x, run.y, settings, run.resolved.spec)
        label = devices.describe(used, run.threads) + (f" x{group.world_size} processes" if group.enabled else "")
        config = run.config
        result = assemble(
            run.resolved, model_info, outcome=outcome, broken_at=broken_at, eps_list=run.eps_list,
            randomized=randomized, format=RESULT_FORMAT, model=config["model"], dataset=config["dataset"],
            threat_model=config["threat_model"], n_examples=config["n_examples"], data=config["data"],
            autoattack=config["autoattack"], seed=seed, batch_size=batch_size, versions=_versions(), device=label,
            weights_sha256=run.resolved.weights_sha256, started_at=started,
            duration_s=round(time.perf_counter() - t0 + earlier_s, 3), warnings=_summarize_warnings(notes),
            shard=shard_info, numerics=config["numerics"], segments=[list(s) for s in segments],
            execution={"workers": len(used), "threads_per_worker": run.threads or torch.get_num_threads(),
                       "processes": group.world_size},
            adversarial=adversarial, per_example_start=examples.start, extra_attacks=extra_info)
        if out is not None and group.is_main:
            result.to_json(out)
            if len(run.eps_list) > 1:
                from .curves import write_result_plots

                write_result_plots(result, out)
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


def assemble(resolved: ResolvedModel | None, model_info: dict | None, *, outcome: list, broken_at: list,
             eps_list: list[tuple[float, str]], randomized: bool, per_example_start: int,
             base: ModelInfo | None = None, **fields) -> EvaluationResult:
    """The result from per-example outcomes: the curve, the accuracies at the main eps, model_info."""
    clean, curve = curve_points(outcome, broken_at, eps_list, fields["autoattack"]["attacks"])
    main = curve[main_eps_index(fields["threat_model"], eps_list)]
    evaluation = Evaluation(eps=main["eps"], eps_text=main["eps_text"], clean_accuracy=clean,
                            robust_accuracy=main["robust_accuracy"], robust_accuracy_after=main["robust_accuracy_after"],
                            per_example={"start": per_example_start, "outcome": outcome, "broken_at": broken_at},
                            curve=curve, randomized=randomized, **fields)
    info = build_model_info(resolved, fields["dataset"], main["eps_text"], clean, main["robust_accuracy"],
                            model_info, base=base, randomized=randomized)
    if evaluation.extra_attacks or info.external:
        apply_external(info, evaluation)
    return EvaluationResult(info, evaluation)
