"""What the collector's clients saw through a fault, from the load's timeline: the share
of answers that were 2xx and the longest run of 503s; and which broker leads a topic."""

from __future__ import annotations

from collections import Counter

from eventpipe.settings import Settings
from tests.support.faults.load import Outcomes


def answers_2xx_share(outcomes: Outcomes) -> float:
    """2xx among the requests a healthy collector would accept: the load's deliberately
    refused ones (4xx, a bad write key) are left out, timeouts and 5xx counted against."""
    with outcomes.lock:
        statuses = [status for _, _, status in outcomes.timeline if not status.startswith("4")]
    if not statuses:
        raise ValueError("no request was answered: no share to report")
    return sum(status.startswith("2") for status in statuses) / len(statuses)


def longest_503_window(outcomes: Outcomes) -> float:
    """Seconds from the sending of the first to the answer of the last request of the
    longest run of consecutive 503 answers (in answer order, 4xx ignored); 0 if none."""
    with outcomes.lock:
        answered = sorted((done, sent, status) for sent, done, status in outcomes.timeline)
    longest, run_start = 0.0, None
    for done, sent, status in answered:
        if status.startswith("4"):
            continue
        if status != "503":
            run_start = None
            continue
        run_start = sent if run_start is None else min(run_start, sent)
        longest = max(longest, done - run_start)
    return longest


def first_2xx_after(outcomes: Outcomes, moment: float) -> float | None:
    """Seconds from ``moment`` (monotonic) to the first 2xx answer of a request sent after
    it: how long the collector took to accept writes again; None if it never did."""
    with outcomes.lock:
        answers = [
            done for sent, done, status in outcomes.timeline if sent > moment and status.startswith("2")
        ]
    return min(answers) - moment if answers else None


def leading_broker(settings: Settings, topic: str) -> int:
    """The node id leading most partitions of ``topic`` (ties: the lowest id)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=10000)
    try:
        (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    leaders = Counter(p["leader_id"] for p in described["partitions"] if p["leader_id"] >= 0)
    if not leaders:
        raise RuntimeError(f"topic {topic!r} has no partition leader: {described}")
    return min(leaders, key=lambda node: (-leaders[node], node))
