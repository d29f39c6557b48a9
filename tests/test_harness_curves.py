"""Robustness curves: nested eps lists, per-eps results and model_info, shards, resume, plots, bad lists."""

from __future__ import annotations

import json
import shutil
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.data import load_tensors
from harness.evaluation import evaluate
from harness.merge import merge_files
from zoo.results import EvaluationResult
from harness.threat_models import resolve_eps_list
from harness_helpers import bare_autoattack, centroid_model
from zoo.errors import ScoreZooError

KW = dict(n_examples=16, batch_size=8, version="custom", attacks=["apgd-ce", "apgd-t"], n_iter=5, seed=1,
          progress=False, workers=1)
EPS = "1/255,2/255,8/255"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _evaluate(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate("harness_helpers:centroid_model", **{**KW, **kw})


@pytest.fixture(scope="module")
def curve(tmp_path_factory):
    out = tmp_path_factory.mktemp("curve") / "model_info" / "cifar10" / "Linf" / "Centroid.json"
    return out, _evaluate(eps=EPS, out=out, model_info={"name": "Centroid"})


def test_nested_curve_per_eps_and_per_example(curve):
    out, result = curve
    ev = result.evaluation
    assert [p["eps_text"] for p in ev.curve] == ["1/255", "2/255", "8/255"]
    flags = [ev.robust_flags(text) for text in ("1/255", "2/255", "8/255")]
    for smaller, larger in zip(flags, flags[1:]):  # broken at a smaller eps means broken at every larger one
        assert all(s or not g for s, g in zip(smaller, larger))
    for point, f in zip(ev.curve, flags):
        assert point["robust_accuracy"] == pytest.approx(100 * sum(f) / len(f), abs=1e-4)
        assert list(point["robust_accuracy_after"].values())[-1] == point["robust_accuracy"]
    robust = [p["robust_accuracy"] for p in ev.curve]
    assert ev.clean_accuracy > robust[0] > robust[-1]  # the tiny linear model breaks along the way
    broken_at = ev.per_example["broken_at"]
    for o, b in zip(ev.per_example["outcome"], broken_at):
        assert (o is None) == (b is None) and (o == "clean") == (b == "0")
    assert set(broken_at) <= {None, "0", "1/255", "2/255", "8/255"} and "2/255" in broken_at

    # a single run at the smallest eps is the curve's first point, example by example, and the next point
    # is a bare AutoAttack call at 2/255 on the examples still robust at 1/255
    alone = _evaluate(eps="1/255").evaluation
    assert alone.robust_flags() == flags[0] and alone.robust_accuracy == robust[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = load_tensors("cifar10", "test", None, 16)
    kept = [i for i, f in enumerate(flags[0]) if f]
    _, y_adv, _ = bare_autoattack(centroid_model(), x[kept], y[kept], version="custom", attacks=["apgd-ce", "apgd-t"],
                                  n_iter=5, seed=1, batch_size=8, eps=2 / 255)
    assert [flags[1][i] for i in kept] == (y_adv == y[kept]).tolist()


def test_model_info_is_the_standard_budget_and_the_rest_stays_in_evaluation(curve):
    out, result = curve
    data = json.loads(out.read_text())
    assert data["eps"] == "8/255" and data["autoattack_acc"] == f"{result.evaluation.curve[-1]['robust_accuracy']:.2f}"
    assert data["evaluation"]["eps_text"] == "8/255" and len(data["evaluation"]["curve"]) == 3
    without = _evaluate(eps="1/255,2/255", n_examples=8).evaluation  # no standard budget: the keys describe the largest
    assert without.eps_text == "2/255"
    assert EvaluationResult.from_json(out).to_dict() == data


def test_curve_plots_and_the_leaderboard_figure(curve, tmp_path):
    out, _ = curve
    png, svg = out.with_name("Centroid.curve.png"), out.with_name("Centroid.curve.svg")
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    assert ET.parse(svg).getroot().tag.endswith("svg") and "harness_helpers:centroid_model" in svg.read_text()
    root = tmp_path / "model_info"
    shutil.copytree(out.parents[2], root)
    second = root / "cifar10" / "Linf" / "Other.json"
    _evaluate(eps="2/255,4/255,8/255", seed=2, out=second, model_info={"name": "Other"})
    figure = tmp_path / "curves.svg"
    res = CliRunner().invoke(main, ["leaderboard", str(root), "--dataset", "cifar10", "--curves", str(figure)])
    assert res.exit_code == 0, res.output
    assert "wrote 2 curve(s)" in res.stderr
    text = figure.read_text()
    assert "Centroid" in text and "Other" in text and ET.fromstring(text).tag.endswith("svg")
    res = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "nothing"), "--curves", str(figure)])
    assert res.exit_code == 1


def test_shards_merge_and_resume_per_eps(curve, tmp_path):
    _, full = curve
    shards = [tmp_path / f"s{k}.json" for k in range(2)]
    parts = [_evaluate(eps=EPS, shard=f"{k}/2", out=path).evaluation for k, path in enumerate(shards)]
    merged = merge_files(shards, tmp_path / "merged.json")
    assert merged.evaluation.per_example["broken_at"] == [b for p in parts for b in p.per_example["broken_at"]]
    assert merged.evaluation.segments == [[0, 8], [8, 16]]
    assert (tmp_path / "merged.curve.svg").is_file()

    out = tmp_path / "r.json"
    _evaluate(eps=EPS, out=out)
    last = sorted((tmp_path / "r.state").glob("*-L006-*.pt"))  # apgd-t at 8/255, as if killed there
    assert last
    for path in last:
        path.unlink()
    resumed = _evaluate(eps=EPS, out=out).evaluation
    assert resumed.per_example == full.evaluation.per_example and resumed.curve == full.evaluation.curve
    assert any("resumed:" in w["message"] for w in resumed.warnings)
    with pytest.raises(ScoreZooError, match="different evaluation"):
        _evaluate(eps="1/255,8/255", out=out)


def test_verify_a_curve(curve):
    out, _ = curve
    res = CliRunner().invoke(main, ["verify", str(out), "--n-examples", "8", "--json"])
    report = json.loads(res.stdout)
    assert report["consistent"] and report["per_example_agreement"] == 1.0
    assert res.exit_code == 1 and not report["verified"]      # the centroid model's indicators warn


def test_format_1_results_still_read():
    path = Path(__file__).parent / "data" / "score-harness-format1-result.json"  # written by the first harness
    data = json.loads(path.read_text())
    assert data["evaluation"]["format"] == "score-harness/1"
    ev = EvaluationResult.from_json(path).evaluation
    assert ev.eps_list() == [(ev.eps, ev.eps_text)] and ev.curve[0]["robust_accuracy"] == ev.robust_accuracy
    flags = ev.robust_flags()
    assert 100 * sum(flags) / len(flags) == pytest.approx(ev.robust_accuracy, abs=1e-4)


@pytest.mark.parametrize("args, message", [
    (["--eps", "8/255,2/255"], "not in increasing order (8/255 comes before 2/255)"),
    (["--eps", "2/255,2/255"], "repeats 2/255"),
    (["--eps", "2/255,0.00784313725490196"], "repeats"),
    (["--eps", "1/255,,2/255"], "empty entry"),
    (["--eps", "1/255,2/255", "--version", "rand"], "needs a deterministic model"),
    (["--eps", "1/255,2"], "out of range"),
])
def test_bad_eps_lists_are_one_line(args, message):
    res = CliRunner().invoke(main, ["evaluate", "harness_helpers:centroid_model", "--n-examples", "8", *args])
    lines = res.stderr.strip().splitlines()
    assert res.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], res.output


def test_eps_list_with_an_unknown_threat_model():
    with pytest.raises(ScoreZooError, match="unknown threat model 'Linf3'.*Did you mean: Linf"):
        resolve_eps_list("Linf3", "1/255,2/255")
    res = CliRunner().invoke(main, ["evaluate", "harness_helpers:centroid_model", "--threat-model", "corruptions",
                                    "--eps", "1/255,2/255"])
    assert res.exit_code == 2 and "Invalid value for '--threat-model'" in res.stderr
