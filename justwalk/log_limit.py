"""Rate-limited logging for the Kafka and InfluxDB paths.

While a broker or InfluxDB is down, every chunk, fetch and retry can log the same line: the
signal drowns in thousands of copies. ``RepeatLimit`` is a ``logging.Filter`` that lets
through at most ``burst`` records of one kind (logger, level and message template) per
``interval_s``; the first record of the kind let through after that says how many were
suppressed. ``limit_repeated_logs`` installs one on the root logger's handlers, for the
project's Kafka and InfluxDB loggers and aiokafka's; every ``justwalk`` process does so
when it sets up logging (``justwalk.cli``).

Records below WARNING and loggers outside ``prefixes`` pass untouched.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

KAFKA_AND_INFLUX_LOGGERS = (
    "aiokafka",
    "ingest.publisher",
    "ingest.intake",
    "stream_processors.app",
    "stream_processors.kafka_io",
    "sinks.kafka_sink",
    "sinks.dead_letters",
    "sinks.influx",
    "sinks.alerts.service",
    "justwalk.kafka_topics",
)
"""Loggers ``limit_repeated_logs`` limits by default (and their children)."""

MAX_KINDS = 1000
"""Kinds of records remembered (least recently seen forgotten first)."""


@dataclass(slots=True)
class _Kind:
    window_start: float
    passed: int = 0
    suppressed: int = 0


class RepeatLimit(logging.Filter):
    """At most ``burst`` records of a kind per ``interval_s``; see the module docstring."""

    def __init__(self, *, interval_s: float = 10.0, burst: int = 5,
                 level: int = logging.WARNING,
                 prefixes: Iterable[str] = KAFKA_AND_INFLUX_LOGGERS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        if burst < 1 or interval_s <= 0:
            raise ValueError("burst must be >= 1 and interval_s > 0")
        self.interval_s = interval_s
        self.burst = burst
        self.level = level
        self.prefixes = tuple(prefixes)
        self.clock = clock
        self._kinds: OrderedDict[tuple[str, int, str], _Kind] = OrderedDict()
        self.suppressed_ = 0
        """Records suppressed so far (all kinds)."""

    def _limited(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a record to drop; the first one let through after drops says so."""
        if record.levelno < self.level or not self._limited(record.name):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._kinds[key] = _Kind(now)
            if len(self._kinds) > MAX_KINDS:
                self._kinds.popitem(last=False)
        else:
            self._kinds.move_to_end(key)
        if now - kind.window_start >= self.interval_s:
            kind.window_start, kind.passed = now, 0
        if kind.passed >= self.burst:
            kind.suppressed += 1
            self.suppressed_ += 1
            return False
        kind.passed += 1
        if kind.suppressed:
            record.msg = (f"{record.getMessage()} [{kind.suppressed} similar messages "
                          f"suppressed]")
            record.args = None
            kind.suppressed = 0
        return True


def limit_repeated_logs(**options: object) -> RepeatLimit:
    """Install one ``RepeatLimit`` on every handler of the root logger (once); return it.

    ``options`` go to ``RepeatLimit`` the first time; later calls return the installed one.
    """
    root = logging.getLogger()
    installed = [f for h in root.handlers for f in h.filters if isinstance(f, RepeatLimit)]
    limit = installed[0] if installed else RepeatLimit(**options)  # type: ignore[arg-type]
    for handler in root.handlers:  # handlers added since get it too
        if not any(isinstance(f, RepeatLimit) for f in handler.filters):
            handler.addFilter(limit)
    return limit
