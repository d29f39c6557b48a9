"""harness.benchmark against robustbench's own benchmark(): the same tensors, the same answers per example."""

from __future__ import annotations

import warnings

import pytest
import torch
from pyautoattack import AutoAttack

import harness
from harness.data import load_tensors
from zoo.results import EvaluationResult
from harness_helpers import centroid_model, set_iterations_by_hand

pytestmark = pytest.mark.robustbench   # robustbench's own benchmark() is the reference

def test_benchmark_equals_robustbench_benchmark_example_for_example(monkeypatch, tmp_path):
    """robustbench.eval.benchmark runs through this package's autoattack adapter on the same images.

    Its loader would download CIFAR-10, so it is handed the bundled images; the adversarial examples
    it classifies are kept to compare per example. Standard AutoAttack at eps 2/255, every attack cut
    to 3 iterations in both (AutoAttack is built with them), so that the test stays fast.
    """
    import robustbench.eval as rb_eval

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = load_tensors("cifar10", "test", None, 64)
    classified = []
    accuracy, init = rb_eval.clean_accuracy, AutoAttack.__init__

    def keep(model, xs, ys, batch_size=100, device=None):
        classified.append(xs)
        return accuracy(model, xs, ys, batch_size=batch_size, device=device)

    def three_iterations(aa, *args, **kwargs):
        init(aa, *args, **kwargs)
        set_iterations_by_hand(aa, 3)

    monkeypatch.setattr(rb_eval, "load_clean_dataset", lambda *args, **kwargs: (x, y))
    monkeypatch.setattr(rb_eval, "clean_accuracy", keep)
    monkeypatch.setattr(AutoAttack, "__init__", three_iterations)
    monkeypatch.chdir(tmp_path)
    model = centroid_model()
    theirs = rb_eval.benchmark(model, n_examples=64, dataset="cifar10", threat_model="Linf",
                               device=torch.device("cpu"), batch_size=16, eps=2 / 255)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = harness.benchmark(model, n_examples=64, dataset="cifar10", threat_model="Linf", data_dir=None,
                                 device="cpu", batch_size=16, eps=2 / 255, to_disk=True, model_name="Centroid")
    assert ours == theirs
    with torch.no_grad():
        robust = (model(classified[-1]).max(1)[1] == y).tolist()
    ev = EvaluationResult.from_json(tmp_path / "model_info" / "cifar10" / "Linf" / "Centroid.json").evaluation
    assert [o is None for o in ev.per_example["outcome"]] == robust
    assert 0 < sum(robust) < sum(o != "clean" for o in ev.per_example["outcome"])
    assert set(ev.per_example["outcome"]) - {None, "clean"} >= {"apgd-ce"}
