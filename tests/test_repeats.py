"""--repeats K for --version rand: K evaluations (seeds SEED..SEED+K-1), each example's worst case, resumable."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn as nn

from harness.engine.passes import KINDS
from harness.evaluation import evaluate
from harness.repeats import combine
from harness_helpers import centroid_model

KW = dict(n_examples=24, batch_size=8, eps="1/255", version="rand", n_iter=1, progress=False, workers=1, device="cpu")


class _Noisy(nn.Module):
    """The centroid model with Gaussian noise of ``scale`` on its logits: its answers change from draw to draw
    (at 60, noise as large as its margins, which examples a draw gets right changes from repeat to repeat)."""

    def __init__(self, scale: float = 3.0):
        super().__init__()
        self.inner = centroid_model()
        self.scale = scale

    def forward(self, x):
        logits = self.inner(x)
        return logits + self.scale * torch.randn_like(logits)


def _evaluate(**kw):
    torch.manual_seed(0)   # the clean pass draws from the process's generator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate(_Noisy().eval(), **{**KW, **kw})


def test_worst_case_over_repeats_is_recorded_and_resumes(tmp_path):
    out = tmp_path / "r.json"
    result = _evaluate(out=out, repeats=3, seed=5)
    ev = result.evaluation
    assert ev.repeats["k"] == 3 and ev.repeats["seeds"] == [5, 6, 7] and len(ev.repeats["robust_accuracy"]) == 3
    assert ev.robust_accuracy <= min(ev.repeats["robust_accuracy"])
    assert len(set(ev.repeats["robust_accuracy"])) > 1          # the repeats do differ for this model
    assert sorted(p.name for p in (tmp_path / "r.state").iterdir()) == ["repeat-0", "repeat-1", "repeat-2"]
    data = json.loads(out.read_text())
    assert data["autoattack_acc"] == f"{ev.robust_accuracy:.2f}" and data["evaluation"]["repeats"]["k"] == 3
    again = _evaluate(out=out, repeats=3, seed=5)
    assert again.evaluation.per_example == ev.per_example
    assert sum(w["count"] for w in again.evaluation.warnings if "resumed" in w["message"]) == 3


def test_combine_keeps_an_example_robust_only_if_robust_in_every_repeat():
    runs = [_evaluate(seed=s) for s in (0, 1)]
    both = combine(runs)
    outcomes = [r.evaluation.per_example["outcome"] for r in runs]
    assert [o is None for o in both.evaluation.per_example["outcome"]] == [a is None and b is None for a, b in zip(*outcomes)]
    assert both.evaluation.per_example["outcome"] == [a if a is not None else b for a, b in zip(*outcomes)]
    for kind in KINDS:   # the work of both runs (not the first's alone)
        assert both.evaluation.cost["total"][kind] == sum(r.evaluation.cost["total"][kind] for r in runs)


def test_repeats_need_the_rand_version():
    from zoo.errors import ConfigError

    with pytest.raises(ConfigError, match="--repeats needs --version rand"):
        _evaluate(version="standard", repeats=2)
    with pytest.raises(ConfigError, match="cannot be combined with --extra-attacks"):
        _evaluate(repeats=2, extra_attacks=["malt"])


def test_each_example_keeps_its_worst_case_not_the_last_or_any_one_repeat(tmp_path):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(_Noisy(60.0).eval(), **{**KW, "seed": 0, "repeats": 3, "out": tmp_path / "r.json"})
    ev = result.evaluation
    each = ev.repeats["robust_accuracy"]
    robust = sum(o is None for o in ev.per_example["outcome"])
    assert ev.robust_accuracy == pytest.approx(100 * robust / 24, abs=1e-4)        # recorded to 4 decimals
    # examples broken in different repeats add up: the combined figure is below every single repeat's
    assert ev.robust_accuracy < min(each), (ev.robust_accuracy, each)
    assert json.loads((tmp_path / "r.json").read_text())["autoattack_acc"] == f"{100 * robust / 24:.2f}"
