"""Latency from the gateway's receipt of a chunk to its records being stored in InfluxDB.

The gateway stamps each chunk with its wall-clock receipt time (Kafka header
``jw-received-us``); the processor copies it onto the records the chunk made; the sink,
once InfluxDB has acknowledged a batch (from then on its points are queryable), adds the
age of each record to a ``LatencyLog``, which summarises and resets per reporting period.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Percentiles of the latencies of one period, in seconds."""

    n: int
    p50_s: float
    p90_s: float
    p99_s: float
    max_s: float

    def __str__(self) -> str:
        return (f"n={self.n} p50={self.p50_s:.3f}s p90={self.p90_s:.3f}s "
                f"p99={self.p99_s:.3f}s max={self.max_s:.3f}s")


class LatencyLog:
    """Latencies (s) of the current period; ``summary`` and ``reset`` close it."""

    def __init__(self) -> None:
        self._values = array("d")

    def add(self, now_us: int, received_us: list[int]) -> None:
        """Record the ages at ``now_us`` of records received at ``received_us``."""
        self._values.extend((now_us - r) / 1e6 for r in received_us)

    def add_ages(self, ages_s: list[float]) -> None:
        """Record ages already computed (s)."""
        self._values.extend(ages_s)

    def __len__(self) -> int:
        return len(self._values)

    def summary(self) -> LatencySummary | None:
        """Percentiles of the period so far (None when nothing was recorded)."""
        if not self._values:
            return None
        v = np.frombuffer(self._values, dtype=np.float64)
        p50, p90, p99 = np.percentile(v, [50, 90, 99])
        return LatencySummary(v.size, float(p50), float(p90), float(p99), float(v.max()))

    def reset(self) -> None:
        """Start a new period."""
        self._values = array("d")
