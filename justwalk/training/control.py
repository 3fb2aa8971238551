"""Training control messages: how a session's start and stop travel to the stream processor.

The gateway appends them to the chunk topic (key = patient id, so the partition of the
session's chunks) with the Kafka header ``jw-control: training_start`` or
``training_stop`` and a JSON value. Being in the log, in order with the chunks, they are
met at the same place on a replay, so the processor decides the same
(``stream_processors.runtime``). Devices cannot set the header: the gateway writes chunks
with their own headers only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from justwalk.training.base import Plan
from justwalk.wire import ID_PATTERN, KAFKA_HEADER_CONTROL

TRAINING_START = b"training_start"
TRAINING_STOP = b"training_stop"
TRAINING_KINDS = (TRAINING_START, TRAINING_STOP)


@dataclass(frozen=True, slots=True)
class TrainingStart:
    """Start training session ``db_session_id`` on a recording at device time ``start_us``."""

    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str
    db_session_id: int
    start_us: int
    plan: Plan

    @property
    def session_key(self) -> str:
        """The processor's key of the recording (``stream_processors.session.state_key``)."""
        return f"{self.patient_id}|{self.device_id}|{self.session_id}"


@dataclass(frozen=True, slots=True)
class TrainingStop:
    """The device stopped the training session of a recording at device time ``stop_us``."""

    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str
    stop_us: int

    @property
    def session_key(self) -> str:
        """The processor's key of the recording."""
        return f"{self.patient_id}|{self.device_id}|{self.session_id}"


def encode(message: TrainingStart | TrainingStop) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(value, headers) of a control message."""
    body: dict[str, Any] = {"clinic_id": message.clinic_id, "patient_id": message.patient_id,
                            "device_id": message.device_id, "session_id": message.session_id}
    if isinstance(message, TrainingStart):
        body |= {"db_session_id": message.db_session_id, "start_us": message.start_us,
                 "plan": message.plan.to_dict()}
        kind = TRAINING_START
    else:
        body["stop_us"] = message.stop_us
        kind = TRAINING_STOP
    return orjson.dumps(body), [(KAFKA_HEADER_CONTROL, kind)]


def decode(kind: bytes, value: bytes | None) -> TrainingStart | TrainingStop:
    """The message of a training control record; ValueError when it is malformed."""
    if kind not in TRAINING_KINDS:
        raise ValueError(f"not a training control message: {kind!r}")
    try:
        d = orjson.loads(value or b"")
        ids = {k: d[k] for k in ("clinic_id", "patient_id", "device_id", "session_id")}
        if not all(isinstance(x, str) and ID_PATTERN.fullmatch(x) for x in ids.values()):
            raise ValueError(f"bad ids {ids!r}")
        if kind == TRAINING_STOP:
            return TrainingStop(**ids, stop_us=int(d["stop_us"]))
        return TrainingStart(**ids, db_session_id=int(d["db_session_id"]),
                             start_us=int(d["start_us"]), plan=Plan.from_dict(d["plan"]))
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"malformed {kind.decode()} message: {exc!r}") from exc
