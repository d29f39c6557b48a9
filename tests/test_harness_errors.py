"""Bad input: one clear line, exit 1, nothing lost."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from harness.engine.checks import EvaluationCheckError, check_adversarial
from harness.cli import main
from zoo.locking import output_lock
from harness.threat_models import resolve_eps

SMALL = ["--n-examples", "8", "--batch-size", "8", "--version", "custom", "--attacks", "apgd-ce", "--n-iter", "2"]


def cli(*args):
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""


@pytest.mark.parametrize("args, message", [
    (["cifar10-linfx"], "Did you mean: cifar10-linf"),
    (["mod.ule:call:able"], "malformed model spec"),
    (["harness_helpers:no_such_factory"], "has no 'no_such_factory'"),
    (["harness_helpers:centroid_model", "--eps", "-1"], "positive"),
    (["harness_helpers:centroid_model", "--eps", "2"], "out of range"),
    (["harness_helpers:centroid_model", "--eps", "8/x"], "cannot parse eps"),
    (["harness_helpers:centroid_model", "--n-examples", "5000"], "out of range"),
    (["harness_helpers:wrong_classes_model", *SMALL], "has 10 classes"),
    (["harness_helpers:nan_model", *SMALL], "NaN"),
    (["harness_helpers:centroid_model", "--version", "custom"], "needs --attacks"),
    (["harness_helpers:centroid_model", "--shard", "2/2"], "out of range"),
    (["harness_helpers:failing_builder"], "building the model with 'harness_helpers:failing_builder' failed: "
                                          "ValueError: no checkpoint at /nonexistent/model.pt"),
    (["harness_helpers:tuple_model", *SMALL], "returns a tuple on the first chunk, not a tensor of logits"),
])
def test_bad_evaluate_input_is_one_line(args, message, monkeypatch):
    monkeypatch.syspath_prepend(str(__import__("harness_helpers").TESTS_DIR))
    code, err = cli("evaluate", *args)
    assert code == 1 and err.startswith("Error: ") and message in err and "\n" not in err


def test_state_dir_foreign_corrupt_and_other_config(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    code, err = cli("evaluate", "harness_helpers:centroid_model", *SMALL, "--state-dir", str(foreign))
    assert code == 1 and "not a score-harness state dir" in err and (foreign / "notes.txt").read_text() == "mine"
    out = tmp_path / "r.json"
    assert cli("evaluate", "harness_helpers:centroid_model", *SMALL, "--out", str(out))[0] == 0
    code, err = cli("evaluate", "harness_helpers:centroid_model", *SMALL, "--seed", "1", "--out", str(out))
    assert code == 1 and "different evaluation" in err and "seed" in err
    next((tmp_path / "r.state").glob("*-L000-c000000.pt")).write_bytes(b"garbage")
    code, err = cli("evaluate", "harness_helpers:centroid_model", *SMALL, "--out", str(out))
    assert code == 1 and "corrupt" in err
    assert json.loads(out.read_text())["evaluation"]["seed"] == 0  # the earlier result is untouched


def test_second_writer_of_the_same_out_is_refused(tmp_path):
    out = tmp_path / "r.json"
    with output_lock(out):
        code, err = cli("evaluate", "harness_helpers:centroid_model", *SMALL, "--out", str(out))
    assert code == 1 and "another evaluation is writing" in err and not out.exists()
    assert cli("evaluate", "harness_helpers:centroid_model", *SMALL, "--out", str(out))[0] == 0


def test_unwritable_out_fails_before_work(tmp_path):
    (tmp_path / "file").write_text("x")
    code, err = cli("evaluate", "harness_helpers:centroid_model", *SMALL, "--out", str(tmp_path / "file" / "r.json"))
    assert code == 1 and "cannot write" in err


def test_adversarial_violations_are_errors():
    x = torch.full((2, 3, 4, 4), 0.5)
    eps = 8 / 255
    check_adversarial(x, x + eps, eps, "Linf", "t")
    for bad, why in [(x + 2 * eps, "outside"), (x * 3, "range"), (x.clone().fill_(float("nan")), "finite")]:
        with pytest.raises(EvaluationCheckError, match=why):
            check_adversarial(x, bad, eps, "Linf", "t")
    with pytest.raises(EvaluationCheckError, match="outside"):
        check_adversarial(x, x + 0.2, 0.5, "L2", "t")


def test_eps_defaults_and_formats():
    assert resolve_eps("Linf", None) == (8 / 255, "8/255")
    assert resolve_eps("L2", None) == (0.5, "0.5")
    assert resolve_eps("L1", None) == (12.0, "12")
    assert resolve_eps("Linf", "4/255")[1] == "4/255" and resolve_eps("Linf", 8 / 255)[1] == "8/255"


def test_corrupt_data_dir_and_truncated_weights_are_one_line(tmp_path, monkeypatch):
    import zoo
    from zoo.model_dir import make_config, save_model_dir

    monkeypatch.syspath_prepend(str(__import__("harness_helpers").TESTS_DIR))
    data = tmp_path / "data"
    data.mkdir()
    (data / "cifar10_test.npz").write_bytes(b"PK\x03\x04 cut short")
    code, err = cli("evaluate", "harness_helpers:centroid_model", "--data-dir", str(data), *SMALL)
    assert code == 1 and "not a readable .npz" in err
    model_dir = tmp_path / "model"
    save_model_dir(zoo.create_model("wrn-10-1-swish"), model_dir, make_config("wrn-10-1-swish", 10, "cifar10"))
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])
    code, err = cli("evaluate", str(model_dir), *SMALL)
    assert code == 1 and "not a readable safetensors" in err


def test_randomized_model_is_evaluated_marked_and_shown_in_the_leaderboard(tmp_path):
    root = tmp_path / "model_info" / "cifar10" / "Linf"
    out = root / "Noisy.json"
    res = CliRunner().invoke(main, ["evaluate", "harness_helpers:randomized_model", *SMALL, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "clean " in res.stdout and "robust " in res.stdout
    assert "randomized defense" in res.stderr and "--version rand" in res.stderr
    data = json.loads(out.read_text())
    assert data["evaluation"]["randomized"] is True and data["unreliable"] is True
    assert "does not rank randomized defenses" in data["footnote"]
    board = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "model_info")])
    assert board.exit_code == 0 and "| Noisy [randomized] [indicators warn] |" in board.stdout   # randomness fires
    assert "RobustBench does not rank randomized defenses" in board.stdout
    board = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "model_info"), "--format", "json"])
    lb = json.loads(board.stdout)["leaderboards"][0]
    [row] = lb["models"] + lb["not_leaderboard_grade"]
    assert row["randomized"] is True and not row["leaderboard_grade"]
    assert any("randomized" in p for p in row["not_leaderboard_grade_because"])
