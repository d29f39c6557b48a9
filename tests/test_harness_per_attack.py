"""The harness gives one bare pyautoattack call's answers attack by attack, in order, example for example, on
settings where every attack of the standard version (APGD-CE, APGD-T, FAB-T, Square) breaks examples of its own,
for Linf, L2 and L1.

The reference is pyautoattack alone: its ``AutoAttack``, iterations set by hand from its own formulas
(``harness_helpers.bare_autoattack``), one ``run_standard_evaluation`` call. Which attack broke an example is
observed inside that call (each attack's ``perturb`` is wrapped to keep what it returned for which images), so the
harness's ordered robust accuracies and per-example outcomes have an independent source. An edit that swaps
attacks, mis-sets an attack's iterations or restarts, or attacks other survivors changes which attack breaks which
example, and these tests fail.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from harness import evaluate
from harness.data import load_tensors
from harness_helpers import bare_autoattack, centroid_model

N, BATCH = 32, 16


def _data():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_tensors("cifar10", "test", None, N)


def _halves(delta: torch.Tensor) -> torch.Tensor:
    """How coherently a perturbation (N, 3072) moves the two halves of a 6x6 window of the red channel in opposite
    directions (rows or columns, either sign): the shape of Square's initial perturbation there, seldom that of
    a gradient step or a random start."""
    w = delta.view(-1, 3, 32, 32)[:, 0, 1:7, 1:7]
    scores = []
    for a, b in ((w[:, :3].sum((1, 2)), w[:, 3:].sum((1, 2))), (w[:, :, :3].sum((1, 2)), w[:, :, 3:].sum((1, 2)))):
        scores += [torch.minimum(a, -b), torch.minimum(-a, b)]
    return torch.stack(scores, 1).amax(1, keepdim=True)


class Trapdoor(nn.Module):
    """A linear classifier fit (ridge regression) on the evaluated images themselves: all right, with margins
    spread so that few-iteration gradient attacks each break some. Images brighter than average also have a
    trapdoor: moving their window halves apart (``_halves`` above ``threshold``) sinks the logit of their class;
    there the gradient is a decoy (a fixed random linear map's; the value is unchanged), so only a search
    without gradients, Square, finds it."""

    def __init__(self, threshold: float):
        super().__init__()
        x, y = _data()
        f = x.flatten(1).double()
        mu = f.mean(0)
        fc = f - mu
        targets = F.one_hot(y, 10).double() - 0.1
        w = (fc.T @ torch.linalg.solve(fc @ fc.T + 10.0 * torch.eye(N, dtype=torch.float64), targets)).T
        self.register_buffer("w", w.float())
        self.register_buffer("b", (-(w @ mu)).float())
        self.register_buffer("memory", x.flatten(1))
        self.register_buffer("own", (x.flatten(1) @ self.w.T + self.b).argmax(1))
        g = torch.Generator().manual_seed(0)
        self.register_buffer("decoy", torch.randn(10, 3072, generator=g) * float(w.norm(dim=1).mean()) / 3072 ** 0.5)
        self.threshold = threshold

    def forward(self, x):
        f = x.flatten(1)
        z = f @ self.w.T + self.b
        with torch.no_grad():
            nearest = torch.cdist(f, self.memory).argmin(1)        # which evaluated image this is a perturbation of
            bright = self.memory[nearest].mean(1, keepdim=True) > 0.45
        fired = torch.relu(_halves(f - self.memory[nearest]) - self.threshold)
        trapped = z - 100.0 * fired * F.one_hot(self.own[nearest], 10)
        d = f @ self.decoy.T
        return torch.where(bright, trapped.detach() + d - d.detach(), z)


# threat model: (eps text, eps, iterations, trapdoor threshold), each found to give every attack breaks of its own
SETTINGS = {"Linf": ("12/255", 12 / 255, 2, 0.1), "L2": ("2.5", 2.5, 2, 0.3), "L1": ("60", 60.0, 4, 0.25)}


def _reference(model, x, y, threat_model, eps, n_iter, version="standard", attacks=None):
    """One bare call: per example the attack that broke it (None: robust, "clean": misclassified), the ordered
    robust accuracy after each attack from its log, and its y_adv."""
    seen: list[tuple[str, torch.Tensor, torch.Tensor]] = []      # (attack, images given, images returned)
    from pyautoattack import AutoAttack

    made = []
    init = AutoAttack.__init__

    def keep_instance(aa, *args, **kwargs):
        init(aa, *args, **kwargs)
        made.append(aa)
        for name, attack in (("apgd", aa.apgd), ("apgd-t", aa.apgd_targeted), ("fab", aa.fab), ("square", aa.square)):
            def watched(x_in, y_in, *a, _attack=attack, _name=name, _perturb=attack.perturb, **k):
                out = _perturb(x_in, y_in, *a, **k)
                if _name == "apgd":
                    label = f"apgd-{_attack.loss}"
                elif _name == "fab":
                    label = "fab-t" if _attack.targeted else "fab"
                else:
                    label = _name
                seen.append((label, x_in.detach().clone(), out.detach().clone()))
                return out
            attack.perturb = watched

    AutoAttack.__init__ = keep_instance
    try:
        _, y_adv, after = bare_autoattack(model, x, y, version=version, attacks=attacks, n_iter=n_iter,
                                          norm=threat_model, eps=eps, batch_size=BATCH)
    finally:
        AutoAttack.__init__ = init
    assert len(made) == 1
    with torch.no_grad():
        outcome = [None if c else "clean" for c in (model(x).argmax(1) == y).tolist()]
        rows = {tuple(x[i].flatten()[:64].tolist()): i for i in range(len(x))}    # an image's index by its pixels
        assert len(rows) == len(x)
        for attack, given, returned in seen:
            broken = (model(returned).argmax(1) != y[[rows[tuple(g.flatten()[:64].tolist())] for g in given]]).tolist()
            for g, b in zip(given, broken):
                i = rows[tuple(g.flatten()[:64].tolist())]
                if b and outcome[i] is None:
                    outcome[i] = attack
    return outcome, after, y_adv


@pytest.mark.parametrize("threat_model", ["Linf", "L2", "L1"])
def test_each_attack_breaks_what_one_bare_call_breaks_in_order(threat_model):
    eps_text, eps, n_iter, threshold = SETTINGS[threat_model]
    x, y = _data()
    outcome, after, y_adv = _reference(Trapdoor(threshold).eval(), x, y, threat_model, eps, n_iter)
    # the setting bites: each attack of the standard version breaks examples of its own
    assert list(after) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert all(outcome.count(a) > 0 for a in after), outcome
    robust = [o is None for o in outcome]
    assert robust == (y_adv == y).tolist()
    assert [round(100 * sum(o is None or o in list(after)[k + 1:] for o in outcome) / N, 2)
            for k in range(len(after))] == list(after.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(Trapdoor(threshold).eval(), "cifar10", threat_model, eps_text, N, batch_size=BATCH,
                          version="standard", n_iter=n_iter, seed=0, progress=False, device="cpu", workers=1)
    ev = result.evaluation
    assert ev.per_example["outcome"] == outcome
    assert [(a, round(v, 2)) for a, v in ev.robust_accuracy_after.items()] == list(after.items())
    assert ev.robust_accuracy == pytest.approx(100 * sum(robust) / N)


class Wavy(nn.Module):
    """The centroid model plus a fixed random ripple ``10 V cos(300 U x)``: curved enough that FAB's restarts
    matter."""

    def __init__(self):
        super().__init__()
        self.linear = centroid_model()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("u", torch.randn(32, 3072, generator=g) / 3072 ** 0.5)
        self.register_buffer("v", torch.randn(10, 32, generator=g))

    def forward(self, x):
        return self.linear(x) + 10.0 * torch.cos(300.0 * x.flatten(1) @ self.u.T) @ self.v.T


def test_fab_after_fab_t_keeps_fab_ts_single_restart_as_one_bare_call():
    """Inside one bare call FAB-T sets ``fab.n_restarts = 1`` and FAB, later in the list, inherits it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = load_tensors("cifar10", "test", None, 2 * N)
    model = Wavy().eval()
    kw = dict(version="custom", n_iter=2, norm="L2", eps=0.5, batch_size=BATCH)
    # the setting bites: FAB with its own 5 restarts breaks examples that FAB-T left, so the inheritance shows
    _, y_fab_t, _ = bare_autoattack(model, x, y, attacks=["fab-t"], **kw)
    left = y_fab_t == y
    _, y_fab, _ = bare_autoattack(model, x[left], y[left], attacks=["fab"], **kw)
    assert bool((y_fab != y[left]).any())
    outcome, after, y_adv = _reference(model, x, y, "L2", 0.5, 2, version="custom", attacks=["fab-t", "fab"])
    assert (y_adv == y).tolist() == [o is None for o in outcome]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(Wavy().eval(), "cifar10", "L2", "0.5", 2 * N, batch_size=BATCH, version="custom",
                          attacks=["fab-t", "fab"], n_iter=2, seed=0, progress=False, device="cpu", workers=1)
    assert result.evaluation.per_example["outcome"] == outcome
    assert [(a, round(v, 2)) for a, v in result.evaluation.robust_accuracy_after.items()] == list(after.items())
