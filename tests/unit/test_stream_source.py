"""The record source's pure parts: a consumed batch split into per-partition runs, and the
pipeline's ``_in_sequence`` on those runs (continue, rewind, skip what was folded)."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from aiokafka.errors import KafkaError as AiokafkaError
from confluent_kafka import KafkaError, KafkaException, Message

from eventpipe.settings import Settings
from eventpipe.stream.batch import PartitionBatch
from eventpipe.stream.cuts import CutPolicy
from eventpipe.stream.metrics import StreamMetrics
from eventpipe.stream.partition import Owned
from eventpipe.stream.pipeline import Pipeline
from eventpipe.stream.source import LibrdkafkaRecords, Run, runs
from tests.support.clock import ManualClock

TP = TopicPartition("events", 3)


def message(partition: int, offset: int) -> Message:
    return Message(topic="events", partition=partition, offset=offset, value=b"v%d.%d" % (partition, offset))


def test_a_batch_splits_into_runs_per_partition_in_consumed_order() -> None:
    # librdkafka hands out a fetch's partitions in runs, one partition possibly in several
    consumed = [message(0, 7), message(0, 8), message(2, 1), message(0, 9), message(2, 2), message(5, 0)]
    assert runs(consumed) == {
        0: ([7, 8, 9], [b"v0.7", b"v0.8", b"v0.9"]),
        2: ([1, 2], [b"v2.1", b"v2.2"]),
        5: ([0], [b"v5.0"]),
    }
    assert runs([]) == {}


def test_error_events_carry_no_record_and_a_fatal_one_is_raised() -> None:
    eof = Message(topic="events", partition=0, offset=9, error=KafkaError(KafkaError._PARTITION_EOF))
    assert runs([message(0, 7), eof, message(0, 8)]) == {0: ([7, 8], [b"v0.7", b"v0.8"])}
    fatal = Message(error=KafkaError(KafkaError._FATAL, "fenced", fatal=True))
    with pytest.raises(KafkaException):
        runs([message(0, 7), fatal])


def test_records_librdkafka_could_not_read_stop_the_fetch_instead_of_leaving_a_gap() -> None:
    # a bad CRC or compression comes as an error at the records' offset, and librdkafka skips
    # them: skipped here too, the next run would start past them and be taken after a rewind
    unreadable = Message(topic="events", partition=0, offset=8, error=KafkaError(KafkaError._BAD_MSG))
    with pytest.raises(KafkaException):
        runs([message(0, 7), unreadable, message(0, 9)])
    gone = Message(topic="events", partition=4, error=KafkaError(KafkaError._UNKNOWN_PARTITION))
    with pytest.raises(KafkaException):
        runs([gone])
    # a broker that went away: librdkafka reconnects and fetches on; nothing is missing
    transport = Message(error=KafkaError(KafkaError._TRANSPORT, "broker down"))
    assert runs([message(0, 7), transport, message(0, 8)]) == {0: ([7, 8], [b"v0.7", b"v0.8"])}


def test_librdkafka_errors_in_a_seek_come_as_aiokafkas_and_leave_the_partition_not_ours() -> None:
    # the pipeline's callers handle aiokafka's KafkaError (a failed seek: not ours any more);
    # here librdkafka never had the partition, so its unassign fails (no broker is needed)
    records = LibrdkafkaRecords(Settings(kafka_bootstrap="127.0.0.1:1"), group=None)  # type: ignore[arg-type]
    try:
        records.assigned.add(TP.partition)
        with pytest.raises(AiokafkaError):
            records.seek(TP, 5)
        with pytest.raises(IllegalStateError):  # not assigned: as aiokafka's seek
            records.seek(TP, 5)
    finally:
        records.consumer.close()


class Seeks:
    """Only what ``_in_sequence`` calls on the record source."""

    def __init__(self) -> None:
        self.sought: list[int] = []

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought.append(offset)


def sequenced(next_offset: int, offsets: list[int], rewound: bool = False) -> tuple[Run | None, Owned, Seeks]:
    pipe = Pipeline(Settings(), StreamMetrics())
    pipe.records = source = Seeks()  # type: ignore[assignment]
    batch = PartitionBatch(TP.partition, CutPolicy(10, 1 << 20, 10, ManualClock()))
    part = Owned(TP, batch, next_offset=next_offset, rewound=rewound)
    values = [b"%d" % o for o in offsets]
    return pipe._in_sequence(part, (offsets, values)), part, source


def test_a_run_that_continues_the_partition_is_taken_whole() -> None:
    run, _, source = sequenced(10, [10, 11, 12])
    assert run == ([10, 11, 12], [b"10", b"11", b"12"])
    assert source.sought == []


def test_what_was_folded_already_is_skipped() -> None:
    run, _, source = sequenced(12, [10, 11, 12, 13])
    assert run == ([12, 13], [b"12", b"13"])
    assert sequenced(14, [10, 11, 12, 13])[0] is None
    assert source.sought == []


def test_a_run_beyond_the_partition_rewinds_and_the_next_is_taken_from_there() -> None:
    run, part, source = sequenced(10, [15, 16])
    assert run is None and source.sought == [10] and part.rewound and part.seeks == 1
    # after the seek, whatever comes first is taken (offsets may have gaps), once
    run, part, source = sequenced(10, [12, 13], rewound=True)
    assert run == ([12, 13], [b"12", b"13"]) and not part.rewound and source.sought == []
