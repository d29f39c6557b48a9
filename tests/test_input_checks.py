"""Out-of-range options and wrong types are refused at the edge with one project error, before any work."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import harness
import zoo
from harness.cli import main as harness_main
from training import make_config, train
from training.cli import main as train_main
from training_helpers import TINY
from zoo.cli import main as zoo_main
from zoo.errors import ScoreZooError


def _one_line(cli, *args) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 1 and result.output.startswith("Error: ") and result.output.count("\n") == 1, \
        result.output
    return result.output


@pytest.mark.parametrize("confidence", ["1.5", "0", "1", "-0.2", "nan"])
def test_verify_confidence_is_a_probability(tmp_path, confidence):
    assert "--confidence must be a probability between 0 and 1" in _one_line(
        harness_main, "verify", str(tmp_path / "r.json"), "--confidence", confidence)


@pytest.mark.parametrize("key, value, message", [
    ("lr", "nan", "lr must be a finite number, got 'nan'"),
    ("eps", "inf", "eps must be a finite number, got 'inf'"),
    ("epochs", "1e12", "epochs must be at most 10,000"),
    ("epochs", "nan", "epochs must be an integer, got 'nan'"),
])
def test_training_values_must_be_finite_and_in_range(tmp_path, key, value, message):
    with pytest.raises(ScoreZooError, match=message):
        make_config({**TINY, key: value})
    assert message in _one_line(train_main, "--recipe", "cifar10-linf-tiny", "--set", f"{key}={value}",
                                "--out", str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("steps", [0, -3, 2.5])
def test_stop_after_steps_is_at_least_one(tmp_path, steps):
    with pytest.raises(ScoreZooError, match="--stop-after-steps must be a whole number of at least 1"):
        train(make_config(TINY), tmp_path / "run", stop_after_steps=steps, progress=False)
    assert not (tmp_path / "run").exists()


def test_stop_after_steps_zero_on_the_command_line(tmp_path):
    assert "--stop-after-steps must be a whole number of at least 1, not 0" in _one_line(
        train_main, "--recipe", "cifar10-linf-tiny", "--out", str(tmp_path / "run"), "--stop-after-steps", "0")
    assert not (tmp_path / "run").exists()


def test_import_refuses_an_unknown_threat_model(tmp_path):
    torch.save(zoo.create_model("wrn-10-1-swish").state_dict(), tmp_path / "ckpt.pt")
    line = _one_line(zoo_main, "import", str(tmp_path / "ckpt.pt"), "--arch", "wrn-10-1-swish", "--threat-model", "L7",
                     "--out", str(tmp_path / "m"))
    assert "unknown threat model 'L7'; choose one of Linf, L2, L1" in line and not (tmp_path / "m").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--threat-model", "Lnf", "unknown threat model 'Lnf'; choose one of Linf, L2, L1, corruptions. Did you mean: Linf?"),
    ("--dataset", "cifar-10", "unknown dataset 'cifar-10'; choose one of cifar10, cifar100, imagenet, svhn."),
])
def test_leaderboard_filters_are_checked(option, value, message):
    assert message in _one_line(harness_main, "leaderboard", "--zoo", option, value)


@pytest.mark.parametrize("call", [
    lambda: harness.evaluate("cifar10-linf-tiny", n_examples=8.5, progress=False),
    lambda: harness.evaluate("cifar10-linf-tiny", n_examples="8", progress=False),
    lambda: harness.clean_accuracy("cifar10-linf-tiny", n_examples=True),
    lambda: zoo.get_entry(5),
    lambda: harness.load_model(42),
    lambda: zoo.load_model(None),
], ids=["n_examples-float", "n_examples-str", "clean-n_examples-bool", "get_entry-int", "harness-load_model-int",
        "zoo-load_model-None"])
def test_wrong_types_in_the_python_api_are_project_errors(call):
    with pytest.raises(ScoreZooError) as caught:
        call()
    assert "\n" not in str(caught.value) and not isinstance(caught.value, TypeError)
