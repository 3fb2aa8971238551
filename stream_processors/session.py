"""Turning IMU chunks into output records, one device session at a time (no I/O).

The Faust app (``stream_processors.app``) keeps one serialised ``GaitStreamState`` per
(patient, device, session) in a changelogged table and calls ``SessionProcessor.process``
for every chunk. Everything here is plain Python so the whole path from chunk to records
is tested without a broker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from justwalk.gait import GaitStream, GaitStreamState
from justwalk.records import GaitWindowRecord, StepRecord
from justwalk.wire import ImuChunk


def state_key(chunk: ImuChunk) -> str:
    """Key of a session's state: chunks of one session share it, sessions never do."""
    return f"{chunk.patient_id}|{chunk.device_id}|{chunk.session_id}"


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """Records made final by one chunk, and whether the chunk was a duplicate."""

    steps: list[StepRecord]
    windows: list[GaitWindowRecord]
    duplicate: bool = False


class SessionProcessor:
    """Applies the gait stream to chunks and labels its output with the chunk's identity."""

    def __init__(self, *, window_s: float) -> None:
        self.gait = GaitStream(window_s=window_s)

    def new_state(self) -> GaitStreamState:
        """State for a session never seen before."""
        return self.gait.initial_state()

    @staticmethod
    def dump_state(state: GaitStreamState) -> bytes:
        """Serialise a state for the table (exact round trip)."""
        return json.dumps(state.to_dict(), separators=(",", ":")).encode()

    @staticmethod
    def load_state(data: bytes) -> GaitStreamState:
        """Inverse of ``dump_state``."""
        return GaitStreamState.from_dict(json.loads(data))

    def process(self, state: GaitStreamState, chunk: ImuChunk) -> ProcessResult:
        """Consume one chunk; ``state`` is updated in place unless the chunk is a duplicate.

        A chunk whose sequence number is not after the last one processed for its session
        was seen before (a redelivery after a restart): it is skipped, so replays do not
        produce different results.
        """
        if chunk.sequence <= state.last_seq:
            return ProcessResult([], [], duplicate=True)
        out = self.gait.process(state, chunk.acc_mps2, chunk.t0_us, chunk.sample_rate_hz)
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
        return ProcessResult(steps, windows)
