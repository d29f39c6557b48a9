"""verify's Clopper-Pearson interval, against scipy's exact binomial interval and closed forms; verify re-checks
the attack-failure indicators."""

import json
import math
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner
from scipy.stats import binomtest

from harness.cli import main
from harness.evaluation import evaluate
from harness.verification import clopper_pearson


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 16), (3, 16), (16, 16), (1, 2), (50, 100), (161, 1000),
                                 (9_999, 10_000)])
@pytest.mark.parametrize("confidence", [0.95, 0.99])
def test_clopper_pearson_equals_scipys_exact_interval(k, n, confidence):
    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    low, high = clopper_pearson(k, n, confidence)
    assert low == pytest.approx(ci.low, abs=1e-12) and high == pytest.approx(ci.high, abs=1e-12)


def test_clopper_pearson_closed_forms():
    # k = 0: P(X = 0) = (1 - p)^n = alpha / 2 at the upper end; k = n: p^n = alpha / 2 at the lower end
    assert clopper_pearson(0, 10) == (0.0, pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-12))
    assert clopper_pearson(10, 10) == (pytest.approx(0.025 ** (1 / 10), abs=1e-12), 1.0)
    # k = 1 of n = 2: 1 - (1 - p)^2 = 0.025 at the lower end, 1 - p^2 = 0.025 at the upper end
    assert clopper_pearson(1, 2) == (pytest.approx(1 - math.sqrt(0.975), abs=1e-12),
                                     pytest.approx(math.sqrt(0.975), abs=1e-12))
    # the interval is exact, so wider than the normal approximation's 0.5 +- 1.96 * sqrt(0.25 / 100)
    low, high = clopper_pearson(50, 100)
    assert low < 0.5 - 1.96 * 0.05 and high > 0.5 + 1.96 * 0.05


QUICK = dict(batch_size=8, version="custom", attacks=["apgd-ce"], n_iter=2, progress=False, workers=1)


def _result(tmp_path, model: str, name: str, n_examples: int = 8, **kw) -> Path:
    path = tmp_path / f"{name}.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate(model, n_examples=n_examples, out=path, **QUICK, **kw)
    return path


def _verify(path: Path) -> tuple[int, dict, str]:
    as_json = CliRunner().invoke(main, ["verify", str(path), "--workers", "1", "--json"])
    text = CliRunner().invoke(main, ["verify", str(path), "--workers", "1"])
    return as_json.exit_code, json.loads(as_json.stdout), text.stdout


def test_verify_rechecks_the_indicators_and_a_warning_is_no_clean_verification(tmp_path):
    """A sound model verifies (recorded ok, re-checked ok; a result without indicators is re-checked too); a
    masked one is consistent yet FLAGGED, exit 1, with the indicators that fired, recorded and re-checked.
    Broken by calling every consistent claim CONSISTENT whatever the indicators say."""
    code, report, text = _verify(_result(tmp_path, "cifar10-linf-tiny", "tiny"))
    assert code == 0 and report["verified"] and report["diagnostics_problems"] == []
    assert (report["recorded_diagnostics"], report["rechecked_diagnostics"]) == ("ok", "ok")
    assert text.startswith("CONSISTENT: ") and "indicators recorded ok, re-checked ok" in text
    code, report, _ = _verify(_result(tmp_path, "cifar10-linf-tiny", "unchecked", diagnostics=False))
    assert code == 0 and (report["recorded_diagnostics"], report["rechecked_diagnostics"]) == ("not checked", "ok")
    masked = _result(tmp_path, "masked_models:quantized_model", "masked", n_examples=4)
    records = json.loads(masked.read_text())["evaluation"]["diagnostics"]["indicators"]
    fired = ", ".join(r["name"] for r in records if r["verdict"] == "warning")
    code, report, text = _verify(masked)
    assert code == 1 and report["consistent"] and not report["verified"]
    assert report["recorded_diagnostics"] == report["rechecked_diagnostics"] == f"warning ({fired})"
    assert text.startswith("FLAGGED: ") and "CONSISTENT" not in text
    assert f"FLAGGED: the re-checked indicators warn ({fired})" in text.splitlines()
    assert any(p.startswith(f"the result's own indicators warn ({fired})") for p in report["diagnostics_problems"])


def test_verify_reports_a_rechecked_verdict_that_differs_from_the_recorded_one(tmp_path):
    """A masked model's result whose recorded indicators say ok (as a file edited, or written by an older
    harness, would): the re-check warns and says that the verdicts differ. Broken by comparing nothing but the
    re-checked verdict."""
    masked = _result(tmp_path, "masked_models:quantized_model", "masked", n_examples=4)
    data = json.loads(masked.read_text())
    diagnostics = data["evaluation"]["diagnostics"]
    diagnostics["verdict"] = "ok"
    for record in diagnostics["indicators"]:
        record["verdict"] = "ok"
    masked.write_text(json.dumps(data))
    code, report, text = _verify(masked)
    assert code == 1 and report["recorded_diagnostics"] == "ok" and report["rechecked_diagnostics"].startswith("warning")
    assert "FLAGGED: the re-checked verdict (warning) differs from the recorded one (ok)" in text.splitlines()
