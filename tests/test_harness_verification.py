"""verify's Clopper-Pearson interval, against scipy's exact binomial interval and closed forms."""

import math

import pytest
from scipy.stats import binomtest

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
