"""The processor's own work per chunk, without Kafka: decode, the cores, records to JSON.

What ``ProcessorRuntime.on_message`` does for a chunk, minus the broker: the wire decode,
``SessionProcessor.process`` (gait pipeline, fall monitor, labels), the patient's fall-risk
and daily-DMO updates and the records' JSON, on messages interleaved across patients as a partition
delivers them. Also the stage split, from the same loop.
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass

from justwalk.wire import clinic_from_headers, decode_chunk
from stream_processors.session import SessionProcessor
from stream_processors.session_state import PatientState, dump_session

Message = tuple[bytes, bytes, list[tuple[str, bytes]]]


@dataclass
class CoreRun:
    """Microseconds per chunk by stage, and state sizes at the end."""

    chunks: int
    decode_us: float
    process_us: float
    risk_us: float
    json_us: float
    state_bytes: list[int]

    @property
    def total_us(self) -> float:
        """All stages."""
        return self.decode_us + self.process_us + self.risk_us + self.json_us


def core(msgs: list[Message], *, window_s: float = 5.0) -> CoreRun:
    """Run the processor's per-chunk work over ``msgs`` (after one warm-up pass).

    State sizes are taken half-way through, while the patients walk.
    """
    proc = SessionProcessor(window_s=window_s, clock=lambda: 0)
    half = len(msgs) // 2
    sizes: list[int] = []
    for _ in range(2):  # the first pass warms the JIT caches and allocators
        sessions: dict[str, object] = {}
        patients: dict[str, PatientState] = {}
        t = [0.0, 0.0, 0.0, 0.0]
        clock = time.perf_counter
        for i, (_, value, headers) in enumerate(msgs):
            if i == half:
                sizes = [len(dump_session(s)) for s in sessions.values()]  # type: ignore[arg-type]
            a = clock()
            chunk = decode_chunk(value, clinic_id=clinic_from_headers(headers))
            b = clock()
            state = sessions.get(chunk.session_id)
            if state is None:
                state = sessions[chunk.session_id] = proc.new_state()
            result = proc.process(state, chunk)  # type: ignore[arg-type]
            c = clock()
            patient = patients.get(chunk.patient_id)
            if patient is None:
                patient = patients[chunk.patient_id] = PatientState(proc.new_risk_state())
            scores = proc.update_risk(patient.risk, chunk, result)
            dmos = proc.update_dmos(patient.dmo, patient.risk,
                                    state.identity, chunk.t0_us, result)  # type: ignore[attr-defined]
            d = clock()
            for records in (result.alerts, result.events, result.steps, result.windows,
                            result.bouts, result.sessions, scores.scores, scores.alerts, dmos):
                for r in records:
                    r.to_json()
            e = clock()
            t[0] += b - a
            t[1] += c - b
            t[2] += d - c
            t[3] += e - d
    n = len(msgs)
    return CoreRun(n, *(x / n * 1e6 for x in t), state_bytes=sizes)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def core_rss_mb(msgs: list[Message], warm: list[Message]) -> float:
    """Resident memory (MB) the patients' states of ``msgs`` add to this process.

    The same per-chunk work as ``core``, in-process (no Kafka buffers, no checkpoint, no
    resend window): RSS at the end minus RSS after a warm-up run on ``warm``, whose states
    are then dropped.
    """
    proc = SessionProcessor(window_s=5.0, clock=lambda: 0)
    for batch in (warm, msgs):
        gc.collect()
        before = _rss_mb()
        sessions: dict[str, object] = {}
        patients: dict[str, PatientState] = {}
        for _, value, headers in batch:
            chunk = decode_chunk(value, clinic_id=clinic_from_headers(headers))
            state = sessions.get(chunk.session_id)
            if state is None:
                state = sessions[chunk.session_id] = proc.new_state()
            result = proc.process(state, chunk)  # type: ignore[arg-type]
            patient = patients.get(chunk.patient_id)
            if patient is None:
                patient = patients[chunk.patient_id] = PatientState(proc.new_risk_state())
            proc.update_risk(patient.risk, chunk, result)
            proc.update_dmos(patient.dmo, patient.risk, state.identity,  # type: ignore[attr-defined]
                             chunk.t0_us, result)
        gc.collect()
        grown = _rss_mb() - before
    return grown
