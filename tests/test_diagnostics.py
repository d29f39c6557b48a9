"""Attack-failure indicators: each masked model is flagged by the right one, the bundled models by none."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from click.testing import CliRunner
from pyautoattack import checks

from harness import diagnostics as dg
from harness.cli import main
from harness.pictures import input_gradients
from zoo.errors import ConfigError

from masked_models import (bundled, dynamic_model, images, mean_sparse_model, quantized_model, randomized_model,
                           saturated_model)

EPS = 8 / 255
FAST = dg.IndicatorSettings(n_examples=16, iterations=(10, 20), large_eps_iter=5, square_queries=300)


def _by_name(records):
    return {r["name"]: r for r in records}


def test_records_verdicts_and_advice():
    """A figure above its threshold warns, at or below is ok, None is not measured. Broken by comparing with
    ``>=`` (a zero threshold would warn on every model)."""
    assert dg.indicator("dynamic", 0, 0, "")["verdict"] == "ok"
    assert dg.indicator("dynamic", 1, 0, "")["verdict"] == "warning"
    assert dg.indicator("black-box-beats-white-box", None, 0.2, "")["verdict"] == "ok"
    records = [dg.indicator("randomness", 1.0, 1e-4, ""), dg.indicator("dynamic", 0, 0, "")]
    assert dg.verdict(records) == "warning" and dg.verdict(records[1:]) == "ok"
    assert dg.advice(records) == ["randomness: the model is randomized: evaluate with --version rand --repeats K"]


def test_black_box_is_read_from_the_outcomes():
    """Only examples Square broke count (percent of all). Broken by counting every example the gradient
    attacks left robust (None) as Square's."""
    outcome = ["clean", "apgd-ce", "apgd-t", "square", None] * 100
    record = dg.black_box_beats_white_box(outcome)
    assert record["figure"] == 20.0 and record["verdict"] == "warning"
    assert dg.black_box_beats_white_box(["clean", "apgd-ce", None] * 200 + ["square"])["verdict"] == "ok"  # 0.17%


def test_silent_gradients_counts_zero_and_non_finite_gradients_at_either_point():
    """Broken by testing only the clean point, or only for exact zeros (NaN gradients pass)."""
    clean = torch.ones(4, 3, 2, 2)
    final = clean.clone()
    clean[0] = 0
    final[1, 0, 0, 0] = float("nan")
    record = dg.silent_gradients({"clean": clean, "final": final})
    assert record["figure"] == 50.0 and record["verdict"] == "warning" and "1 at the final point" in record["detail"]


def test_quantized_input_is_flagged_by_silent_gradients_and_unreachable_misclassification():
    """Rounding the input has zero gradient everywhere; APGD cannot even leave the clean point at 4x eps; with
    BPDA through the quantizer neither fires. Broken by computing the input gradients outside the BPDA context."""
    model = quantized_model()
    x, y = images(16)
    records = _by_name(dg.run_indicators(model, x, y, EPS, settings=FAST))
    assert records["silent-gradients"]["figure"] == 100.0
    assert records["unreachable-misclassification"]["verdict"] == "warning"
    assert records["randomness"]["verdict"] == records["dynamic"]["verdict"] == "ok"
    with_bpda = _by_name(dg.run_indicators(model, x, y, EPS, settings=FAST, bpda=["Quantize"]))
    assert with_bpda["silent-gradients"]["verdict"] == with_bpda["unreachable-misclassification"]["verdict"] == "ok"


def test_saturated_softmax_is_flagged_by_silent_gradients():
    """Logits x1000: the cross-entropy gradient underflows to exactly zero on confident examples. Broken by
    counting only non-finite gradients as silent."""
    x, y = images(16)
    grads = {"clean": input_gradients(saturated_model(), x, y)}
    assert dg.silent_gradients(grads)["verdict"] == "warning"
    assert dg.silent_gradients({"clean": input_gradients(bundled(), x, y)})["verdict"] == "ok"


def test_mean_sparse_threshold_is_flagged_by_black_box_beats_white_box():
    """Square breaks examples APGD-CE cannot, through the threshold's dead band (5 of 32). Broken by giving the
    figure as a fraction instead of a percent (5 of 32 would be 0.16, under the 0.2 threshold)."""
    model = mean_sparse_model()
    x, y = images(32)
    settings = dg.IndicatorSettings(n_examples=32, iterations=(25, 50), large_eps_iter=5, square_queries=1000)
    records = _by_name(dg.run_indicators(model, x, y, EPS, settings=settings))
    assert records["black-box-beats-white-box"]["figure"] >= 10, records["black-box-beats-white-box"]


def test_randomized_model_is_flagged_by_randomness_unless_evaluated_as_rand():
    """AutoAttack's check_randomized semantics. Broken by comparing one pass with itself."""
    x, y = images(16)
    assert dg.randomness(randomized_model(), x, y)["verdict"] == "warning"
    assert dg.randomness(randomized_model(), x, y, rand_version=True)["verdict"] == "ok"
    assert dg.randomness(bundled(), x, y)["figure"] == 0.0


def test_test_time_defense_is_flagged_by_dynamic_and_the_tracer_is_restored():
    """AutoAttack's tracer counts the autograd call in the forward pass; its counters and any earlier tracer
    are restored. Broken by leaving ``checks.funcs`` as AutoAttack does (a later model would inherit the count)."""
    x = images(2)[0]
    tracer = sys.gettrace()
    assert dg.dynamic(dynamic_model(), x)["figure"] >= 1
    assert dg.dynamic(bundled(), x)["verdict"] == "ok"
    assert sys.gettrace() is tracer and all(v == 0 for v in checks.funcs.values())


def test_an_attack_still_gaining_with_more_iterations_is_flagged_by_non_convergence(monkeypatch):
    """The bundled model falls to its robust accuracy within one APGD step, so the test slows APGD down: its
    budget grows with its iterations (8/255 at the last count), as an unconverged attack's success does.
    Broken by comparing the first two iteration counts of the sweep instead of the last two."""
    attack = dg._apgd
    monkeypatch.setattr(dg, "_apgd", lambda model, x, y, eps, tm, n_iter, *rest: attack(
        model, x, y, eps * n_iter / 8, tm, 1, *rest))
    x, y = images(32)
    settings = dg.IndicatorSettings(n_examples=32, iterations=(1, 2, 4, 8), large_eps_iter=1, square_queries=50)
    record = _by_name(dg.run_indicators(bundled(), x, y, EPS, settings=settings))["non-convergence"]
    assert record["verdict"] == "warning" and record["points"]["n_iter"] == [1, 2, 4, 8], record
    accuracy = record["points"]["robust_accuracy"]
    assert record["figure"] == pytest.approx(accuracy[-2] - accuracy[-1])


@pytest.mark.parametrize("name", ["cifar10-linf-tiny", "cifar10-linf-tiny-trades"])
def test_no_indicator_fires_on_the_bundled_models(name):
    """With diagnose's 2x and 4x eps. Broken by judging unreachable misclassification on every budget above
    eps (the 2x point keeps a few examples of a sound model)."""
    x, y = images(24)
    settings = dg.IndicatorSettings(n_examples=24, iterations=(50, 100), eps_factors=(2.0, 4.0), large_eps_iter=10,
                                    square_queries=300)
    records = dg.run_indicators(bundled(name), x, y, EPS, settings=settings)
    assert dg.verdict(records) == "ok", [r for r in records if r["verdict"] == "warning"]
    assert [r["name"] for r in records] == list(dg.INDICATORS)


def test_settings_out_of_range_are_one_line():
    """Broken by accepting a sweep whose last count is not twice the one before (non-convergence compares N, 2N)."""
    with pytest.raises(ConfigError, match="must increase and end with N, 2N"):
        dg.IndicatorSettings(iterations=(100, 150)).check()
    with pytest.raises(ConfigError, match="Lp threat model"):
        dg.run_indicators(bundled(), *images(2), EPS, "corruptions")


def test_diagnose_cli_table_json_and_picture(tmp_path):
    """The table names every indicator and what to do next; --json is the report; --plot writes the picture.
    Broken by printing advice for indicators that are ok."""
    runner = CliRunner()
    plot = tmp_path / "diagnosis.png"
    args = ["diagnose", "masked_models:quantized_model", "--n-examples", "8", "--n-iter", "4"]
    result = runner.invoke(main, args + ["--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "silent-gradients" in result.output and "verdict: warning" in result.output
    assert "next: silent-gradients:" in result.output and "next: randomness" not in result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = runner.invoke(main, args + ["--bpda", "Quantize", "--json"])
    report = json.loads(result.output)
    assert report["bpda"] == ["Quantize"] and report["iterations"] == [1, 2, 4, 8]
    assert _by_name(report["indicators"])["silent-gradients"]["verdict"] == "ok"


def test_diagnose_unknown_model_is_one_line():
    """Resolved as evaluate resolves MODEL. Broken by loading it with ``zoo.load_model`` (whose error does not
    name the other MODEL forms)."""
    result = CliRunner().invoke(main, ["diagnose", "cifar10-linf-nope"])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "no zoo entry called 'cifar10-linf-nope'" in result.output and "A MODEL may also be" in result.output


def test_evaluate_summary_says_which_indicators_fired_and_what_next():
    """``score-harness evaluate`` on a masked model ends with the verdict, the indicators that fired and the
    advice. Broken by printing the verdict alone."""
    args = ["evaluate", "masked_models:quantized_model", "--n-examples", "4", "--n-iter", "2", "--version", "custom",
            "--attacks", "apgd-ce", "--workers", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "attack-failure indicators: warning (silent-gradients, unreachable-misclassification)" in result.output
    assert "next: silent-gradients: gradients vanish" in result.output
    quiet = CliRunner().invoke(main, args + ["--no-diagnostics"])
    assert "attack-failure indicators" not in quiet.output
