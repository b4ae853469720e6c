"""From per-variant counts to a report: comparisons, health checks, verdict (pure).

``build_report`` is the whole decision logic; the warehouse adapter only supplies counts
and the facts the health checks need, and the renderers only format ``Report``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eventpipe.reports.errors import ReportError, UnknownVariant
from eventpipe.reports.stats import Comparison, VariantCounts, compare, srm_p_value, too_small

ALPHA = 0.05  # significance level of the verdict (two-sided)
SRM_ALPHA = 0.001  # the usual SRM threshold: a stricter level, as the check runs on every report
MIN_USERS = 100


@dataclass(frozen=True)
class MultiExposure:
    """Users exposed to more than one variant (they count under their first)."""

    users: int
    exposed_users: int

    @property
    def share(self) -> float | None:
        return self.users / self.exposed_users if self.exposed_users else None


@dataclass(frozen=True)
class VariantResult:
    counts: VariantCounts
    comparison: Comparison | None  # None for the control itself


@dataclass
class Report:
    experiment: str
    goal: str
    control: str
    variants: list[VariantResult]
    srm_p_value: float | None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The documented JSON shape; absent numbers are ``None`` (JSON ``null``)."""
        rows = []
        for result in self.variants:
            c, cmp = result.counts, result.comparison
            rows.append(
                {
                    "variant": c.variant,
                    "users": c.users,
                    "converters": c.converters,
                    "rate": c.rate,
                    "lift": cmp.lift if cmp else None,
                    "ci95": list(cmp.ci95) if cmp and cmp.ci95 else [None, None],
                    "p_value": cmp.p_value if cmp else None,
                }
            )
        return {
            "experiment": self.experiment,
            "goal": self.goal,
            "control": self.control,
            "variants": rows,
            "srm_p_value": self.srm_p_value,
            "warnings": list(self.warnings),
        }


def _variants(
    counts: Sequence[VariantCounts], control: str, weights: Mapping[str, float] | None
) -> list[VariantCounts]:
    """Observed variants plus weighted ones nobody was assigned to; control first."""
    by_name = {c.variant: c for c in counts}
    if weights is not None:
        missing = sorted(set(by_name) - set(weights))
        if missing:
            raise ReportError(f"--weights must name every variant; missing: {', '.join(missing)}")
        for name in weights:
            by_name.setdefault(name, VariantCounts(name, 0, 0))
    if control not in by_name:
        known = ", ".join(sorted(by_name)) or "none"
        raise UnknownVariant(f"control variant {control!r} not found (variants: {known}); use --control")
    return [by_name[control]] + [by_name[name] for name in sorted(by_name) if name != control]


def build_report(
    experiment: str,
    goal: str,
    counts: Sequence[VariantCounts],
    control: str = "control",
    weights: Mapping[str, float] | None = None,
    min_users: int = MIN_USERS,
    multi_exposure: MultiExposure | None = None,
    extra_warnings: Iterable[str] = (),
) -> Report:
    ordered = _variants(counts, control, weights)
    base = ordered[0]
    results = [VariantResult(base, None)] + [VariantResult(c, compare(base, c)) for c in ordered[1:]]
    srm = srm_p_value(
        [c.users for c in ordered], [weights[c.variant] for c in ordered] if weights is not None else None
    )
    warnings: list[str] = []
    if len(ordered) < 2:
        warnings.append(f"one_variant: only {control!r} has users; there is nothing to compare yet")
    for c in ordered:
        reason = too_small(c, min_users)
        if reason:
            warnings.append(f"min_sample: variant {c.variant!r} has {reason}; too few for a conclusion")
    if srm is not None and srm < SRM_ALPHA:
        split = "the given weights" if weights is not None else "an even split"
        warnings.append(
            f"srm: sample ratio mismatch (p={srm:.2g}): assigned users do not match {split}; "
            "the assignment or the tracking is broken and the results are not trustworthy"
        )
    if multi_exposure is not None and multi_exposure.users:
        share = multi_exposure.share or 0.0
        warnings.append(
            f"multiple_variants: {multi_exposure.users} of {multi_exposure.exposed_users} exposed users "
            f"({share:.1%}) saw more than one variant; each counts under the first"
        )
    warnings.extend(extra_warnings)
    return Report(experiment, goal, control, results, srm, warnings)


def _pct(value: float) -> str:
    return f"{value:+.1%}"


def verdict(report: Report, alpha: float = ALPHA) -> str:
    """One plain-words sentence a PM can act on."""
    if len(report.variants) < 2:
        return "nothing to compare yet: only one variant"
    sentences = []
    for result in report.variants[1:]:
        cmp = result.comparison
        if cmp is None or cmp.p_value is None or cmp.p_value >= alpha:
            continue
        name, rate, base = result.counts.variant, result.counts.rate, report.variants[0].counts.rate
        better = rate is not None and base is not None and rate > base
        if cmp.lift is not None:
            size = _pct(cmp.lift)
        else:
            size = f"{((rate or 0.0) - (base or 0.0)) * 100:+.1f} points"
        relation = "beats" if better else "is worse than"
        sentences.append(f"{name} {relation} {report.control}: {size} (p={cmp.p_value:.2g})")
    text = "; ".join(sentences) if sentences else "no significant difference yet"
    if report.srm_p_value is not None and report.srm_p_value < SRM_ALPHA:
        text = f"do not trust this result (sample ratio mismatch): {text}"
    return text
