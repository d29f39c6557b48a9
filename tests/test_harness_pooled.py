"""Pooled attack stages: the harness gives one bare AutoAttack call's answers, example for example.

Bare AutoAttack here is pyautoattack's own ``run_standard_evaluation`` on all the
evaluated images at once (what RobustBench's ``benchmark()`` calls), never the
harness's code.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import zoo
from harness.adversarial import read_adversarial
from harness.engine.checks import EvaluationCheckError
from harness.data import load_tensors
from harness.evaluation import evaluate
from harness_helpers import bare_autoattack

N, BATCH = 32, 8


def _data(n=N):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_tensors("cifar10", "test", None, n)


def _evaluate(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate(model, **{"n_examples": N, "batch_size": BATCH, "progress": False, "device": "cpu", **kw})


def _assert_same_as_bare(result, adversarial_file, bare, x, y):
    x_adv, y_adv, after = bare
    ev = result.evaluation
    robust = [o is None for o in ev.per_example["outcome"]]
    assert robust == (y_adv == y).tolist()
    assert {a: round(v, 2) for a, v in ev.robust_accuracy_after.items()} == after
    tensors, meta = read_adversarial(adversarial_file)
    attacked = [i for i, o in enumerate(ev.per_example["outcome"]) if o not in (None, "clean")]
    assert tensors["indices"].tolist() == attacked and len(attacked) > 0
    assert torch.equal(tensors["x_adv"], x_adv[attacked])           # the very same adversarial examples
    assert torch.equal(tensors["predictions"], y_adv[attacked])
    assert torch.equal(tensors["x"], x[attacked]) and torch.equal(tensors["labels"], y[attacked])
    assert [meta["attacks"][k] for k in tensors["attack"].tolist()] == [ev.per_example["outcome"][i] for i in attacked]


@pytest.fixture(scope="module")
def tiny():
    return zoo.load_model("cifar10-linf-tiny")


@pytest.fixture(scope="module")
def standard(tiny, tmp_path_factory):
    """The standard version (every attack, 2 iterations each) with the harness defaults, one process."""
    path = tmp_path_factory.mktemp("standard") / "adv.safetensors"
    result = _evaluate(tiny, version="standard", n_iter=2, workers=1, save_adversarial=path)
    return result, path


def test_defaults_equal_one_bare_call_on_the_model_in_channels_last(tiny, standard):
    x, y = _data()
    model = zoo.load_model("cifar10-linf-tiny").to(memory_format=torch.channels_last)
    bare = bare_autoattack(model, x, y, version="standard", n_iter=2, batch_size=BATCH)
    result, path = standard
    assert result.evaluation.numerics["channels_last"] and result.evaluation.segments == [[0, N]]
    # the survivors of an attack span more than one chunk: pooling over the whole set matters here
    assert result.evaluation.clean_accuracy * N / 100 > BATCH
    _assert_same_as_bare(result, path, bare, x, y)


def test_exact_equals_one_bare_call_with_a_custom_attack_order(tiny, tmp_path):
    """FAB-T before FAB: FAB inherits FAB-T's single restart inside one bare call."""
    x, y = _data(16)
    attacks = ["apgd-dlr", "fab-t", "fab"]
    bare = bare_autoattack(zoo.load_model("cifar10-linf-tiny"), x, y, version="custom", attacks=attacks, n_iter=2,
                           batch_size=4)
    path = tmp_path / "adv.safetensors"
    result = _evaluate(tiny, version="custom", attacks=attacks, n_iter=2, exact=True, workers=1, save_adversarial=path,
                       n_examples=16, batch_size=4)
    _assert_same_as_bare(result, path, bare, x, y)


def test_two_workers_give_the_same_answers_and_file(tiny, standard, tmp_path):
    path = tmp_path / "adv.safetensors"
    result = _evaluate(tiny, version="standard", n_iter=2, workers=2, save_adversarial=path)
    assert result.evaluation.execution["workers"] == 2
    assert result.evaluation.per_example == standard[0].evaluation.per_example
    assert path.read_bytes() == standard[1].read_bytes()


def test_a_model_whose_predictions_change_between_calls_stops_the_run():
    class Flaky(torch.nn.Module):
        """Deterministic for AutoAttack's own check on the first chunk, then every second call flips."""

        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3072, 10)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            logits = self.linear(x.flatten(1))
            return -logits if self.calls > 12 and self.calls % 2 else logits

    torch.manual_seed(0)
    with pytest.raises(EvaluationCheckError, match="differently when asked twice"):
        _evaluate(Flaky().eval(), version="custom", attacks=["apgd-ce"], n_iter=2, workers=1, eps="1/255")


def test_an_adversarial_example_outside_the_ball_stops_the_run(monkeypatch):
    from pyautoattack import autopgd_base

    def too_far(self, x, y=None, best_loss=False, x_init=None):
        return (x + 2 * self.eps).clamp(0, 1)

    monkeypatch.setattr(autopgd_base.APGDAttack, "perturb", too_far)
    with pytest.raises(EvaluationCheckError, match="outside the Linf ball"):
        _evaluate("harness_helpers:centroid_model", version="custom", attacks=["apgd-ce"], n_iter=2, workers=1)
