"""The evaluation: clean accuracy, then AutoAttack batch by batch, checked and resumable.

Each batch of ``batch_size`` examples is one independent AutoAttack call with
seed ``seed + batch index``, so per-example results do not depend on
interruptions, shards or the number of processes.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import logging
import math
import platform
import time
import warnings
from collections import Counter
from pathlib import Path

import torch
import torch.nn as nn
from pyautoattack import AutoAttack
from tqdm.auto import tqdm

from zoo.datasets_meta import NUM_CLASSES, check_dataset
from zoo.errors import ConfigError

from . import distributed
from .checks import EvaluationCheckError, check_adversarial, check_logits
from .data import BundledSubsetWarning, load_tensors
from .locking import output_lock
from .models import ResolvedModel, resolve_model
from .results import (DESCRIPTIVE_KEYS, RESULT_FORMAT, Evaluation, EvaluationResult, ModelInfo, accuracies,
                      fmt_acc)
from .state import StateDir
from .threat_models import attacks_for, check_threat_model, resolve_eps


class TrainModeWarning(UserWarning):
    """The model was in train mode and has been switched to eval mode."""


def batch_seed(seed: int, index: int) -> int:
    """The AutoAttack seed of batch ``index``."""
    return seed + index


class _RecordingAutoAttack(AutoAttack):
    """AutoAttack that remembers, per attack, its own verdict on each attacked example."""

    def __init__(self, model, **kwargs):
        super().__init__(model, **kwargs)
        self.verdicts: list[tuple[str, torch.Tensor]] = []
        self._pending: str | None = None
        labels = {"apgd": lambda: "apgd-ce" if self.apgd.loss == "ce" else "apgd-dlr",
                  "apgd_targeted": lambda: "apgd-t",
                  "fab": lambda: "fab-t" if self.fab.targeted else "fab",
                  "square": lambda: "square"}
        for attr, label in labels.items():
            attack = getattr(self, attr)
            attack.perturb = self._wrap(attack.perturb, label)

    def _wrap(self, perturb, label):
        def wrapped(x, y, *args, **kwargs):
            adv = perturb(x, y, *args, **kwargs)
            self._pending = label()
            return adv
        return wrapped

    def get_logits(self, x):
        out = self.model(x)
        if self._pending is not None:  # AutoAttack's verdict right after an attack
            self.verdicts.append((self._pending, out.argmax(1).detach()))
            self._pending = None
        return out


def set_iterations(aa: AutoAttack, n_iter: int) -> None:
    """Reduce every attack to ``n_iter`` iterations (Square: queries); not leaderboard-grade."""
    for attack in (aa.apgd, aa.apgd_targeted):
        attack.n_iter = attack.n_iter_orig = n_iter
        attack.n_iter_2 = max(int(0.22 * n_iter), 1)
        attack.n_iter_min = max(int(0.06 * n_iter), 1)
        attack.size_decr = max(int(0.03 * n_iter), 1)
    aa.fab.n_iter = n_iter
    aa.square.n_queries = n_iter


@contextlib.contextmanager
def capture_autoattack_warnings():
    """Collect AutoAttack's check warnings (its logger and warnings.warn) into a list."""
    messages: list[str] = []

    class _Handler(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    logger = logging.getLogger("auto-attack")
    handler = _Handler(level=logging.WARNING)
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield messages
        messages.extend(str(w.message) for w in caught)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def attack_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, index: int, seed: int, threat_model: str,
                 eps: float, version: str, attacks: list[str], num_classes: int, dataset: str,
                 device: str, n_iter: int | None = None) -> dict:
    """Run AutoAttack on one batch; return ``{"outcome", "x_adv", "warnings"}`` (checked)."""
    where = f"batch {index}"
    x = x.to(device).contiguous()
    y = y.to(device).contiguous()
    with torch.no_grad():
        logits = model(x)
    check_logits(logits, num_classes, dataset, where)
    clean = logits.argmax(1) == y
    with capture_autoattack_warnings() as messages:
        aa = _RecordingAutoAttack(model, norm=threat_model, eps=eps, seed=batch_seed(seed, index), version=version,
                                  attacks=attacks if version == "custom" else None, device=device)
        if n_iter is not None:
            set_iterations(aa, n_iter)
        x_adv, y_adv = aa.run_standard_evaluation(x, y, batch_size=len(x))
    check_adversarial(x, x_adv, eps, threat_model, where)
    with torch.no_grad():
        adv_logits = model(x_adv)
    check_logits(adv_logits, num_classes, dataset, f"the adversarial examples of {where}")
    final = clean & (y_adv == y) & (adv_logits.argmax(1) == y)

    robust, broken_by, replayed = clean.clone(), {}, True
    for label, pred in aa.verdicts:
        idx = robust.nonzero().flatten()
        if len(idx) != len(pred):
            replayed = False
            break
        fooled = idx[pred != y[idx]]
        broken_by.update({int(i): label for i in fooled})
        robust[fooled] = False
    if not replayed or not torch.equal(robust, final):
        if version != "rand":
            raise EvaluationCheckError(f"re-classifying the adversarial examples of {where} disagrees with AutoAttack's "
                                       "verdicts: the model is not deterministic; evaluate it with --version rand")
        messages.append("randomized model: re-classification disagrees with AutoAttack's verdicts; "
                        "the example counts as not robust")
    outcome = [None if bool(final[i]) else "clean" if not bool(clean[i]) else broken_by.get(i, attacks[-1])
               for i in range(len(x))]
    return {"outcome": outcome, "x_adv": x_adv.detach().to("cpu"), "warnings": messages}


def data_fingerprint(x: torch.Tensor, y: torch.Tensor) -> str:
    """sha256 of the evaluated images and labels."""
    digest = hashlib.sha256(x.contiguous().numpy().tobytes())
    digest.update(y.contiguous().numpy().tobytes())
    return digest.hexdigest()


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_state_dir(out: str | Path) -> Path:
    """``RESULT.json`` -> ``RESULT.state/`` beside it."""
    out = Path(out)
    return out.with_name(out.stem + ".state")


def _versions() -> dict:
    import pyautoattack

    import zoo
    return {"score-zoo": zoo.__version__, "torch": torch.__version__, "pyautoattack": pyautoattack.__version__,
            "python": platform.python_version()}


def _device_label(device: str) -> str:
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _summarize_warnings(items: list[tuple[str, str]]) -> list[dict]:
    counts = Counter(items)
    return [{"source": s, "message": m, "count": c} for (s, m), c in counts.items()]


def build_model_info(resolved: ResolvedModel | None, dataset: str, eps_text: str, clean: float, robust: float,
                     overrides: dict | None = None, base: ModelInfo | None = None) -> ModelInfo:
    """RobustBench's model_info for a measured result (entry metadata, then user overrides)."""
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
            if entry.reported.get("autoattack_acc") is not None:
                info.reported = fmt_acc(float(entry.reported["autoattack_acc"]))
    for key, value in (overrides or {}).items():
        if key not in DESCRIPTIVE_KEYS:
            raise ConfigError(f"model info key '{key}' cannot be set; settable keys: {', '.join(DESCRIPTIVE_KEYS)}")
        setattr(info, key, value)
    info.dataset, info.eps = dataset, eps_text
    info.clean_acc, info.autoattack_acc = fmt_acc(clean), fmt_acc(robust)
    info.reported = info.reported or info.autoattack_acc
    return info


def evaluate(model, dataset: str | None = None, threat_model: str | None = None, eps=None,
             n_examples: int | None = None, *, batch_size: int = 500, version: str = "standard",
             attacks: list[str] | None = None, seed: int = 0, device: str | None = None, data_dir=None,
             out=None, state_dir=None, shard=None, weights: str | None = None, n_iter: int | None = None,
             model_dir: str | None = None, model_info: dict | None = None, progress: bool = True) -> EvaluationResult:
    """Evaluate ``model`` (a spec string or an nn.Module) under AutoAttack; return the result.

    ``dataset`` / ``threat_model`` default to what a zoo entry or model directory
    was made for, else cifar10 / Linf; ``eps`` to the standard budget;
    ``n_examples`` to the whole test split. With ``out`` the result is written
    there (atomically, under a lock) and progress kept in ``state_dir``
    (default ``RESULT.state/``); re-running resumes. ``shard="K/N"`` evaluates
    one slice; under torchrun the ranks split the work and rank 0 writes.
    """
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    notes: list[tuple[str, str]] = []
    resolved = resolve_model(model, dataset, threat_model, weights, model_dir)
    dataset = check_dataset(dataset or resolved.defaults.get("dataset", "cifar10"))
    threat_model = check_threat_model(threat_model or resolved.defaults.get("threat_model", "Linf"))
    eps_value, eps_text = resolve_eps(threat_model, eps)
    attack_list = attacks_for(version, threat_model, attacks)
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {seed}")
    if n_iter is not None and n_iter < 1:
        raise ConfigError(f"--n-iter must be at least 1, got {n_iter}")
    shard = distributed.parse_shard(shard)
    world = distributed.torchrun_world()
    if world and shard:
        raise ConfigError("--shard cannot be combined with torchrun: the ranks already split the work")
    device = device or default_device()
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
    net = resolved.model.to(device)
    if net.training:
        msg = "the model was in train mode; switched it to eval mode for the evaluation"
        warnings.warn(msg, TrainModeWarning, stacklevel=2)
        notes.append(("harness", msg))
        net.eval()
    with torch.no_grad():  # fail on a wrong model before any work starts
        check_logits(net(x[:batch_size].to(device)), NUM_CLASSES[dataset], dataset, "the first batch")
    autoattack = {"version": version, "attacks": attack_list, "n_iter": n_iter}
    config = {"model": {"spec": resolved.spec, "kind": resolved.kind}, "weights_sha256": resolved.weights_sha256,
              "dataset": dataset, "threat_model": threat_model, "eps": eps_value, "n_examples": n, "data": data,
              "autoattack": autoattack, "seed": seed, "batch_size": batch_size}

    n_batches = math.ceil(n / batch_size)
    batches = distributed.shard_batches(n_batches, shard)
    lock = output_lock(out) if out is not None and rank0 else contextlib.nullcontext()
    with lock:
        state = None
        if out is not None or state_dir is not None:
            path = Path(state_dir) if state_dir is not None else default_state_dir(out)
            if rank0:
                state = StateDir(path, config, started)
            distributed.barrier()
            if not rank0:
                state = StateDir(path, config, started)
            started = state.started_at
        outcomes: list = []
        earlier_s, resumed = 0.0, 0  # batches finished by an earlier run with this state dir
        kwargs = dict(seed=seed, threat_model=threat_model, eps=eps_value, version=version, attacks=attack_list,
                      num_classes=NUM_CLASSES[dataset], dataset=dataset, device=device, n_iter=n_iter)
        bar = tqdm(batches, desc=f"AutoAttack {threat_model} {eps_text}", unit="batch", disable=not progress,
                   position=world[0] if world else 0)
        for b in bar:
            lo, hi = b * batch_size, min((b + 1) * batch_size, n)
            record = state.load(b, hi - lo) if state else None
            if record is None:
                tb = time.perf_counter()
                record = attack_batch(net, x[lo:hi], y[lo:hi], index=b, **kwargs)
                record["seconds"] = round(time.perf_counter() - tb, 3)
                if state:
                    state.save(b, record)
            else:
                earlier_s, resumed = earlier_s + float(record.get("seconds", 0.0)), resumed + 1
            outcomes += record["outcome"]
            notes += [("autoattack", m) for m in record["warnings"]]
            bar.set_postfix(robust=f"{sum(o is None for o in outcomes)}/{len(outcomes)}")
        bar.close()
        start = min(batches.start * batch_size, n)
        shard_info = None
        if world:
            parts = distributed.all_gather((start, outcomes, notes, earlier_s, resumed))
            outcomes = [o for _, part, *_ in sorted(parts, key=lambda p: p[0]) for o in part]
            notes = [note for _, _, part, *_ in parts for note in part]
            earlier_s = max(p[3] for p in parts)  # the ranks ran side by side
            resumed = sum(p[4] for p in parts)
            start = 0
        elif shard is not None:
            shard_info = {"index": shard[0], "count": shard[1], "start": start, "stop": start + len(outcomes)}
        if resumed:
            notes.append(("harness", f"resumed: {resumed} batch(es) were finished by an earlier run; duration_s "
                                     "includes their attack time and started_at is the first run's start"))
        clean, after, robust = accuracies(outcomes, attack_list)
        evaluation = Evaluation(
            format=RESULT_FORMAT, model=config["model"], dataset=dataset, threat_model=threat_model, eps=eps_value,
            eps_text=eps_text, n_examples=n, data=data, autoattack=autoattack, seed=seed, batch_size=batch_size,
            clean_accuracy=clean, robust_accuracy=robust, robust_accuracy_after=after, versions=_versions(),
            device=_device_label(device) + (f" x{world[1]} processes" if world else ""),
            weights_sha256=resolved.weights_sha256, started_at=started,
            duration_s=round(time.perf_counter() - t0 + earlier_s, 3), warnings=_summarize_warnings(notes), shard=shard_info,
            per_example={"start": start, "outcome": outcomes})
        result = EvaluationResult(build_model_info(resolved, dataset, eps_text, clean, robust, model_info), evaluation)
        if out is not None and rank0:
            result.to_json(out)
    return result
