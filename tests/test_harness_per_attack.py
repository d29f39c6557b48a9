"""The harness gives one bare pyautoattack call's answers attack by attack, in order, example for example, on
settings where every attack of the standard version after APGD-CE (APGD-T, FAB-T, Square) breaks examples of its
own, for Linf, L2 and L1.

The reference is pyautoattack alone (``harness_helpers.bare_autoattack``: its ``AutoAttack`` with the
iterations set by hand from its own formulas). Which attack broke an example is read off bare calls that run
the version's attack list up to each attack (each attack's seed and survivors are those of the whole call), so
the harness's ordered robust accuracies and per-example outcomes have an independent source. An edit that
swaps attacks, drops FAB-T's single restart, or mis-sets an attack's iterations changes which attack breaks
which example, and these tests fail.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn as nn

from harness import evaluate
from harness.data import load_tensors
from harness_helpers import bare_autoattack, centroid_model

N, BATCH = 64, 16


class Wavy(nn.Module):
    """The centroid model plus a fixed random ripple ``a * V cos(b * U x)``: curved enough that two-iteration
    gradient attacks leave breakable examples to the next attack, and a random search finds some of them."""

    def __init__(self, a: float = 3.0, b: float = 100.0, hidden: int = 32):
        super().__init__()
        self.linear = centroid_model()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("u", torch.randn(hidden, 3072, generator=g) / 3072 ** 0.5)
        self.register_buffer("v", torch.randn(10, hidden, generator=g))
        self.a, self.b = a, b

    def forward(self, x):
        return self.linear(x) + self.a * torch.cos(self.b * x.flatten(1) @ self.u.T) @ self.v.T


# (threat model, eps, iterations): each found to give every attack of the standard version a break of its own
SETTINGS = {"Linf": ("8/255", 8 / 255, 2)}


def _data():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_tensors("cifar10", "test", None, N)


def _reference(model, x, y, threat_model, eps, n_iter):
    """Per example the attack that broke it (None: robust, "clean": misclassified), the ordered robust accuracy
    after each attack from one whole bare call's log, and that call's x_adv and y_adv."""
    kw = dict(version="standard", n_iter=n_iter, norm=threat_model, eps=eps, batch_size=BATCH)
    x_adv, y_adv, after = bare_autoattack(model, x, y, **kw)
    with torch.no_grad():
        outcome = [None if c else "clean" for c in (model(x).argmax(1) == y).tolist()]
    attacks = list(after)
    for k, attack in enumerate(attacks):
        _, y_prefix, _ = bare_autoattack(model, x, y, run=attacks[:k + 1], **kw) if k + 1 < len(attacks) else (
            None, y_adv, None)
        for i, still in enumerate((y_prefix == y).tolist()):
            if not still and outcome[i] is None:
                outcome[i] = attack
    return outcome, after, x_adv, y_adv


@pytest.mark.parametrize("threat_model", sorted(SETTINGS))
def test_each_attack_breaks_what_one_bare_call_breaks_in_order(threat_model):
    eps_text, eps, n_iter = SETTINGS[threat_model]
    x, y = _data()
    model = Wavy().eval()
    outcome, after, _, y_adv = _reference(model, x, y, threat_model, eps, n_iter)
    # the setting bites: after APGD-CE, each attack of the standard version breaks examples of its own
    assert list(after) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert all(outcome.count(a) > 0 for a in ("apgd-t", "fab-t", "square")), outcome
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(Wavy().eval(), "cifar10", threat_model, eps_text, N, batch_size=BATCH, version="standard",
                          n_iter=n_iter, seed=0, progress=False, device="cpu", workers=1)
    ev = result.evaluation
    assert ev.per_example["outcome"] == outcome
    assert [(a, round(v, 2)) for a, v in ev.robust_accuracy_after.items()] == list(after.items())
    robust = [o is None for o in outcome]
    assert robust == (y_adv == y).tolist()
    assert ev.robust_accuracy == pytest.approx(100 * sum(robust) / N)
