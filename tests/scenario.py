"""A fixed input for the processor's crash, rebalance and replay tests, and an InfluxDB model.

``chunk_messages`` builds the chunk topic's messages (key, value, headers), in the order a
gateway would publish them, for:

- ``pt-walk``: walks and stands at 105 steps/min, with a near-fall; ends with the end flag;
- ``pt-slow``: 80 steps/min; 20 s of its live stream are missing and uploaded afterwards
  (store and forward: late chunks filling the gap); ends with the end flag;
- ``pt-fall``: 115 steps/min, then falls and lies; ends with the end flag;
- ``pt-quiet``: its device stops without the end flag (the idle timeout closes it);
- ``pt-ms`` (with ``ms_recording``): the real Mobilise-D MS recording, replayed.

All device times are fixed (per test session), so two runs of the same input give the same records.
``influx_points`` folds records into what InfluxDB would hold: one point per measurement,
tag set and time, fields merged by later writes (InfluxDB's rule).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from justwalk.device_protocol import DeviceCredential
from justwalk.falls import EventType
from justwalk.records import decode_record
from justwalk.schema import fold_lines, record_to_line
from justwalk.simulator.device import make_chunks
from justwalk.simulator.events import InjectedEvent
from justwalk.simulator.gait_model import GaitProfile, synthesize
from justwalk.simulator.replay import Recording
from justwalk.wire import chunk_headers, encode_chunk

CLINIC = "clinic-test"
T0_US = (time.time_ns() // 3_600_000_000_000 - 2) * 3_600_000_000
"""The start of the hour before the last (fixed once per test session: recent enough for
InfluxDB's retention, the same for every run that compares)."""
DURATION_S = 150.0
GAP = (120, 160)
"""pt-slow's chunks missing from the live stream (sequence numbers, half-open)."""

Message = tuple[bytes, bytes, list[tuple[str, bytes]]]


@dataclass(frozen=True)
class Patient:
    """One simulated patient of the scenario."""

    patient_id: str
    profile: GaitProfile
    end_session: bool = True
    gap: tuple[int, int] | None = None


PATIENTS = (
    Patient("pt-walk", GaitProfile(
        cadence_spm=105.0, walking_s=((2.0, 60.0), (70.0, 140.0)),
        events=(InjectedEvent(EventType.NEAR_FALL, 100.0, severity=0.7),))),
    Patient("pt-slow", GaitProfile(
        cadence_spm=80.0, step_time_cv=0.04, vertical_acc_pp_mps2=2.0,
        walking_s=((5.0, 145.0),)), gap=GAP),
    Patient("pt-fall", GaitProfile(
        cadence_spm=115.0, walking_s=((1.0, 90.0),),
        events=(InjectedEvent(EventType.FALL, 80.0, severity=0.6),))),
    Patient("pt-quiet", GaitProfile(cadence_spm=95.0, walking_s=((3.0, 100.0),)),
            end_session=False),
)


def _timed(patient_id: str, samples: np.ndarray, fs: float, start_us: int,
           end_session: bool, gap: tuple[int, int] | None
           ) -> tuple[list[tuple[int, Message]], list[tuple[int, Message]]]:
    """(live, late) messages with the device time at which each is sent."""
    cred = DeviceCredential(f"dev-{patient_id}", patient_id, CLINIC, "unused")
    chunks = make_chunks(cred, samples, start_us=start_us, sample_rate_hz=fs,
                         session_id=f"{patient_id}-s1", end_session=end_session)
    live, late = [], []
    for c in chunks:
        msg = (patient_id.encode(), encode_chunk(c), chunk_headers(CLINIC, 0))
        if gap is not None and gap[0] <= c.sequence < gap[1]:
            late.append((c.end_us, msg))
        else:
            live.append((c.end_us, msg))
    return live, late


def chunk_messages(ms_recording: Recording | None = None, *,
                   duration_s: float = DURATION_S) -> list[Message]:
    """The scenario's chunk messages in publishing order (see the module docstring)."""
    live: list[tuple[int, Message]] = []
    late: list[tuple[int, Message]] = []
    for i, p in enumerate(PATIENTS):
        rec = synthesize(p.profile, duration_s, 100.0, np.random.default_rng(100 + i))
        a, b = _timed(p.patient_id, rec.samples.astype(np.float32), 100.0, T0_US,
                      p.end_session, p.gap)
        live += a
        late += b
    if ms_recording is not None:
        a, _ = _timed("pt-ms", ms_recording.samples, ms_recording.sample_rate_hz, T0_US,
                      True, None)
        live += a
    live.sort(key=lambda x: x[0])  # as devices send them: by time
    # the upload comes after the live stream, as a store-and-forward device sends it
    return [m for _, m in live] + [m for _, m in late]


def influx_points(records: Iterable[bytes]) -> dict[tuple[str, str], dict[str, str]]:
    """What InfluxDB holds after these records (JSON from the gait topics) were written."""
    return fold_lines(record_to_line(decode_record(v)) for v in records)
