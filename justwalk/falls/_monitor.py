"""Both detectors on one stream, with one compact state and one shared front end.

The two detectors read the same block summaries (``BlockFrontEnd``: per-block maxima,
posture) and the same steps, so the monitor computes them once per chunk, in a ring sized
to the longer of the two detectors' histories, and lets each detector judge its candidates
on them. A chunk's reduction to block rows, the step bookkeeping and the search for
candidates (local maxima of ``|a|`` above a detector's gate) run as one compiled call
(``_advance.advance``); only a candidate whose look-ahead is complete costs Python work
(its features and decision, ``CandidateDetector.judge``).

Steps come from the gait pass. The stream processor runs ``GaitPipeline.process`` on a chunk
first and passes the device times of the steps it released (``[s.t_us for s in
out.steps]``) with the same chunk. The pipeline releases a step at most 2.7 s after the
contact (the bounded look-ahead of ``justwalk.gait.gsd``); only the near-fall detector reads
steps, in its walking window, which ends ``perturbation_half_s`` (>= 0.5 s) before a peak
that is judged ``lookahead_s`` (3.5 s) after it. Every step the detector reads has therefore
arrived, in the same chunk or an earlier one, before the verdict, whatever the chunking.
``FallMonitor.process`` checks this: a step older than the walking window of a block already
judged raises ``ValueError`` (the verdict could have depended on it).

The state packs to a short msgpack-ready list (``FallMonitorState.pack``, format
``STATE_VERSION``): counters, the running reduction of the incomplete block, the ring's rows
in time order (float32 bytes) and the recent step times (int64 bytes).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from justwalk.falls import _advance
from justwalk.falls._fall import FallDetector
from justwalk.falls._frontend import (
    N_COLUMNS,
    N_PARTIAL,
    ROW_DTYPE,
    STEPS_CAPACITY,
    BlockFrontEnd,
    FloatArray,
    FrontEndState,
    _next_candidate,
    _samples,
)
from justwalk.falls._near_fall import NearFallDetector
from justwalk.falls._scan import CandidateDetector, DetectorState
from justwalk.falls.base import FallEvent
from justwalk.state_format import StateFormatError, array_bytes, array_from, check_version

STATE_VERSION = 1
"""Format of ``FallMonitorState.pack``."""
_NO_STEPS = np.zeros(0, dtype=np.int64)
_WIRE_DTYPE = np.dtype(np.float32)


@dataclass(slots=True)
class FallMonitorState:
    """State of ``FallMonitor``: the shared front end and each detector's own state."""

    near_fall: DetectorState = field(default_factory=DetectorState)
    fall: DetectorState = field(default_factory=DetectorState)
    front: FrontEndState = field(default_factory=FrontEndState)

    def pack(self) -> list[Any]:
        """Msgpack-ready form: ``[STATE_VERSION, front..., near-fall, fall]``."""
        f = self.front
        return [
            STATE_VERSION, f.sample_rate_hz, f.segment, f.segment_t0_us, f.n_samples,
            f.n_blocks, f.rows.shape[0],
            array_bytes(f.partial, np.float64),
            array_bytes(f.ordered_rows(ROW_DTYPE), ROW_DTYPE),
            array_bytes(f.steps_us[: f.n_steps], np.int64),
            _pack_detector(self.near_fall), _pack_detector(self.fall),
        ]

    @classmethod
    def unpack(cls, obj: Any) -> FallMonitorState:
        """Inverse of ``pack``; ``StateFormatError`` for a state this release cannot read."""
        check_version(obj, "falls", (STATE_VERSION,))
        try:
            (_, fs, segment, t0_us, n_samples, n_blocks, capacity, partial, rows, steps,
             near, fall) = obj
            front = FrontEndState(
                sample_rate_hz=float(fs), segment=int(segment), segment_t0_us=int(t0_us),
                n_samples=int(n_samples), n_blocks=int(n_blocks),
                partial=array_from(partial, np.float64, N_PARTIAL, "falls"))
            cap = int(capacity)
            n_rows = min(front.n_blocks, cap)
            ordered = array_from(rows, ROW_DTYPE, (n_rows, N_COLUMNS), "falls")
            front.rows = np.zeros((cap, N_COLUMNS), dtype=ROW_DTYPE)
            if n_rows:
                front.rows[np.arange(front.n_blocks - n_rows, front.n_blocks) % cap] = ordered
            if not isinstance(steps, bytes) or len(steps) > 8 * STEPS_CAPACITY:
                raise StateFormatError("falls: too many steps")
            front.add_steps(array_from(steps, np.int64, len(steps) // 8, "falls"))
            return cls(near_fall=_unpack_detector(near), fall=_unpack_detector(fall),
                       front=front)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, StateFormatError):
                raise
            raise StateFormatError(f"falls state is malformed: {exc!r}") from exc


def _pack_detector(d: DetectorState) -> list[int]:
    return [d.next_candidate, d.quiet_until_us, d.n_events]


def _unpack_detector(obj: Any) -> DetectorState:
    next_candidate, quiet_until_us, n_events = obj
    return DetectorState(int(next_candidate), int(quiet_until_us), int(n_events))


@dataclass(frozen=True, slots=True)
class _Rate:
    """What the per-chunk loop needs at one sample rate, computed once."""

    block_samples: int
    capacity: int
    piece_blocks: int
    scans: tuple[tuple[CandidateDetector[Any], float, int, int], ...]
    """(detector, gate, look-ahead blocks, peak half-window blocks), near-fall first."""
    perturbation_us: int
    constants: FloatArray
    """The same constants as ``_advance.advance`` reads them (``_advance.RATE_FIELDS``)."""


class FallMonitor:
    """Runs a ``NearFallDetector`` and a ``FallDetector`` on the same chunks.

    Events come out in the order they become final, sorted by ``detected_us`` within a
    chunk. The near-fall detector requires an upright trunk after the event, so a fall is
    not also reported as a near-fall.
    """

    def __init__(
        self,
        *,
        near_fall: NearFallDetector | None = None,
        fall: FallDetector | None = None,
    ) -> None:
        self.near_fall = near_fall or NearFallDetector()
        self.fall = fall or FallDetector()
        self.front = BlockFrontEnd(history_s=max(self.near_fall.history_s,
                                                 self.fall.history_s))
        self._rates: dict[float, _Rate] = {}
        _advance.compile_for_wire()

    def initial_state(self) -> FallMonitorState:
        """State before any data."""
        return FallMonitorState(front=self.front.initial_state())

    def _rate(self, fs: float) -> _Rate:
        rate = self._rates.get(fs)
        if rate is None:
            if fs <= 0:
                raise ValueError(f"sample rate {fs} Hz is not positive")
            b = self.front.block_samples(fs)
            block_s = b / fs

            def blocks(seconds: float) -> int:
                return round(seconds / block_s)  # as _features.n_blocks

            scans = tuple(
                (det, det.gate_acc_mps2, blocks(det.lookahead_s), blocks(det.peak_half_window_s))
                for det in (self.near_fall, self.fall))
            perturbation_us = round(self.near_fall.perturbation_half_s * 1e6)
            (_, gate0, ahead0, half0), (_, gate1, ahead1, half1) = scans
            constants = _advance.rate_array({
                "block_samples": b, "dt_s": 1.0 / fs, "piece_blocks": self.front.piece_blocks(fs),
                "block_us": b * 1e6 / fs, "gate_near_mps2": gate0, "gate_fall_mps2": gate1,
                "ahead_near": ahead0, "ahead_fall": ahead1, "half_near": half0,
                "half_fall": half1, "sample_rate_hz": fs, "perturbation_us": perturbation_us})
            rate = _Rate(b, self.front.capacity(fs), self.front.piece_blocks(fs), scans,
                         perturbation_us, constants)
            self._rates[fs] = rate
        return rate

    def process(
        self,
        state: FallMonitorState,
        samples: npt.ArrayLike,
        t0_us: int,
        sample_rate_hz: float,
        steps_us: npt.ArrayLike,
    ) -> list[FallEvent]:
        """Consume one chunk; return the events made final.

        ``samples`` (n, 6): acc m/s^2, gyr rad/s (wire axes). ``steps_us``: the device times
        (us) of the steps ``GaitPipeline.process`` released for the same chunk, increasing.
        Raises ``ValueError`` for malformed input and for a step that comes after a verdict
        that could have read it (see the module docstring).
        """
        if (type(samples) is np.ndarray and samples.dtype == _WIRE_DTYPE
                and samples.ndim == 2 and samples.shape[1] == 6
                and samples.flags.c_contiguous):
            x = samples  # the wire's float32: the kernel widens it (not copied to float64)
        else:
            x = _samples(samples)
        rate = self._rates.get(sample_rate_hz) or self._rate(sample_rate_hz)
        front = state.front
        n = x.shape[0]
        new_segment = front.sample_rate_hz != sample_rate_hz or (n > 0 and abs(
            t0_us - front.segment_t0_us - round(front.n_samples * 1e6 / sample_rate_hz))
            > self.front.max_gap_s * 1e6)
        if isinstance(steps_us, (list, tuple)) and not steps_us:
            steps = _NO_STEPS
        else:
            steps = np.ascontiguousarray(steps_us, dtype=np.int64).reshape(-1)
        check_steps = False  # in the kernel, for a chunk that continues the segment
        if new_segment:
            if steps.size:
                self._check_steps(state, steps, new_segment, rate)
            if not np.isfinite(x).all():
                raise ValueError("samples must be finite")
            self.front.reset(front, t0_us, sample_rate_hz)
            state.near_fall.next_candidate = state.fall.next_candidate = 0
        elif front.rows.shape[0] != rate.capacity:
            if steps.size:
                self._check_steps(state, steps, new_segment, rate)
            self.front.fit(front)
        else:
            check_steps = steps.size > 0
        events: list[FallEvent] = []
        near, fall = state.near_fall, state.fall
        pos = i_step = 0
        while True:
            start = pos
            (pos, front.n_blocks, front.n_steps, i_step, near.next_candidate,
             fall.next_candidate, status) = _advance.advance(
                x, pos, front.partial, front.rows, front.n_blocks, front.steps_us,
                front.n_steps, steps, i_step, front.segment_t0_us, rate.constants,
                near.next_candidate, fall.next_candidate, check_steps)
            if status < 0:  # nothing changed
                if status == _advance.BAD_STEPS:
                    self._check_steps(state, steps, new_segment, rate)
                    raise RuntimeError("the step checks of advance and _check_steps differ")
                raise ValueError("samples must be finite")
            check_steps = False
            front.n_samples += pos - start
            if status == _advance.PENDING:
                self._scan(state, rate, events)
            if status == _advance.DONE or pos >= n:
                break
        if i_step < steps.size:
            front.add_steps(steps[i_step:])
        if len(events) > 1:
            events.sort(key=lambda e: (e.detected_us, e.peak_us))
        return events

    def _scan(self, state: FallMonitorState, rate: _Rate, events: list[FallEvent]) -> None:
        """Judge each detector's candidates whose look-ahead is now complete."""
        front = state.front
        n_blocks, n_rows = front.n_blocks, front.n_rows
        view = None
        for (det, gate, ahead, half), ds in zip(rate.scans, (state.near_fall, state.fall),
                                               strict=True):
            last = n_blocks - 1 - ahead
            k = max(ds.next_candidate, n_blocks - n_rows)
            while k <= last:
                k = _next_candidate(front.rows, n_blocks, n_rows, k, last, gate, half)
                if k < 0:
                    break
                if view is None:
                    view = self.front.view(front)
                if not det.rejects_early(view, k):
                    event = det.judge(ds, view, k).event
                    if event is not None:
                        events.append(event)
                k += 1
            if last >= ds.next_candidate:
                ds.next_candidate = last + 1

    def _check_steps(self, state: FallMonitorState, steps: npt.NDArray[np.int64],
                     new_segment: bool, rate: _Rate) -> None:
        """Steps must increase and come before any verdict that could have read them."""
        t = steps.tolist()  # a few values: plain Python is cheaper than NumPy here
        if any(b <= a for a, b in itertools.pairwise(t)):
            raise ValueError("steps_us must be strictly increasing")
        front = state.front
        if new_segment:
            return
        if front.n_steps and t[0] <= front.steps_us[front.n_steps - 1]:
            raise ValueError(f"step at {t[0]} us is not after the last step "
                             f"({front.steps_us[front.n_steps - 1]} us)")
        # Blocks before next_candidate are judged: their walking windows end before this.
        closed_us = front.segment_t0_us + round(
            state.near_fall.next_candidate * rate.block_samples * 1e6 / front.sample_rate_hz
        ) - rate.perturbation_us
        late = [s for s in t if front.segment_t0_us <= s < closed_us]
        if late:
            raise ValueError(
                f"step at {late[0]} us came after the near-fall verdicts up to {closed_us} us "
                "that could have read it (steps must be released within "
                f"{self.max_step_delay_s:.1f} s of the contact)")

    @property
    def max_step_delay_s(self) -> float:
        """Longest delay after a contact at which its step may still arrive (s).

        The near-fall walking window ends ``perturbation_half_s`` before a peak judged
        ``lookahead_s`` after it; ``GaitPipeline`` releases steps within 2.7 s.
        """
        return self.near_fall.lookahead_s + self.near_fall.perturbation_half_s

    def flush(self, state: FallMonitorState) -> list[FallEvent]:
        """The data ended (the session's last chunk, or its device went quiet): falls now.

        A fall is decided ``lookahead_s`` (2 s) after its impact. When the data ends sooner,
        an impact with at least ``FallDetector.min_flush_after_s`` of data after it is judged
        on the posture and movement at the end of the data (``FallDetector.truncated``), so
        a fall is not lost because the device stopped. Near-falls are not judged early: they
        need the upright recovery after the event. Data that continues the same segment
        later still judges the impacts that were too recent here.
        """
        front = state.front
        if front.sample_rate_hz <= 0:
            return []
        self.front.fit(front)
        events = [c.event for c in self.fall.flush_blocks(state.fall, self.front.view(front))
                  if c.event is not None]
        return sorted(events, key=lambda e: (e.detected_us, e.peak_us))
