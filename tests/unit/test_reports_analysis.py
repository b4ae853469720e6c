"""Report building: JSON shape, control handling, health warnings and the verdict."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from eventpipe.reports.analysis import MultiExposure, build_report, verdict
from eventpipe.reports.commands import parse_weights
from eventpipe.reports.errors import ReportError, UnknownVariant
from eventpipe.reports.freshness import LoadFacts, data_warnings, day_states, loader_stage, nightly_stage
from eventpipe.reports.render import to_json
from eventpipe.reports.stats import VariantCounts as V

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def _codes(warnings: list[str]) -> set[str]:
    return {w.split(":", 1)[0] for w in warnings}


def test_json_shape_is_exact() -> None:
    report = build_report("exp", "Order Completed", [V("control", 1000, 100), V("green", 1000, 140)])
    doc = json.loads(to_json(report.to_json()))
    assert list(doc) == ["experiment", "goal", "control", "variants", "srm_p_value", "warnings"]
    assert [list(v) for v in doc["variants"]] == [
        ["variant", "users", "converters", "rate", "lift", "ci95", "p_value"]
    ] * 2
    control, green = doc["variants"]
    assert control["variant"] == "control" and control["lift"] is None and control["ci95"] == [None, None]
    assert green["lift"] == pytest.approx(0.4)
    assert green["ci95"][0] < 0.04 < green["ci95"][1]
    assert green["p_value"] < 0.01
    assert doc["srm_p_value"] == pytest.approx(1.0)


def test_control_first_then_variants_by_name_and_custom_control() -> None:
    counts = [V("b", 10, 1), V("a", 10, 1), V("base", 10, 1)]
    report = build_report("exp", "g", counts, control="base")
    assert [r.counts.variant for r in report.variants] == ["base", "a", "b"]


def test_unknown_control_is_an_error_naming_the_variants() -> None:
    with pytest.raises(UnknownVariant, match="a, b"):
        build_report("exp", "g", [V("a", 10, 1), V("b", 10, 1)])


def test_weights_add_variants_without_users_and_drive_srm() -> None:
    report = build_report("exp", "g", [V("control", 500, 50)], weights={"control": 1, "green": 1})
    doc = report.to_json()
    assert [v["variant"] for v in doc["variants"]] == ["control", "green"]
    assert doc["variants"][1]["users"] == 0 and doc["variants"][1]["rate"] is None
    assert doc["variants"][1]["p_value"] is None and doc["variants"][1]["ci95"] == [None, None]
    assert doc["srm_p_value"] < 0.001
    assert {"srm", "min_sample"} <= _codes(report.warnings)
    json.loads(to_json(doc))  # no NaN anywhere


def test_weights_must_name_every_observed_variant() -> None:
    with pytest.raises(ReportError, match="green"):
        build_report("exp", "g", [V("control", 5, 1), V("green", 5, 1)], weights={"control": 1})


def test_one_variant_only() -> None:
    report = build_report("exp", "g", [V("control", 500, 50)])
    assert report.srm_p_value is None
    assert "one_variant" in _codes(report.warnings)
    assert verdict(report).startswith("nothing to compare")


def test_zero_converters_everywhere() -> None:
    report = build_report("exp", "g", [V("control", 300, 0), V("green", 300, 0)])
    green = report.to_json()["variants"][1]
    assert green["rate"] == 0.0 and green["lift"] is None and green["p_value"] == 1.0
    assert verdict(report) == "no significant difference yet"


def test_multiple_exposure_warning() -> None:
    report = build_report(
        "exp", "g", [V("control", 500, 50), V("b", 500, 50)], multi_exposure=MultiExposure(25, 1000)
    )
    (warning,) = [w for w in report.warnings if w.startswith("multiple_variants")]
    assert "25 of 1000" in warning and "2.5%" in warning


def test_verdicts() -> None:
    win = build_report("exp", "g", [V("control", 10_000, 1000), V("green", 10_000, 1123)])
    assert verdict(win).startswith("green beats control: +12.3% (p=")
    lose = build_report("exp", "g", [V("control", 10_000, 1000), V("red", 10_000, 800)])
    assert verdict(lose).startswith("red is worse than control: -20.0%")
    flat = build_report("exp", "g", [V("control", 10_000, 1000), V("blue", 10_000, 1010)])
    assert verdict(flat) == "no significant difference yet"
    from_zero = build_report("exp", "g", [V("control", 5000, 0), V("up", 5000, 100)])
    assert "+2.0 points" in verdict(from_zero)
    skewed = build_report("exp", "g", [V("control", 10_000, 1000), V("green", 12_000, 1400)])
    assert verdict(skewed).startswith("do not trust")


def test_parse_weights() -> None:
    assert parse_weights(None) is None
    assert parse_weights(["control=50", "green=50"]) == {"control": 50.0, "green": 50.0}
    assert parse_weights(["a=1,b=3"]) == {"a": 1.0, "b": 3.0}
    for bad in (["a"], ["a=0"], ["a=-1"], ["=1"], ["a=x"], ["a=nan"], ["a=inf"]):
        with pytest.raises(ReportError):
            parse_weights(bad)


def test_freshness_warnings() -> None:
    since = NOW - timedelta(days=2)
    fresh = LoadFacts(NOW - timedelta(minutes=1), NOW, 3, {date(2026, 11, 24), date(2026, 11, 25)})
    assert _codes(data_warnings(fresh, NOW, 10, since)) == {"provisional"}  # today is never final
    stale = LoadFacts(NOW - timedelta(hours=3), None, None, None)
    warnings = data_warnings(stale, NOW, 10, since)
    assert _codes(warnings) == {"stale", "provisional"}
    assert "3.0 h" in warnings[0]
    empty = LoadFacts(None, None, None, None)
    assert _codes(data_warnings(empty, NOW, 10, None)) == {"stale"}


def test_day_states_and_stages() -> None:
    facts = LoadFacts(NOW - timedelta(minutes=30), NOW, 7, {date(2026, 11, 24)})
    assert day_states(date(2026, 11, 24), date(2026, 11, 26), facts.final_days) == [
        (date(2026, 11, 24), "final"),
        (date(2026, 11, 25), "provisional"),
        (date(2026, 11, 26), "provisional"),
    ]
    assert day_states(date(2026, 11, 26), date(2026, 11, 26), None) == [(date(2026, 11, 26), "unknown")]
    assert loader_stage(facts, NOW, 10).state == "stale"
    assert loader_stage(facts, NOW, 60).state == "ok"
    assert nightly_stage(facts, NOW.date()).state == "ok"
    assert nightly_stage(facts, NOW.date() + timedelta(days=9)).state == "stale"
    assert nightly_stage(LoadFacts(None, None, None, None), NOW.date()).state == "unknown"
