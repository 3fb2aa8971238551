"""``Pipeline.start`` returns only once every consumer owns partitions.

Its processor readiness once matched any "assigned partitions" in the log, and aiokafka
logs "Revoking previously assigned partitions set()" as a group join *begins*: ``start``
returned about 6 s before the processor owned anything (the group join waits up to
``kafka_rebalance_timeout_s``, then the states are read), and a device streaming at 6x real
time had its first cadence cues delayed by up to 4 s (``benchmarks.walk_test``). The lines
below are a processor's and a sink's log of such a start, as ``justwalk.cli`` formats them.
"""

from __future__ import annotations

from justwalk.pipeline import consumer_ready

JOINING = """\
2026-12-07 23:10:39,418 INFO stream_processors.app: compiled kernels ready in 16.7 s
2026-12-07 23:10:39,444 INFO aiokafka.consumer.consumer: Subscribed to topic(s): {'imu.chunks'}
2026-12-07 23:10:39,454 INFO aiokafka.consumer.group_coordinator: Revoking previously \
assigned partitions set() for group justwalk-processor
2026-12-07 23:10:39,454 INFO aiokafka.consumer.group_coordinator: (Re-)joining group \
justwalk-processor
2026-12-07 23:10:44,463 INFO aiokafka.consumer.group_coordinator: Setting newly assigned \
partitions {TopicPartition(topic='imu.chunks', partition=0)} for group justwalk-processor
2026-12-07 23:10:45,465 INFO aiokafka.consumer.consumer: Unsubscribed all topics or patterns \
and assigned partitions
"""
OWNS = "2026-12-07 23:10:45,466 INFO stream_processors.app: assigned partitions [0, 1, 2, 3] " \
       "(states read in 1.00 s)\n"


def test_the_processor_is_ready_only_once_it_says_so_itself() -> None:
    assert not consumer_ready("processor", JOINING)
    assert consumer_ready("processor", JOINING + OWNS)


def test_the_sink_and_alert_service_likewise() -> None:
    sink_joining = JOINING.replace("justwalk-processor", "justwalk-sink")
    assert not consumer_ready("sink", sink_joining)
    assert consumer_ready("sink", sink_joining + "2026-12-07 23:10:26,896 INFO "
                          "sinks.kafka_sink: sink assigned 32 partitions\n")
    assert not consumer_ready("alerts", JOINING)
    assert consumer_ready("alerts", "2026-12-07 23:10:26,896 INFO sinks.alerts.service: "
                          "alert service assigned 8 partitions\n")
