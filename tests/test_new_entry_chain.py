"""The whole chain at toy size: score-train -> register -> card -> publish -> load back."""

import json
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from huggingface_hub import ModelCard

import zoo
from harness.data import load_arrays, load_tensors
from training.cli import main as train_main
from zoo.cli import main as zoo_main
from zoo.registry import get_entry, user_models_dir


@pytest.fixture()
def train_npz(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = load_arrays("cifar10", "test", None)
    path = tmp_path / "cifar10_train.npz"
    np.savez(path, x=x[:192], y=y[:192])
    return path


def _ok(result):
    assert result.exit_code == 0, result.output
    return result.output


def test_train_register_publish_load(hub, train_npz, tmp_path):
    run = tmp_path / "run"
    overrides = ["epochs=1", "batch_size=32", "attack_steps=2", "holdout_size=32", "eval_attack_steps=2",
                 "checkpoint_every=0"]
    args = ["--recipe", "cifar10-linf-tiny", "--data-dir", str(train_npz), "--out", str(run), "--no-progress"]
    for o in overrides:
        args += ["--set", o]
    _ok(CliRunner().invoke(train_main, args))

    out = _ok(CliRunner().invoke(train_main, [
        "register", str(run), "--name", "toy-linf", "--n-examples", "16", "--clean-n-examples", "64",
        "--version", "custom", "--attacks", "apgd-ce", "--n-iter", "3", "--batch-size", "16",
        "--baseline", "cifar10-linf", "--no-progress"]))
    assert "registered 'toy-linf'" in out and "score-zoo publish toy-linf" in out

    entry = get_entry("toy-linf")
    assert not entry.builtin and entry.recipe["objective"] == "score"
    assert entry.source["title"].startswith("Robustness and Accuracy")  # the objective's paper
    assert entry.reported["n_examples"] == 16 and entry.reported["clean_n_examples"] == 64
    assert entry.reported["attack"] == "AutoAttack custom (apgd-ce), 3 iterations"
    result = json.loads((user_models_dir() / "toy-linf.evaluation.json").read_text())
    assert result["evaluation"]["autoattack"]["attacks"] == ["apgd-ce"] and result["evaluation"]["n_examples"] == 16
    assert entry.reported["autoattack_acc"] == round(result["evaluation"]["robust_accuracy"], 2)
    with warnings.catch_warnings():  # clean accuracy on the first 64 images, measured here
        warnings.simplefilter("ignore")
        x, y = load_tensors("cifar10", "test", None, 64)
    with torch.no_grad():
        clean = 100 * (zoo.load_model(run / "model-best")(x).argmax(1) == y).float().mean().item()
    assert entry.reported["clean_acc"] == round(clean, 2)
    card = ModelCard.load(user_models_dir() / "toy-linf.md")
    assert card.data.eval_results and "Comparison with baselines" in card.text and "cifar10-linf" in card.text

    listed = json.loads(_ok(CliRunner().invoke(zoo_main, ["list", "--json"])))
    assert "toy-linf" in {e["name"] for e in listed}

    x = torch.rand(4, 3, 32, 32)
    trained = zoo.load_model(run / "model")
    registered = zoo.load_model("toy-linf")
    with torch.no_grad():
        assert torch.equal(registered(x), trained(x))

    out = json.loads(_ok(CliRunner().invoke(zoo_main, ["publish", "toy-linf", "--repo-id", "org/toy-linf",
                                                       "--save-entry", "--json"])))
    commit = out["commit"]
    assert get_entry("toy-linf").hub["revision"] == commit
    staged = hub.repos["org/toy-linf"]
    assert any(name.startswith("evaluations/") for name in staged.commits[commit].files)
    from_hub = zoo.load_model("toy-linf", revision=commit)
    with torch.no_grad():
        assert torch.equal(from_hub(x), trained(x))
