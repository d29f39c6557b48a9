"""The evaluation: clean accuracy, then AutoAttack batch by batch, checked and resumable.

Batches run in this process or in local worker processes (``workers``), and
over one eps or an increasing list of them (a robustness curve, nested: see
``attack``). Per-example results do not depend on interruptions, shards,
ranks or workers.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import platform
import time
import warnings
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from zoo.datasets_meta import NUM_CLASSES, check_dataset
from zoo.errors import ConfigError

from . import distributed
from .attack import RANDOMIZED_WARNING, AttackSettings, BatchJob, without_examples
from .checks import check_logits
from .data import BundledSubsetWarning, load_tensors
from .devices import choose_numerics, device_label, resolve_device, threads_per_worker, worker_devices
from .locking import output_lock
from .models import ResolvedModel, resolve_model
from .results import (DESCRIPTIVE_KEYS, RESULT_FORMAT, Evaluation, EvaluationResult, ModelInfo, curve_points,
                      first_breaks, fmt_acc)
from .state import StateDir
from .threat_models import attacks_for, check_threat_model, main_eps_index, resolve_eps_list
from .workers import UnpicklableModelError, WorkerError, run_workers

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
             tf32: bool | None = None, cudnn_benchmark: bool | None = None) -> EvaluationResult:
    """Evaluate ``model`` (a spec string or an nn.Module) under AutoAttack; return the result.

    ``dataset`` / ``threat_model`` default to what a zoo entry or model directory
    was made for, else cifar10 / Linf; ``eps`` to the standard budget, and may
    be an increasing list (``"1/255,2/255,4/255,8/255"``): a nested robustness
    curve in one run. ``n_examples`` defaults to the whole test split. With
    ``out`` the result is written there (atomically, under a lock; with a curve
    also ``OUT.curve.png`` / ``.svg``) and progress kept in ``state_dir``
    (default ``RESULT.state/``); re-running resumes. ``shard="K/N"`` evaluates
    one slice; under torchrun the ranks split the work and rank 0 writes.
    ``workers`` local processes share the batches (default: one per core on
    CPU, one per GPU). ``exact`` turns every layout and precision change off;
    ``channels_last``, ``tf32`` and ``cudnn_benchmark`` override the defaults
    (see ``devices.choose_numerics``).
    """
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    notes: list[tuple[str, str]] = []
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    device = resolve_device(device)
    resolved = resolve_model(model, dataset, threat_model, weights, model_dir)
    dataset = check_dataset(dataset or resolved.defaults.get("dataset", "cifar10"))
    threat_model = check_threat_model(threat_model or resolved.defaults.get("threat_model", "Linf"))
    eps_list = resolve_eps_list(threat_model, eps)
    attack_list = attacks_for(version, threat_model, attacks)
    if len(eps_list) > 1 and version == "rand":
        raise ConfigError("an eps list needs a deterministic model, but --version rand is for randomized defenses "
                          "(an example broken at a smaller eps need not stay broken); evaluate one eps per run")
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed}")
    if n_iter is not None and n_iter < 1:
        raise ConfigError(f"--n-iter must be at least 1, got {n_iter}")
    numerics = choose_numerics(resolved.model, exact, channels_last, tf32, cudnn_benchmark)
    shard = distributed.parse_shard(shard)
    world = distributed.torchrun_world()
    if world and shard:
        raise ConfigError("--shard cannot be combined with torchrun: the ranks already split the work")
    if world:
        device = distributed.rank_device(device)
        distributed.init_process_group(device)
        shard = world
    rank0 = not world or world[0] == 0

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BundledSubsetWarning)
        x, y = load_tensors(dataset, "test", data_dir, n_examples)
    notes += [("harness", str(w.message)) for w in caught if issubclass(w.category, BundledSubsetWarning)]
    for _, msg in notes:
        warnings.warn(msg, BundledSubsetWarning, stacklevel=2)
    n = len(x)
    data = {"source": str(Path(data_dir).resolve()) if data_dir else "bundled-subset",
            "sha256": data_fingerprint(x, y), "leaderboard_eligible": data_dir is not None and n_examples is None}
    net = resolved.model
    if net.training:
        msg = "the model was in train mode; switched it to eval mode for the evaluation"
        warnings.warn(msg, TrainModeWarning, stacklevel=2)
        notes.append(("harness", msg))
        net.eval()
    batches = distributed.shard_batches(-(-n // batch_size), shard)
    n_here = min(batches.stop * batch_size, n) - min(batches.start * batch_size, n)  # this shard's examples
    devices = worker_devices(workers, device, len(batches), batch_size, n_here, world is not None)
    settings = AttackSettings(seed, threat_model, tuple(eps_list), version, tuple(attack_list), NUM_CLASSES[dataset],
                              dataset, n_iter)
    job = BatchJob(net, x, y, batch_size, settings, numerics)
    if len(devices) == 1:
        with job.placed(device) as placed_net, torch.no_grad():  # fail on a wrong model before any work starts
            check_logits(placed_net(x[:batch_size].to(device)), NUM_CLASSES[dataset], dataset, "the first batch")
    autoattack = {"version": version, "attacks": attack_list, "n_iter": n_iter}
    config = {"model": {"spec": resolved.spec, "kind": resolved.kind}, "weights_sha256": resolved.weights_sha256,
              "dataset": dataset, "threat_model": threat_model, "eps": [v for v, _ in eps_list], "n_examples": n,
              "data": data, "autoattack": autoattack, "seed": seed, "batch_size": batch_size,
              "numerics": asdict(numerics)}

    lock = output_lock(out) if out is not None and rank0 else contextlib.nullcontext()
    with lock:
        if out is not None or state_dir is not None:
            path = Path(state_dir) if state_dir is not None else default_state_dir(out)
            def prefix_sha256(k: int) -> str:
                return data_fingerprint(x[:k], y[:k])

            if rank0:
                job.state = StateDir(path, config, started, prefix_sha256)
            distributed.barrier()
            if not rank0:
                job.state = StateDir(path, config, started, prefix_sha256)
            started = job.state.started_at
            if job.state.grown_from is not None:
                notes.append(("harness", f"grown from an evaluation of the first {job.state.grown_from} images: "
                                         "its finished batches were kept"))
        records, devices = _run_batches(job, batches, devices, device, notes, progress, world, workers is not None)
        per_eps = [[o for b in batches for o in records[b][j]["outcome"]] for j in range(len(eps_list))]
        outcome, broken_at = first_breaks(per_eps, [t for _, t in eps_list])
        notes += [("autoattack", m) for b in batches for r in records[b] for m in r["warnings"]]
        earlier_s = sum(r["seconds"] for b in batches for r in records[b] if r.get("resumed"))
        resumed = sum(any(r.get("resumed") for r in records[b]) for b in batches)
        start = min(batches.start * batch_size, n)
        shard_info = None
        if world:
            parts = distributed.all_gather((start, outcome, broken_at, notes, earlier_s, resumed))
            parts.sort(key=lambda p: p[0])
            outcome = [o for p in parts for o in p[1]]
            broken_at = [b for p in parts for b in p[2]]
            notes = [note for p in parts for note in p[3]]
            earlier_s = max(p[4] for p in parts)  # the ranks ran side by side
            resumed = sum(p[5] for p in parts)
            start = 0
        elif shard is not None:
            shard_info = {"index": shard[0], "count": shard[1], "start": start, "stop": start + len(outcome)}
        if resumed:
            notes.append(("harness", f"resumed: {resumed} batch(es) were (partly) finished by an earlier run; "
                                     "duration_s includes their attack time and started_at is the first run's start"))
        randomized = any(source == "autoattack" and RANDOMIZED_WARNING in m for source, m in notes)
        threads = threads_per_worker(len(devices))
        result = assemble(
            resolved, model_info, outcome=outcome, broken_at=broken_at, eps_list=eps_list, randomized=randomized,
            format=RESULT_FORMAT, model=config["model"], dataset=dataset, threat_model=threat_model, n_examples=n,
            data=data, autoattack=autoattack, seed=seed, batch_size=batch_size, versions=_versions(),
            device=device_label(device, devices, threads) + (f" x{world[1]} processes" if world else ""),
            weights_sha256=resolved.weights_sha256, started_at=started,
            duration_s=round(time.perf_counter() - t0 + earlier_s, 3), warnings=_summarize_warnings(notes),
            shard=shard_info, numerics=asdict(numerics),
            execution={"workers": len(devices), "threads_per_worker": threads or torch.get_num_threads()},
            per_example_start=start)
        if out is not None and rank0:
            result.to_json(out)
            if len(eps_list) > 1:
                from .curves import write_result_plots

                write_result_plots(result, out)
    return result


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
    return EvaluationResult(info, evaluation)


def _run_batches(job: BatchJob, batches: range, devices: list[str], device: str, notes: list, progress: bool,
                 world, workers_requested: bool) -> tuple[dict[int, list[dict]], list[str]]:
    """Attack every batch of ``batches`` (resuming finished ones); return records per batch and the devices used.

    A model that cannot be sent to worker processes is evaluated in this one,
    with a note, unless workers were asked for explicitly.
    """
    eps_count = len(job.settings.eps)
    records: dict[int, list[dict]] = {}
    pending = []
    for b in batches:
        n_b = min((b + 1) * job.batch_size, len(job.x)) - b * job.batch_size
        saved = [job.state.load(b, j, n_b) for j in range(eps_count)] if job.state else [None]
        if all(r is not None for r in saved):
            records[b] = [{**without_examples(r), "resumed": True} for r in saved]
        else:
            pending.append(b)
    eps_texts = ",".join(t for _, t in job.settings.eps)
    bar = tqdm(total=len(batches), initial=len(records), desc=f"AutoAttack {job.settings.threat_model} {eps_texts}",
               unit="batch", disable=not progress, position=world[0] if world else 0)

    def done(b: int, recs: list[dict]) -> None:
        records[b] = [without_examples(r) for r in recs]
        bar.update(1)
        finished = [o for r in records.values() for o in r[-1]["outcome"]]
        bar.set_postfix(robust=f"{sum(o is None for o in finished)}/{len(finished)}")

    try:
        if len(devices) > 1 and len(pending) > 1:
            try:
                run_workers(job, pending, devices, threads_per_worker(len(devices)), done)
                return records, devices[:len(pending)]
            except UnpicklableModelError as e:
                if workers_requested:
                    raise
                notes.append(("harness", f"{e}; evaluated in one process instead"))
            except WorkerError as e:
                where = (f"the finished batches are saved in {job.state.path}: run the same command again to resume"
                         if job.state else "nothing was saved: pass --out or --state-dir to make runs resumable")
                raise WorkerError(f"{e}; {where}") from None
        with job.placed(device) as net:
            for b in pending:
                done(b, job.run(net, b, device))
        return records, [device]
    finally:
        bar.close()
