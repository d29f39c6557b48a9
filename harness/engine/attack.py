"""AutoAttack's own semantics, one chunk task at a time: the clean pass, each attack, and the checks.

pyautoattack's ``run_standard_evaluation`` runs, per call: its checks on the first
chunk, a clean pass in chunks, then each attack on chunks of the still-robust
examples, reseeding every chunk with the AutoAttack seed and keeping an adversarial
example where the model misclassifies it. :func:`run_task` runs one such chunk
(see ``stages``) exactly as that loop does (the attack set up as the loop sets it
up, the same seed, the verdict ``model(adv).max(dim=1)[1]`` under ``no_grad``), so
the harness gives bare AutoAttack's per-example answers however its chunks are
spread over processes, ranks or interruptions. Then it checks what AutoAttack does
not: every adversarial example is finite, in [0, 1] and in the eps ball, and the
model classifies it the same way a second time in the same chunk (same batch, so
batch-size-dependent kernels cannot fake a difference).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
import warnings

import torch
import torch.nn as nn
from pyautoattack import AutoAttack, checks

from ..bpda import bpda_modules
from ..extra_attacks import EXTRA_ATTACKS
from .autoattack_setup import run_attack, set_iterations
from .checks import EvaluationCheckError, check_adversarial, check_logits
from .numerics import Numerics, placed
from .passes import counting_passes
from .stages import Task

# AutoAttack's check_randomized warning contains this.
RANDOMIZED_WARNING = "randomized defense"


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
    """Everything besides the data that decides a chunk's result."""

    seed: int
    threat_model: str
    eps: tuple[tuple[float, str], ...]   # increasing (value, text)
    version: str
    attacks: tuple[str, ...]
    num_classes: int
    dataset: str
    n_iter: int | None = None
    extra: tuple[str, ...] = ()          # attacks beyond AutoAttack, run after its attacks (see ``beyond``)
    bpda: tuple[str, ...] = ()           # modules the BPDA stage attacks through (see ``harness.bpda``)

    @property
    def stages(self) -> tuple[str, ...]:
        """AutoAttack's attacks, then the extra ones."""
        return self.attacks + self.extra

    @property
    def n_levels(self) -> int:
        """The clean pass plus every attack at every eps (see ``stages``)."""
        return 1 + len(self.eps) * len(self.stages)

    def level(self, level: int) -> tuple[int, str]:
        """(eps index, attack) of an attack level."""
        j, a = divmod(level - 1, len(self.stages))
        return j, self.stages[a]


def autoattack_for(model: nn.Module, settings: AttackSettings, eps: float, attack: str, device: str) -> AutoAttack:
    """A fresh AutoAttack as ``run_standard_evaluation`` has it when it reaches ``attack``.

    The loop's only lasting change to its attacks is FAB-T's ``fab.n_restarts = 1``,
    which attacks after FAB-T inherit.
    """
    s = settings
    aa = AutoAttack(model, norm=s.threat_model, eps=eps, seed=s.seed, version=s.version,
                    attacks=list(s.attacks) if s.version == "custom" else None, device=device)
    if s.n_iter is not None:
        set_iterations(aa, s.n_iter)
    if "fab-t" in aa.attacks_to_run[:aa.attacks_to_run.index(attack)]:
        aa.fab.n_restarts = 1
    return aa


def autoattack_checks(model: nn.Module, x: torch.Tensor, y: torch.Tensor, settings: AttackSettings,
                      device: str) -> None:
    """The checks ``run_standard_evaluation`` makes on its first chunk (their warnings are captured by the caller)."""
    aa = AutoAttack(model, norm=settings.threat_model, eps=settings.eps[0][0], seed=settings.seed,
                    version=settings.version, attacks=list(settings.attacks) if settings.version == "custom" else None,
                    device=device)
    if settings.version != "rand":
        checks.check_randomized(aa.get_logits, x, y, bs=len(x), logger=aa.logger)
    n_cls = checks.check_range_output(aa.get_logits, x, logger=aa.logger)
    with torch.enable_grad():   # as in the bare call, which makes its checks outside no_grad
        checks.check_dynamic(model, x, False, logger=aa.logger)
    checks.check_n_classes(n_cls, aa.attacks_to_run, aa.apgd_targeted.n_target_classes, aa.fab.n_target_classes,
                           logger=aa.logger)


def run_task(model: nn.Module, x_all: torch.Tensor, y_all: torch.Tensor, task: Task, settings: AttackSettings,
             device: str, first_of_segment: bool = False) -> dict:
    """Run one chunk task; return its record.

    A record holds ``members`` (example indices), ``robust`` (still robust after the
    task's level), ``pred`` (the model's class for the clean image or the adversarial
    example), ``x_adv`` (the adversarial examples of the members the attack broke, in
    member order; None for the clean pass), ``warnings``, ``seconds`` and ``passes``
    (image passes and seconds per part, see ``passes``: ``attack``, the work of a bare
    call; ``autoattack``, its checks; ``determinism``, the harness's second
    classification). ``first_of_segment`` also runs AutoAttack's checks, as each bare
    call does.
    """
    t0 = time.perf_counter()
    members = torch.tensor(task.members, dtype=torch.long)
    x = x_all[members].contiguous().to(device)
    y = y_all[members].to(device)
    where = f"chunk {task.chunk} of the clean pass" if task.level == 0 else None
    with capture_autoattack_warnings() as messages, torch.no_grad(), counting_passes(model, "attack") as meter:
        if task.level == 0:
            if first_of_segment:
                with meter.part("autoattack"):
                    autoattack_checks(model, x, y, settings, device)
            logits = model(x)
            check_logits(logits, settings.num_classes, settings.dataset, where)
            pred = logits.max(dim=1)[1]
            robust, x_adv = pred == y, None
        else:
            j, attack = settings.level(task.level)
            eps, eps_text = settings.eps[j]
            where = f"chunk {task.chunk} of {attack}" + (f" at eps {eps_text}" if len(settings.eps) > 1 else "")
            if attack in settings.extra:
                row = EXTRA_ATTACKS[attack]
                with bpda_modules(model, settings.bpda if row.through_bpda else ()):
                    adv = row.run(model, x, y, eps, settings.threat_model, settings.n_iter, settings.seed, device)
            else:
                adv = run_attack(autoattack_for(model, settings, eps, attack, device), attack, x, y)
            check_adversarial(x, adv, eps, settings.threat_model, where)
            logits = model(adv)
            check_logits(logits, settings.num_classes, settings.dataset, f"the adversarial examples of {where}")
            pred = logits.max(dim=1)[1]
            if settings.version != "rand":
                with meter.part("determinism"):
                    again = model(adv).max(dim=1)[1]
                if not torch.equal(again, pred):
                    raise EvaluationCheckError(f"the model classifies the adversarial examples of {where} "
                                               "differently when asked twice: it is not deterministic; evaluate it "
                                               "with --version rand")
            robust = pred == y
            x_adv = adv[~robust].detach().to("cpu")
    return {"members": members, "robust": robust.to("cpu"), "pred": pred.to("cpu"), "x_adv": x_adv,
            "warnings": messages, "seconds": round(time.perf_counter() - t0, 3), "passes": meter.parts()}


@dataclasses.dataclass
class Job:
    """The work of one evaluation: what a local worker process receives once, before its tasks."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    settings: AttackSettings
    numerics: Numerics

    def placed(self, device: str):
        """Context: the model on ``device`` with this job's layout and precision flags."""
        return placed(self.model, device, self.numerics)

    def run(self, net: nn.Module, task: Task, device: str) -> dict:
        """Run ``task`` with the placed model ``net`` (see :func:`run_task`)."""
        first = task.level == 0 and task.chunk == 0
        return run_task(net, self.x, self.y, task, self.settings, device, first_of_segment=first)
