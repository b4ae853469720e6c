"""The report statistics against scipy and statsmodels on many generated cases."""

from __future__ import annotations

import math
import random
import warnings

import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from eventpipe.reports.stats import (
    VariantCounts,
    compare,
    diff_ci,
    relative_lift,
    srm_p_value,
    too_small,
    z_test_p_value,
)


def _cases(n: int, seed: int) -> list[tuple[VariantCounts, VariantCounts]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        nc, nt = rng.choice([1, 2, 10, 50, 500, 5000, 200_000]), rng.randint(1, 100_000)
        pc, pt = rng.random(), rng.random()
        if rng.random() < 0.3:  # small effects: p-values near the interesting range
            pt = min(1.0, max(0.0, pc + rng.uniform(-0.02, 0.02)))
        xc = sum(rng.random() < pc for _ in range(nc)) if nc <= 500 else round(nc * pc)
        xt = round(nt * pt)
        out.append((VariantCounts("control", nc, xc), VariantCounts("t", nt, xt)))
    return out


CASES = _cases(400, seed=11)


def _pooled_variance_is_zero(c: VariantCounts, t: VariantCounts) -> bool:
    pooled = (c.converters + t.converters) / (c.users + t.users)
    return pooled in (0.0, 1.0)


@pytest.mark.parametrize("i", range(0, len(CASES), 1))
def test_p_value_matches_statsmodels_and_scipy(i: int) -> None:
    c, t = CASES[i]
    ours = z_test_p_value(c, t)
    assert ours is not None and 0.0 <= ours <= 1.0
    if _pooled_variance_is_zero(c, t):
        assert ours == 1.0  # equal rates, no evidence of a difference
        return
    _, sm_p = proportions_ztest([t.converters, c.converters], [t.users, c.users])
    assert ours == pytest.approx(sm_p, rel=1e-6, abs=1e-300)
    # independent route: chi-square of the 2x2 table without correction equals z**2
    table = [[t.converters, t.users - t.converters], [c.converters, c.users - c.converters]]
    chi2_p = sps.chi2_contingency(table, correction=False).pvalue
    assert ours == pytest.approx(chi2_p, rel=1e-6, abs=1e-300)


@pytest.mark.parametrize("i", range(len(CASES)))
def test_wald_interval_matches_statsmodels(i: int) -> None:
    c, t = CASES[i]
    lo, hi = diff_ci(c, t)  # type: ignore[misc]
    sm_lo, sm_hi = confint_proportions_2indep(
        t.converters, t.users, c.converters, c.users, method="wald", compare="diff"
    )
    assert lo == pytest.approx(sm_lo, abs=1e-9)
    assert hi == pytest.approx(sm_hi, abs=1e-9)
    assert lo <= t.rate - c.rate <= hi  # type: ignore[operator]


def test_lift_is_relative() -> None:
    assert relative_lift(VariantCounts("c", 100, 10), VariantCounts("t", 200, 23)) == pytest.approx(0.15)


@pytest.mark.parametrize("seed", range(60))
def test_srm_matches_scipy_chisquare(seed: int) -> None:
    rng = random.Random(seed)
    k = rng.randint(2, 5)
    weights = [rng.uniform(0.5, 5) for _ in range(k)] if seed % 2 else None
    users = [rng.randint(0, 20_000) for _ in range(k)]
    if sum(users) == 0:
        users[0] = 1
    ours = srm_p_value(users, weights)
    w = weights or [1.0] * k
    expected = [sum(users) * x / sum(w) for x in w]
    assert ours == pytest.approx(sps.chisquare(users, expected).pvalue, rel=1e-9, abs=1e-300)


def test_srm_detects_a_skewed_split_and_accepts_an_even_one() -> None:
    assert srm_p_value([5000, 5000]) == pytest.approx(1.0)
    assert srm_p_value([5000, 5400]) < 0.001  # type: ignore[operator]
    assert srm_p_value([2000, 8000], [20, 80]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "control, treatment",
    [
        (VariantCounts("c", 0, 0), VariantCounts("t", 100, 5)),  # zero users
        (VariantCounts("c", 100, 5), VariantCounts("t", 0, 0)),
        (VariantCounts("c", 0, 0), VariantCounts("t", 0, 0)),
        (VariantCounts("c", 100, 0), VariantCounts("t", 100, 7)),  # control never converts
        (VariantCounts("c", 100, 0), VariantCounts("t", 100, 0)),  # nobody converts
        (VariantCounts("c", 100, 100), VariantCounts("t", 50, 50)),  # everybody converts
        (VariantCounts("c", 1, 1), VariantCounts("t", 1, 0)),
    ],
)
def test_edge_cases_give_numbers_or_none_never_nan(control: VariantCounts, treatment: VariantCounts) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = compare(control, treatment)
    values = [result.lift, result.p_value, *(result.ci95 or ())]
    assert all(v is None or math.isfinite(v) for v in values)
    if control.users == 0 or treatment.users == 0:
        assert result.p_value is None and result.ci95 is None
    if control.converters == 0:
        assert result.lift is None


def test_srm_edge_cases() -> None:
    assert srm_p_value([100]) is None  # one variant only
    assert srm_p_value([0, 0]) is None
    assert srm_p_value([0, 10]) is not None
    with pytest.raises(ValueError):
        srm_p_value([1, 2], [1, 0])


def test_counts_are_validated() -> None:
    with pytest.raises(ValueError):
        VariantCounts("x", 3, 4)


def test_minimum_sample() -> None:
    assert too_small(VariantCounts("x", 99, 50), 100) is not None
    assert too_small(VariantCounts("x", 1000, 3), 100) is not None  # too few converters
    assert too_small(VariantCounts("x", 1000, 998), 100) is not None  # too few non-converters
    assert too_small(VariantCounts("x", 1000, 100), 100) is None
