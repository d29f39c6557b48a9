"""Multi-seed studies: statistics by hand, and a study built from real registered runs shown in a card."""

import math
import warnings

import pytest
import torch
from click.testing import CliRunner

import harness
import zoo
from training.config import make_config
from training.trainer import final_model_config
from zoo.cards import render_card
from zoo.cli import main as zoo_main
from zoo.errors import ConfigError
from zoo.model_dir import save_model_dir
from zoo.registry import Entry, add_user_entry, get_entry, user_models_dir
from zoo.studies import load_study, markdown, summary


def _row(objective, seed, clean, aa, held):
    return {"entry": f"{objective}-{seed}", "objective": objective, "seed": seed, "clean_acc": clean,
            "clean_n_examples": 10000, "autoattack_acc": aa, "n_examples": 500, "holdout_robust_acc": held}


def test_mean_std_and_paired_difference_by_hand():
    study = {"runs": [_row("score", 0, 60, 20, 25), _row("score", 1, 62, 22, 26), _row("score", 2, 64, 21, 27),
                      _row("trades", 0, 58, 21, 24), _row("trades", 1, 59, 21, 25), _row("trades", 2, 60, 24, 26)]}
    s = summary(study)
    assert s["per_objective"]["score"]["clean_acc"] == (62, 2, 3)
    mean, std, n = s["per_objective"]["trades"]["autoattack_acc"]
    assert (mean, n) == (22, 3) and std == pytest.approx(math.sqrt(3))
    assert s["paired"]["clean_acc"] == (3, 1, 3)  # differences 2, 3, 4
    assert s["paired"]["autoattack_acc"] == (-1, 2, 3)  # differences -1, 1, -3
    text = markdown(study)
    assert "| **score** mean ± std (n=3) | | 62.00 ± 2.00 | 21.00 ± 1.00 | 26.00 ± 1.00 |" in text
    assert "| **score − trades**, paired by seed (n=3) | | +3.00 ± 1.00 | -1.00 ± 2.00 | +1.00 ± 0.00 |" in text
    assert "clean (10,000 images) | AutoAttack (500 images)" in text



def test_one_seed_has_no_spread_rather_than_a_zero_one():
    study = {"runs": [_row("score", 0, 60, 22, 25), _row("trades", 0, 58, 21, 24)]}
    assert summary(study)["per_objective"]["score"]["clean_acc"] == (60, None, 1)
    text = markdown(study)
    assert "| **score** mean ± std (n=1) | | 60.00 (one seed, no spread) |" in text
    assert "| **score − trades**, paired by seed (n=1) | | +2.00 (one seed, no spread) |" in text
    assert "± 0.00" not in text

def _register(tmp_path, name, objective, seed, held):
    """A real score-train model directory, a real (short) harness evaluation, a user entry."""
    cfg = make_config({"architecture": "wrn-10-1-swish", "objective": objective, "seed": seed,
                       **({"beta": 6.0, "label_smoothing": 0.1} if objective == "trades" else {})})
    torch.manual_seed(seed)
    model_dir = user_models_dir() / name
    save_model_dir(zoo.create_model("wrn-10-1-swish").eval(), model_dir,
                   final_model_config(cfg, selected="best", holdout_robust_acc=held, holdout_clean_acc=50.0, epoch=2))
    out = tmp_path / f"{name}.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = harness.evaluate(str(model_dir), n_examples=8, batch_size=8, version="custom", attacks=["apgd-ce"],
                                  n_iter=2, out=out, progress=False)
    add_user_entry(Entry(name=name, dataset="cifar10", threat_model="Linf", eps="8/255",
                         architecture="wrn-10-1-swish", num_classes=10,
                         reported={"clean_acc": 12.5, "clean_n_examples": 1000,
                                   "autoattack_acc": round(result.robust_acc, 2), "n_examples": 8},
                         recipe={"objective": objective}, local_dir=str(model_dir), evaluations=[str(out)],
                         builtin=False))


def test_study_from_registered_runs_is_written_and_shown_in_the_card(tmp_path, monkeypatch):
    monkeypatch.setenv("SCORE_ZOO_REGISTRY", str(tmp_path / "registry.json"))
    for objective, seed, held in (("score", 0, 30.0), ("score", 1, 32.0), ("trades", 0, 29.0), ("trades", 1, 28.0)):
        _register(tmp_path, f"{objective}-s{seed}", objective, seed, held)
    out = tmp_path / "study.json"
    res = CliRunner().invoke(zoo_main, ["study", str(out), "--entry", "score-s0", "--entry", "score-s1",
                                        "--entry", "trades-s0", "--entry", "trades-s1", "--description", "pilot",
                                        "--data-note", "8 images", "--evaluations-dir", str(tmp_path / "evals")])
    assert res.exit_code == 0, res.output
    study = load_study(out)
    assert [(r["objective"], r["seed"], r["holdout_robust_acc"]) for r in study["runs"]] == [
        ("score", 0, 30.0), ("score", 1, 32.0), ("trades", 0, 29.0), ("trades", 1, 28.0)]
    assert all((tmp_path / "evals" / f"{r['entry']}.json").is_file() for r in study["runs"])
    assert "paired by seed (n=2)" in res.output and "+2.50 ± 2.12" in res.output  # held-out: 1, 4
    entry = get_entry("score-s0")
    card = render_card(Entry(**{**entry.to_dict(), "studies": [str(out)], "builtin": False}))
    assert "## Seeds" in card and markdown(study) in card and "Data: 8 images" in card


def test_study_refuses_an_entry_without_held_out_accuracy(tmp_path, monkeypatch):
    monkeypatch.setenv("SCORE_ZOO_REGISTRY", str(tmp_path / "registry.json"))
    res = CliRunner().invoke(zoo_main, ["study", str(tmp_path / "s.json"), "--entry", "cifar10-linf"])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1
    with pytest.raises(ConfigError):
        from zoo.studies import study_row
        study_row("cifar10-linf")


def test_a_study_without_a_shared_seed_has_no_paired_row(tmp_path):
    """The two bundled entries: score seed 0 and trades seed 2."""
    out = tmp_path / "study.json"
    result = CliRunner().invoke(zoo_main, ["study", str(out), "--entry", "cifar10-linf-tiny",
                                           "--entry", "cifar10-linf-tiny-trades"])
    assert result.exit_code == 0, result.output
    assert "| **score** mean ± std (n=1) |" in result.output and "paired" not in result.output
    assert summary(load_study(out))["paired"] == {}


def test_duplicate_seeds_and_mixed_image_counts_are_refused(tmp_path):
    out = tmp_path / "study.json"
    result = CliRunner().invoke(zoo_main, ["study", str(out), "--entry", "cifar10-linf-tiny",
                                           "--entry", "cifar10-linf-tiny"])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "are both score with seed 0: a study counts seeds" in result.output and not out.exists()
    small = {**_row("trades", 1, 58, 21, 24), "n_examples": 8}
    with pytest.raises(ConfigError, match=r"AutoAttack figures are measured on different numbers of images "
                                          r"\(500 in 'score-0', 8 in 'trades-1'\)"):
        markdown({"runs": [_row("score", 0, 60, 20, 25), small]})
    with pytest.raises(ConfigError, match="'score-1' and 'score-1' are both score with seed 1"):
        summary({"runs": [_row("score", 1, 60, 20, 25), _row("score", 1, 62, 22, 26)]})
