import logging

import pytest

from justwalk.log_limit import RepeatLimit, limit_repeated_logs


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_burst_per_interval_then_one_line_says_how_many_were_suppressed() -> None:
    clock = Clock()
    limit = RepeatLimit(interval_s=10.0, burst=3, clock=clock)
    passed = [limit.filter(record("aiokafka", "Unable connect to node %s", i))
              for i in range(100)]
    assert passed == [True] * 3 + [False] * 97
    assert limit.suppressed_ == 97
    clock.t = 10.5
    r = record("aiokafka", "Unable connect to node %s", 7)
    assert limit.filter(r)
    assert r.getMessage() == "Unable connect to node 7 [97 similar messages suppressed]"
    r = record("aiokafka", "Unable connect to node %s", 8)
    assert limit.filter(r) and r.getMessage() == "Unable connect to node 8"


def test_kinds_are_counted_apart_and_other_loggers_and_info_pass() -> None:
    limit = RepeatLimit(interval_s=10.0, burst=1, clock=Clock())
    assert limit.filter(record("sinks.kafka_sink", "InfluxDB write failed (%s)", "a"))
    assert not limit.filter(record("sinks.kafka_sink", "InfluxDB write failed (%s)", "b"))
    assert limit.filter(record("sinks.kafka_sink", "offset commit failed (%r)", "x"))
    assert limit.filter(record("ingest.intake.sub", "could not store chunk %s", 1))
    assert not limit.filter(record("ingest.intake.sub", "could not store chunk %s", 2))
    for _ in range(5):  # not a Kafka/Influx logger; below WARNING
        assert limit.filter(record("justwalk.gait", "x"))
        assert limit.filter(record("aiokafka", "joined", level=logging.INFO))


def test_installed_once_on_the_root_handlers() -> None:
    handler = logging.StreamHandler()
    root = logging.getLogger()
    saved = [logging.getLogger().handlers]
    root.handlers = [handler]
    try:
        first = limit_repeated_logs(burst=2)
        assert limit_repeated_logs() is first
        assert sum(isinstance(f, RepeatLimit) for f in handler.filters) == 1
    finally:
        root.handlers = saved[0]


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        RepeatLimit(burst=0)
