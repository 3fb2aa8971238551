"""What the processor remembers about one device session, and its compact binary form.

A session's data can arrive in more than one contiguous stretch: the live stream, with gaps
where the device was out of range, and later uploads (store and forward) that fill those
gaps. Each stretch being analysed is a ``Track``: the gait pipeline of its current
contiguous segment (``justwalk.gait``), its fall monitor (``justwalk.falls``) and the map
from the pipeline's walking-chain numbers to the session's bout numbers. A session has its
``live`` track and at most one ``late`` track (a gap being filled).

``runs`` lists the chunks already analysed, as maximal stretches without a gap in sequence
or device time ([first_seq, last_seq, t0_us, end_us], sorted), so a chunk can be told to be
a resend (already analysed), the live stream going on, or a late chunk filling a gap.
``applied_offset`` is the input offset of the last message applied to the state: after a
crash the processor replays the input from its last committed offset, and a message at or
below ``applied_offset`` is already in the state (``stream_processors.runtime``).

``pack``/``unpack`` give the state's binary form (msgpack, ``justwalk.state_format``): the
first element is ``STATE_VERSION``; the cores pack their own parts with their own versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypedDict

import msgpack

from justwalk.falls import FallMonitorState
from justwalk.gait.pipeline import PipelineState
from justwalk.mobility import DmoState
from justwalk.risk import FallRiskState
from justwalk.state_format import StateFormatError, check_version
from justwalk.training import TrainingState

STATE_VERSION = 2
"""2 added the training session (1 is read as a recording without one)."""
NO_CEILING = 2**62
MAX_RUNS = 64
"""Disjoint stretches of analysed chunks remembered per session (older ones are forgotten:
a chunk older than all of them is refused as ``too_late``)."""


class Identity(TypedDict):
    """The identity every record carries."""

    clinic_id: str
    patient_id: str
    device_id: str
    session_id: str


@dataclass(slots=True)
class Track:
    """One contiguous stretch of a session being analysed (see the module docstring)."""

    falls: FallMonitorState
    pipeline: PipelineState | None = None
    """The gait pipeline of the open contiguous segment (None: nothing open)."""
    bouts: dict[int, int] = field(default_factory=dict)
    """Walking chains of the open segment that have published steps: the pipeline's chain
    number -> the session's bout number."""
    last_seq: int = -1
    end_us: int = 0
    """Device time just after the track's newest sample."""
    window_floor_us: int = 0
    """Windows starting before this device time are not published by this track: earlier
    data of the session lies in them and published them already."""
    window_ceil_us: int = NO_CEILING
    """Windows ending after this device time are not published by this track (a late
    track: the data after the gap it fills published them already)."""

    def pack(self) -> list[Any]:
        """Msgpack-ready form."""
        return [self.falls.pack(), None if self.pipeline is None else self.pipeline.pack(),
                [x for kv in self.bouts.items() for x in kv], self.last_seq, self.end_us,
                self.window_floor_us, self.window_ceil_us]

    @classmethod
    def unpack(cls, obj: list[Any]) -> Track:
        """Inverse of ``pack``."""
        falls, pipeline, bouts, last_seq, end_us, floor, ceil = obj
        return cls(FallMonitorState.unpack(falls),
                   None if pipeline is None else PipelineState.unpack(pipeline),
                   dict(zip(bouts[::2], bouts[1::2], strict=True)), int(last_seq),
                   int(end_us), int(floor), int(ceil))


@dataclass(slots=True)
class SessionState:
    """Everything the processor remembers about one device session."""

    identity: Identity | None = None
    """Whose session it is (from its latest chunk), for records made without a chunk."""
    applied_offset: int = -1
    """Input offset of the last message applied (replay protection)."""
    runs: list[list[int]] = field(default_factory=list)
    live: Track | None = None
    late: Track | None = None
    ended: bool = False
    """The session's last chunk (end flag) was processed; later chunks are refused."""
    end_seq: int = -1
    """Sequence number of that last chunk."""
    start_us: int | None = None
    """Device time of the session's first sample received (None before its first chunk)."""
    end_us: int = 0
    """Device time just after the session's newest sample."""
    n_steps: int = 0
    """Steps published so far (the next step's ``step_index``)."""
    n_bouts: int = 0
    """Bout numbers handed out so far (the next walking chain's number)."""
    walking_s: float = 0.0
    """Summed duration of the bouts published so far."""
    n_walking_bouts: int = 0
    summary_due_us: int = 0
    """Device time from which the next periodic session summary is due."""
    training: TrainingState | None = None
    """The training session run on this recording (``stream_processors.training``)."""
    training_db_id: int = 0
    """Its database session id (``justwalk.db``)."""

    @property
    def is_open(self) -> bool:
        """True while a track holds data not yet flushed (what the idle timeout watches)."""
        return any(t is not None and t.pipeline is not None for t in (self.live, self.late))

    @property
    def last_seq(self) -> int:
        """Highest sequence number analysed (-1 before the first chunk)."""
        return self.runs[-1][1] if self.runs else -1

    def pack(self) -> list[Any]:
        """Msgpack-ready form."""
        ident = self.identity
        return [STATE_VERSION,
                None if ident is None else [ident["clinic_id"], ident["patient_id"],
                                            ident["device_id"], ident["session_id"]],
                self.applied_offset, [x for r in self.runs for x in r],
                None if self.live is None else self.live.pack(),
                None if self.late is None else self.late.pack(),
                self.ended, self.end_seq, self.start_us, self.end_us, self.n_steps,
                self.n_bouts, self.walking_s, self.n_walking_bouts, self.summary_due_us,
                None if self.training is None else [self.training_db_id, self.training.pack()]]

    @classmethod
    def unpack(cls, obj: Any) -> SessionState:
        """Inverse of ``pack``; ``StateFormatError`` for a state this release cannot read."""
        d = check_version(obj, "session", (1, STATE_VERSION))
        try:
            if d[0] == 1:
                d = [*d, None]
            (_, ident, applied, runs, live, late, ended, end_seq, start_us, end_us, n_steps,
             n_bouts, walking_s, n_walking, due, training) = d
            state = cls(
                None if ident is None else Identity(clinic_id=ident[0], patient_id=ident[1],
                                                    device_id=ident[2], session_id=ident[3]),
                int(applied), [list(map(int, runs[i:i + 4])) for i in range(0, len(runs), 4)],
                None if live is None else Track.unpack(live),
                None if late is None else Track.unpack(late), bool(ended), int(end_seq),
                None if start_us is None else int(start_us), int(end_us), int(n_steps),
                int(n_bouts), float(walking_s), int(n_walking), int(due))
            if training is not None:
                state.training_db_id = int(training[0])
                state.training = TrainingState.unpack(training[1])
            return state
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise StateFormatError(f"session state is corrupt: {exc!r}") from exc


def dump_session(state: SessionState) -> bytes:
    """The binary form of a session state (what the processor stores)."""
    return msgpack.packb(state.pack(), use_bin_type=True)


def load_session(data: bytes) -> SessionState:
    """Inverse of ``dump_session``; ``StateFormatError`` when it cannot be read."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise StateFormatError(f"session state is not msgpack: {exc!r}") from exc
    return SessionState.unpack(obj)


PATIENT_STATE_VERSION = 2
"""2 added the daily-DMO state (a version-1 state is read with an empty one)."""
NO_CEILING = 2**62


@dataclass(slots=True)
class PatientState:
    """What the processor remembers about one patient across sessions: fall risk, daily DMOs."""

    risk: FallRiskState
    applied_offset: int = -1
    """Input offset of the last message applied (replay protection)."""
    dmo: DmoState = field(default_factory=DmoState)
    """The open clinic days' bouts of the daily mobility outcomes (``justwalk.mobility``)."""

    def pack(self) -> list[Any]:
        """Msgpack-ready form."""
        return [PATIENT_STATE_VERSION, self.applied_offset, self.risk.to_dict(),
                self.dmo.pack()]

    @classmethod
    def unpack(cls, obj: Any) -> PatientState:
        """Inverse of ``pack``; ``StateFormatError`` for a state this release cannot read."""
        d = check_version(obj, "patient", (1, PATIENT_STATE_VERSION))
        try:
            dmo = DmoState.unpack(d[3]) if d[0] >= 2 else DmoState()
            return cls(FallRiskState.from_dict(d[2]), int(d[1]), dmo)
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise StateFormatError(f"patient state is corrupt: {exc!r}") from exc


def dump_patient(state: PatientState) -> bytes:
    """The binary form of a patient state."""
    return msgpack.packb(state.pack(), use_bin_type=True)


def load_patient(data: bytes) -> PatientState:
    """Inverse of ``dump_patient``; ``StateFormatError`` when it cannot be read."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise StateFormatError(f"patient state is not msgpack: {exc!r}") from exc
    return PatientState.unpack(obj)
