"""Turning IMU chunks into output records, one device session at a time (no I/O).

The Faust app (``stream_processors.app``) keeps one serialised ``SessionState`` per
(patient, device, session) in a changelogged table and calls ``SessionProcessor.process``
for every chunk. Everything here is plain Python so the whole path from chunk to records
is tested without a broker. The wall clock is injected; it only stamps ``raised_at_us`` on
alerts (for latency measurement), never decides anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from justwalk.falls import EventType, FallEvent, FallMonitor, FallMonitorState
from justwalk.gait import GaitStream, GaitStreamState
from justwalk.records import AlertRecord, GaitWindowRecord, StepRecord
from justwalk.wire import ImuChunk

SEVERITY = {EventType.FALL: "critical", EventType.NEAR_FALL: "warning"}


def wall_clock_us() -> int:
    """Wall-clock time, microseconds since the Unix epoch."""
    return time.time_ns() // 1000


@dataclass
class SessionState:
    """Everything the processor remembers about one device session."""

    gait: GaitStreamState
    falls: FallMonitorState
    last_seq: int = -1
    """Sequence number of the last chunk processed (duplicate protection)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {"gait": self.gait.to_dict(), "falls": self.falls.to_dict(),
                "last_seq": self.last_seq}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionState:
        """Inverse of ``to_dict``."""
        return cls(GaitStreamState.from_dict(d["gait"]), FallMonitorState.from_dict(d["falls"]),
                   int(d["last_seq"]))


def state_key(chunk: ImuChunk) -> str:
    """Key of a session's state: chunks of one session share it, sessions never do."""
    return f"{chunk.patient_id}|{chunk.device_id}|{chunk.session_id}"


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """Records made final by one chunk, and whether the chunk was a duplicate."""

    steps: list[StepRecord]
    windows: list[GaitWindowRecord]
    alerts: list[AlertRecord] = field(default_factory=list)
    duplicate: bool = False


class SessionProcessor:
    """Applies the gait stream to chunks and labels its output with the chunk's identity."""

    def __init__(self, *, window_s: float, clock: Callable[[], int] = wall_clock_us) -> None:
        self.gait = GaitStream(window_s=window_s)
        self.falls = FallMonitor()
        self.clock = clock

    def new_state(self) -> SessionState:
        """State for a session never seen before."""
        return SessionState(self.gait.initial_state(), self.falls.initial_state())

    @staticmethod
    def dump_state(state: SessionState) -> bytes:
        """Serialise a state for the table (exact round trip: shortest float repr)."""
        return orjson.dumps(state.to_dict())

    @staticmethod
    def load_state(data: bytes) -> SessionState:
        """Inverse of ``dump_state``."""
        return SessionState.from_dict(orjson.loads(data))

    def process(self, state: SessionState, chunk: ImuChunk,
                received_at_us: int | None = None) -> ProcessResult:
        """Consume one chunk; ``state`` is updated in place unless the chunk is a duplicate.

        A chunk whose sequence number is not after the last one processed for its session
        was seen before (a redelivery after a restart): it is skipped, so replays do not
        produce different results.
        """
        if chunk.sequence <= state.last_seq:
            return ProcessResult([], [], duplicate=True)
        out = self.gait.process(state.gait, chunk.acc_mps2, chunk.t0_us, chunk.sample_rate_hz)
        events = self.falls.process(state.falls, chunk.samples, chunk.t0_us,
                                    chunk.sample_rate_hz)
        state.last_seq = chunk.sequence
        ident = {
            "clinic_id": chunk.clinic_id,
            "patient_id": chunk.patient_id,
            "device_id": chunk.device_id,
            "session_id": chunk.session_id,
        }
        steps = [
            StepRecord(**ident, t_us=s.t_us, step_index=s.step_index, step_time_s=s.step_time_s)
            for s in out.steps
        ]
        windows = [
            GaitWindowRecord(
                **ident,
                window_start_us=w.window_start_us,
                window_s=self.gait.window_s,
                n_steps=w.n_steps,
                walking=w.walking,
                cadence_spm=w.cadence_spm,
                mean_step_time_s=w.mean_step_time_s,
            )
            for w in out.windows
        ]
        alerts = [self._alert(chunk, e, received_at_us) for e in events]
        return ProcessResult(steps, windows, alerts)

    def _alert(self, chunk: ImuChunk, event: FallEvent,
               received_at_us: int | None) -> AlertRecord:
        return AlertRecord(
            alert_id=AlertRecord.make_id(chunk.patient_id, chunk.session_id, event.type.value,
                                         event.start_us),
            clinic_id=chunk.clinic_id,
            patient_id=chunk.patient_id,
            device_id=chunk.device_id,
            session_id=chunk.session_id,
            type=event.type.value,
            severity=SEVERITY[event.type],
            event_start_us=event.start_us,
            event_end_us=event.end_us,
            raised_at_us=self.clock(),
            evidence={
                "peak_acc_g": round(event.peak_acc_mps2 / 9.80665, 3),
                "peak_gyr_radps": round(event.peak_gyr_radps, 3),
                "trunk_tilt_before_deg": round(event.trunk_tilt_before_deg, 1),
                "trunk_tilt_after_deg": round(event.trunk_tilt_after_deg, 1),
                "confidence": round(event.confidence, 3),
                "peak_us": event.peak_us,
                "detected_us": event.detected_us,
            },
            chunk_received_at_us=received_at_us,
        )
