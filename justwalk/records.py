"""Output records of the stream processors: the contract of the gait.* Kafka topics.

Records are small JSON objects (one per step, one per window). Each carries the identity
tags (clinic, patient, device, session) and an event time taken from the device clock,
so writing the same record twice produces the same InfluxDB point (idempotent replay).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Self


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One detected step (an initial contact of a foot), at device time ``t_us``."""

    KIND: ClassVar[str] = "step"

    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str
    t_us: int
    step_index: int
    step_time_s: float | None
    """Time since the previous step of the same walking stretch; None for the first one."""

    def to_json(self) -> bytes:
        """Serialise for Kafka."""
        return _dump(self.KIND, asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """Inverse of ``to_json`` after json parsing."""
        return cls(**{f.name: d[f.name] for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class GaitWindowRecord:
    """Gait metrics over one event-time window [window_start_us, + window_s)."""

    KIND: ClassVar[str] = "gait_window"

    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str
    window_start_us: int
    window_s: float
    n_steps: int
    walking: bool
    cadence_spm: float | None
    """Steps per minute while walking in this window; None when the patient was not walking."""
    mean_step_time_s: float | None

    def to_json(self) -> bytes:
        """Serialise for Kafka."""
        return _dump(self.KIND, asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """Inverse of ``to_json`` after json parsing."""
        return cls(**{f.name: d[f.name] for f in fields(cls)})


@dataclass(frozen=True, slots=True)
class RejectRecord:
    """Input that was refused, as published to the rejects topic (the error stream).

    ``source`` is "gateway" (a device sent it) or "processor" (it reached Kafka but could
    not be processed; ``kafka_position`` is then "topic/partition/offset").
    """

    received_at_us: int
    source: str
    code: str
    reason: str
    device_id: str | None = None
    patient_id: str | None = None
    session_id: str | None = None
    sequence: int | None = None
    kafka_position: str | None = None

    def to_json(self) -> bytes:
        """Serialise for Kafka."""
        return json.dumps(asdict(self), separators=(",", ":")).encode()


ALERT_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One alert on the ``alerts`` topic: the single alert format of the whole system.

    ``alert_id`` is stable for the event it describes (derived from patient, session, type
    and the event's start time), so a processor that replays a chunk after a restart
    produces the same id and receivers can recognise duplicates. Times are device time,
    except ``raised_at_us`` (wall clock when the processor raised it, for latency).
    ``severity`` is "critical" (fall), "warning" (near-fall, rising fall risk) or "info".
    ``evidence`` holds the numbers that led to the alert (peak acceleration in g, angular
    rate in rad/s, trunk tilt before/after in degrees, confidence 0..1, ...).
    """

    alert_id: str
    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str
    type: str
    severity: str
    event_start_us: int
    event_end_us: int
    raised_at_us: int
    evidence: dict[str, float | str]
    version: int = ALERT_FORMAT_VERSION
    chunk_received_at_us: int | None = None
    """Wall-clock time the gateway received the chunk that completed the event (latency)."""

    KIND: ClassVar[str] = "alert"

    @staticmethod
    def make_id(patient_id: str, session_id: str, type_: str, event_start_us: int) -> str:
        """The stable id of an event's alert."""
        key = f"{patient_id}|{session_id}|{type_}|{event_start_us}".encode()
        return hashlib.sha256(key).hexdigest()[:32]

    def to_json(self) -> bytes:
        """Serialise for Kafka."""
        return _dump(self.KIND, asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:
        """Inverse of ``to_json`` after json parsing."""
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name in d})


def decode_alert(data: bytes) -> AlertRecord:
    """Parse an alert from the alerts topic. Raises ValueError on anything unexpected."""
    try:
        d = json.loads(data)
        if d.get("kind") != AlertRecord.KIND:
            raise KeyError("kind")
        return AlertRecord.from_dict(d)
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not an alert: {exc!r}") from exc


Record = StepRecord | GaitWindowRecord | AlertRecord
_KINDS: dict[str, type[StepRecord] | type[GaitWindowRecord] | type[AlertRecord]] = {
    StepRecord.KIND: StepRecord,
    GaitWindowRecord.KIND: GaitWindowRecord,
    AlertRecord.KIND: AlertRecord,
}


def _dump(kind: str, body: dict[str, Any]) -> bytes:
    return json.dumps({"kind": kind, **body}, separators=(",", ":"), allow_nan=False).encode()


def decode_record(data: bytes) -> Record:
    """Parse a record from a gait.* topic. Raises ValueError on anything unexpected."""
    try:
        d = json.loads(data)
        cls = _KINDS[d["kind"]]
        return cls.from_dict(d)
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a gait record: {exc!r}") from exc
