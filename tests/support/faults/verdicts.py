"""What every fault scenario must hold, judged on the checker's result."""

from __future__ import annotations

from tests.support.faults.checker import Result


def assert_held(result: Result, pipe: object = None, refused: bool = True) -> None:
    if not result.passed and pipe is not None:
        pipe.dump_logs()  # type: ignore[attr-defined]
    assert result.lost == 0, result.line()
    assert result.duplicated == 0, result.line()
    assert result.failed_stored == 0, result.line()
    assert result.fields_differing == 0, result.line()
    if result.streamed_required:
        assert result.streamed_equal is not False, result.line()
    assert result.final_equal is not False, result.line()
    if refused:
        assert result.failed > 0, "no refused request: 'failed stored' could not have failed"


def assert_all_answered(result: Result) -> None:
    """No fault reached the collector: every valid event was acknowledged, every refused one refused."""
    assert result.unknown == 0 and result.ok + result.failed == result.sent, result.line()
