"""Two-proportion statistics for experiment reports (pure, no I/O).

Every function returns ``None`` where a number does not exist (a variant without users,
a control that never converts, a single variant): callers print "n/a" and JSON gets
``null``, never NaN or an exception. Conventions, matching the usual references
(statsmodels ``proportions_ztest`` and ``confint_proportions_2indep(method="wald")``,
scipy ``chisquare``):

- ``p_value``: two-sided two-proportion z-test with the pooled variance.
  When the pooled variance is zero (nobody or everybody converted in both groups) the
  rates are equal and there is no evidence of a difference: ``p_value = 1.0``.
- ``ci95``: Wald interval of the difference ``rate(treatment) - rate(control)`` with the
  unpooled variance.
- ``lift``: relative, ``rate(treatment) / rate(control) - 1``.
- SRM: Pearson chi-square of assigned users against expected shares (even split unless
  weights are given), ``k - 1`` degrees of freedom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from scipy.stats import chi2

Z_95 = NormalDist().inv_cdf(0.975)  # 1.959963984540054


@dataclass(frozen=True)
class VariantCounts:
    variant: str
    users: int
    converters: int

    def __post_init__(self) -> None:
        if self.users < 0 or not 0 <= self.converters <= self.users:
            raise ValueError(f"variant {self.variant!r}: need 0 <= converters <= users")

    @property
    def rate(self) -> float | None:
        return self.converters / self.users if self.users else None


@dataclass(frozen=True)
class Comparison:
    """A treatment against the control; every field None when it cannot be computed."""

    lift: float | None
    ci95: tuple[float, float] | None
    p_value: float | None


def finite(value: float | None) -> float | None:
    """``None`` for NaN and infinities: what may safely go into JSON."""
    return value if value is not None and math.isfinite(value) else None


def relative_lift(control: VariantCounts, treatment: VariantCounts) -> float | None:
    rc, rt = control.rate, treatment.rate
    if rc is None or rt is None or rc == 0:
        return None
    return rt / rc - 1.0


def diff_ci(control: VariantCounts, treatment: VariantCounts, z: float = Z_95) -> tuple[float, float] | None:
    """Wald (unpooled) interval of ``rate(treatment) - rate(control)``."""
    rc, rt = control.rate, treatment.rate
    if rc is None or rt is None:
        return None
    se = math.sqrt(rc * (1 - rc) / control.users + rt * (1 - rt) / treatment.users)
    diff = rt - rc
    return (diff - z * se, diff + z * se)


def z_test_p_value(control: VariantCounts, treatment: VariantCounts) -> float | None:
    """Two-sided pooled two-proportion z-test; ``erfc`` keeps tiny p-values precise."""
    if control.users == 0 or treatment.users == 0:
        return None
    pooled = (control.converters + treatment.converters) / (control.users + treatment.users)
    variance = pooled * (1 - pooled) * (1 / control.users + 1 / treatment.users)
    if variance <= 0:
        return 1.0
    z = (treatment.converters / treatment.users - control.converters / control.users) / math.sqrt(variance)
    return min(1.0, math.erfc(abs(z) / math.sqrt(2)))


def compare(control: VariantCounts, treatment: VariantCounts) -> Comparison:
    ci = diff_ci(control, treatment)
    return Comparison(
        lift=finite(relative_lift(control, treatment)),
        ci95=(ci[0], ci[1]) if ci and all(math.isfinite(x) for x in ci) else None,
        p_value=finite(z_test_p_value(control, treatment)),
    )


def srm_p_value(users: Sequence[int], weights: Sequence[float] | None = None) -> float | None:
    """Chi-square goodness of fit of assigned users to the expected split.

    ``None`` with fewer than two variants or no users at all. Weights must be positive.
    """
    if len(users) < 2 or sum(users) == 0:
        return None
    weights = list(weights) if weights is not None else [1.0] * len(users)
    if len(weights) != len(users) or any(w <= 0 or not math.isfinite(w) for w in weights):
        raise ValueError("one positive weight per variant is required")
    total, weight_sum = sum(users), sum(weights)
    expected = [total * w / weight_sum for w in weights]
    statistic = sum((o - e) ** 2 / e for o, e in zip(users, expected, strict=True))
    return finite(float(chi2.sf(statistic, len(users) - 1)))


def too_small(counts: VariantCounts, min_users: int) -> str | None:
    """Why a variant is too small for a conclusion, or None.

    Two checks: a floor on users, and the normal approximation's rule of thumb (at least
    5 converters and 5 non-converters) that the z-test and the Wald interval rely on.
    """
    if counts.users < min_users:
        return f"{counts.users} users (< {min_users})"
    non_converters = counts.users - counts.converters
    if min(counts.converters, non_converters) < 5:
        return f"{counts.converters} converters of {counts.users} users (need >= 5 of each outcome)"
    return None
