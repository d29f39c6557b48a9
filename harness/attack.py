"""One batch under AutoAttack: checked, recorded per attack, and nested over increasing eps.

Each batch is one independent AutoAttack call per eps with seed ``seed + batch
index``, so per-example results do not depend on interruptions, shards, ranks
or worker processes. Over an increasing eps list only the examples still
robust are attacked again: an adversarial example found at a smaller eps lies
inside every larger ball.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import warnings

import torch
import torch.nn as nn
from pyautoattack import AutoAttack

from .checks import EvaluationCheckError, check_adversarial, check_logits
from .devices import Numerics, placed
from .results import SMALLER_EPS
from .state import StateDir

# AutoAttack's check_randomized warning contains this.
RANDOMIZED_WARNING = "randomized defense"


def batch_seed(seed: int, index: int) -> int:
    """The AutoAttack seed of batch ``index`` (the same at every eps)."""
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


@dataclasses.dataclass(frozen=True)
class AttackSettings:
    """Everything besides the data that decides a batch's result."""

    seed: int
    threat_model: str
    eps: tuple[tuple[float, str], ...]   # increasing (value, text)
    version: str
    attacks: tuple[str, ...]
    num_classes: int
    dataset: str
    n_iter: int | None = None


def attack_batch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, index: int, eps: float, where: str,
                 settings: AttackSettings, device: str) -> dict:
    """Run AutoAttack at ``eps`` on one batch; return ``{"outcome", "x_adv", "warnings"}`` (checked)."""
    s = settings
    x = x.to(device).contiguous()
    y = y.to(device).contiguous()
    with torch.no_grad():
        logits = model(x)
    check_logits(logits, s.num_classes, s.dataset, where)
    clean = logits.argmax(1) == y
    with capture_autoattack_warnings() as messages:
        aa = _RecordingAutoAttack(model, norm=s.threat_model, eps=eps, seed=batch_seed(s.seed, index),
                                  version=s.version, attacks=list(s.attacks) if s.version == "custom" else None,
                                  device=device)
        if s.n_iter is not None:
            set_iterations(aa, s.n_iter)
        x_adv, y_adv = aa.run_standard_evaluation(x, y, batch_size=len(x))
    check_adversarial(x, x_adv, eps, s.threat_model, where)
    with torch.no_grad():
        adv_logits = model(x_adv)
    check_logits(adv_logits, s.num_classes, s.dataset, f"the adversarial examples of {where}")
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
        if s.version != "rand":
            raise EvaluationCheckError(f"re-classifying the adversarial examples of {where} disagrees with AutoAttack's "
                                       "verdicts: the model is not deterministic; evaluate it with --version rand")
        messages.append("randomized model: re-classification disagrees with AutoAttack's verdicts; "
                        "the example counts as not robust")
    outcome = [None if bool(final[i]) else "clean" if not bool(clean[i]) else broken_by.get(i, s.attacks[-1])
               for i in range(len(x))]
    return {"outcome": outcome, "x_adv": x_adv.detach().to("cpu"), "warnings": messages}


def attack_still_robust(model: nn.Module, x: torch.Tensor, y: torch.Tensor, previous: dict, *, index: int, eps: float,
                        eps_text: str, settings: AttackSettings, device: str) -> dict:
    """The next eps of a batch: attack only the examples ``previous`` (the smaller eps) left robust."""
    todo = [i for i, o in enumerate(previous["outcome"]) if o is None]
    outcome = [o if o in (None, "clean") else SMALLER_EPS for o in previous["outcome"]]
    x_adv, messages = previous["x_adv"].clone(), []
    if todo:
        where = f"batch {index} at eps {eps_text}"
        sub = attack_batch(model, x[todo], y[todo], index=index, eps=eps, where=where, settings=settings,
                           device=device)
        if "clean" in sub["outcome"]:
            raise EvaluationCheckError(f"an example of {where} that was classified correctly before is misclassified "
                                       "now: the model is not deterministic; evaluate it with --version rand and one eps")
        for k, i in enumerate(todo):
            outcome[i] = sub["outcome"][k]
        x_adv[todo] = sub["x_adv"]
        messages = sub["warnings"]
    return {"outcome": outcome, "x_adv": x_adv, "warnings": messages}


def without_examples(record: dict) -> dict:
    """A batch record without its adversarial examples (they stay in the state dir)."""
    return {k: v for k, v in record.items() if k != "x_adv"}


@dataclasses.dataclass
class BatchJob:
    """The work of one evaluation, batch by batch: what a local worker process receives."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    batch_size: int
    settings: AttackSettings
    numerics: Numerics
    state: StateDir | None = None

    def placed(self, device: str):
        """Context: the model on ``device`` with this job's layout and precision flags."""
        return placed(self.model, device, self.numerics)

    def run(self, net: nn.Module, index: int, device: str) -> list[dict]:
        """Attack batch ``index`` at every eps (resuming from the state dir); one record per eps.

        A record holds ``outcome``, ``warnings`` and ``seconds``; ``resumed`` marks
        records read back from the state dir instead of computed.
        """
        lo, hi = index * self.batch_size, min((index + 1) * self.batch_size, len(self.x))
        x, y = self.x[lo:hi], self.y[lo:hi]
        records: list[dict] = []
        for j, (eps, text) in enumerate(self.settings.eps):
            record = self.state.load(index, j, hi - lo) if self.state else None
            if record is not None:
                record["resumed"] = True
            else:
                t0 = time.perf_counter()
                kwargs = dict(index=index, eps=eps, settings=self.settings, device=device)
                where = f"batch {index}" + (f" at eps {text}" if len(self.settings.eps) > 1 else "")
                record = (attack_batch(net, x, y, where=where, **kwargs)
                          if j == 0 else attack_still_robust(net, x, y, records[-1], eps_text=text, **kwargs))
                record["seconds"] = round(time.perf_counter() - t0, 3)
                if self.state:
                    self.state.save(index, j, record)
            records.append(record)
        return records
