"""Validation of decoded chunks beyond the wire structure: identity, plausibility, ordering.

I/O-free and clock-free: the caller passes the gateway's wall-clock time. Structural
problems (truncated, non-finite numbers, ...) are ``justwalk.wire.decode_chunk``'s job.

Per ``(device_id, session_id)`` the validator remembers the established sample rate and
which sequence numbers were accepted, as a few *runs*: maximal stretches of accepted
chunks without a gap, each with its first/last sequence and device-time span. Runs make
a resend (``duplicate``) distinguishable from a chunk that fills a gap later, e.g. one
uploaded by store-and-forward after the live stream had moved on; the latter is accepted.
State changes only in ``record`` (``check`` calls it on accept), so a rejected chunk
never alters a session.

Sequence numbers and device time advance together (``justwalk.wire``): a chunk must start
where its predecessor in the session ended, after the chunks missing between them, each as
long as the session's chunks so far (between the shortest and the longest seen), give or
take half a sample (plus ``CLOCK_DRIFT`` over the missing chunks). The same holds towards
the next accepted chunk when a chunk fills a gap, and a resend is a duplicate only where
its sequence number was stored. A chunk that breaks this is the outlier, not what follows: it is
refused as ``off_timeline`` and the session's accepted runs (its high-water marks) do not
move, so a wild sequence number (2^32-1) or a timestamp minutes ahead costs that one chunk,
never its successors. A device stepping its clock forward is followed once
``reanchor_after`` consecutive chunks agree with each other beyond the session's end (the
steps before are refused); a recording that stopped and restarted takes a new session id.

A chunk flagged as the session's last (``justwalk.wire.ChunkFlags.LAST``) ends the session:
a later sequence number is refused with ``session_ended`` (the device must start a new
session id), while chunks before it (a resend, a gap filled by store-and-forward) are
handled as before; a last chunk below an already accepted sequence contradicts it and is
refused with ``bad_flags``. The stream processor refuses data after the end as well, for
sessions this gateway has forgotten.

Sessions live in a bounded LRU; a forgotten session simply starts afresh (downstream
consumers are idempotent, so a re-accepted resend is harmless).
"""

from __future__ import annotations

import bisect
import enum
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from ingest.registry import DeviceEntry
from justwalk.config import Settings
from justwalk.wire import CHANNELS, ImuChunk

MIN_SAMPLE_RATE_HZ = 20.0
MAX_SAMPLE_RATE_HZ = 400.0
MAX_ACC_MPS2 = 160.0  # 16 g plus margin
MAX_GYR_RADPS = 40.0
DEFAULT_MAX_SESSIONS = 100_000
DEFAULT_MAX_RUNS = 16
DEFAULT_REANCHOR_AFTER = 3
CLOCK_DRIFT = 1e-4
"""How far a device's timestamps may drift from its sample count (100 ppm; crystals are
within 20-50), over the chunks missing between two chunks."""
OFF_TIMELINE = "off_timeline"


class Outcome(enum.Enum):
    """What the gateway does with a chunk."""

    ACCEPT = "accept"
    DUPLICATE = "duplicate"
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The validator's answer; ``code`` and ``reason`` are set only for rejections."""

    outcome: Outcome
    code: str = ""
    reason: str = ""

    @classmethod
    def reject(cls, code: str, reason: str) -> Verdict:
        """A rejection with a machine-readable code and a human sentence."""
        return cls(Outcome.REJECT, code, reason)

    @property
    def accepted(self) -> bool:
        """True when the chunk is new and valid (to be published)."""
        return self.outcome is Outcome.ACCEPT


ACCEPT = Verdict(Outcome.ACCEPT)
DUPLICATE = Verdict(Outcome.DUPLICATE)


@dataclass(slots=True)
class Run:
    """Accepted chunks with no gap between them (in sequence or in device time)."""

    first_seq: int
    last_seq: int
    t0_us: int
    end_us: int


@dataclass(slots=True)
class _Candidate:
    """Consecutive chunks refused beyond a session's end that agree with each other."""

    last_seq: int
    end_us: int
    count: int


@dataclass(slots=True)
class SessionState:
    """What is remembered about one (device, session)."""

    sample_rate_hz: float
    runs: list[Run] = field(default_factory=list)  # sorted by sequence, disjoint
    end_seq: int | None = None
    """Sequence number of the chunk flagged as the session's last, once accepted."""
    min_chunk_us: int | None = None
    max_chunk_us: int | None = None
    """Shortest and longest accepted chunk (the last chunk of a session excluded)."""

    @property
    def last_sequence(self) -> int:
        """Highest accepted sequence number."""
        return self.runs[-1].last_seq

    @property
    def last_end_us(self) -> int:
        """Device time just after the latest accepted chunk."""
        return self.runs[-1].end_us


class ChunkValidator:
    """Checks chunks against their device's registry entry and their session's history."""

    def __init__(
        self,
        *,
        max_clock_skew_s: float = 300.0,
        max_upload_age_s: float = 30 * 86400.0,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_runs_per_session: int = DEFAULT_MAX_RUNS,
        reanchor_after: int = DEFAULT_REANCHOR_AFTER,
    ) -> None:
        self.max_clock_skew_s = max_clock_skew_s
        self.max_upload_age_s = max_upload_age_s
        self.max_sessions = max_sessions
        self.max_runs_per_session = max_runs_per_session
        self.reanchor_after = reanchor_after
        self._sessions: OrderedDict[tuple[str, str], SessionState] = OrderedDict()
        # Kept apart from the sessions: refused chunks never change a SessionState.
        self._candidates: OrderedDict[tuple[str, str], _Candidate] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: int) -> ChunkValidator:
        """A validator with the clock limits from ``settings``."""
        return cls(max_clock_skew_s=settings.max_clock_skew_s,
                   max_upload_age_s=settings.max_upload_age_s, **overrides)

    def __len__(self) -> int:
        return len(self._sessions)

    def session(self, device_id: str, session_id: str) -> SessionState | None:
        """The remembered state of a session (None if unknown or evicted)."""
        return self._sessions.get((device_id, session_id))

    def check(self, chunk: ImuChunk, entry: DeviceEntry, now_us: int) -> Verdict:
        """Evaluate ``chunk`` and, if it is accepted, record it in its session."""
        verdict = self.evaluate(chunk, entry, now_us)
        key = (chunk.device_id, chunk.session_id)
        if verdict.code == OFF_TIMELINE:
            verdict = self._follow_clock_step(key, chunk, now_us, verdict)
        elif verdict.accepted:
            self._candidates.pop(key, None)
        if verdict.accepted:
            self.record(chunk)
        return verdict

    def evaluate(self, chunk: ImuChunk, entry: DeviceEntry, now_us: int) -> Verdict:
        """Evaluate ``chunk`` without changing any state."""
        return (
            _check_identity(chunk, entry)
            or _check_sample_rate(chunk)
            or _check_ranges(chunk)
            or self._check_session(chunk)
            or self._check_clock(chunk, now_us)
            or ACCEPT
        )

    def record(self, chunk: ImuChunk) -> None:
        """Remember ``chunk`` as accepted (call only for chunks ``evaluate`` accepted)."""
        key = (chunk.device_id, chunk.session_id)
        state = self._sessions.get(key)
        if state is None:
            state = self._sessions[key] = SessionState(chunk.sample_rate_hz)
            if len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        else:
            self._sessions.move_to_end(key)
        _insert(state.runs, chunk, _half_sample_us(chunk))
        if chunk.ends_session:
            state.end_seq = chunk.sequence
        else:
            d = chunk.duration_us
            state.min_chunk_us = d if state.min_chunk_us is None else min(state.min_chunk_us, d)
            state.max_chunk_us = d if state.max_chunk_us is None else max(state.max_chunk_us, d)
        if len(state.runs) > self.max_runs_per_session:
            del state.runs[0]

    def forget(self, device_id: str, session_id: str) -> None:
        """Drop a session's state, e.g. after an accepted chunk failed to be stored."""
        self._sessions.pop((device_id, session_id), None)
        self._candidates.pop((device_id, session_id), None)

    def _follow_clock_step(self, key: tuple[str, str], chunk: ImuChunk, now_us: int,
                           verdict: Verdict) -> Verdict:
        """Count agreeing off-timeline chunks beyond the session's end; accept the n-th."""
        state = self._sessions[key]
        half = _half_sample_us(chunk)
        if chunk.sequence <= state.last_sequence or chunk.t0_us < state.last_end_us - half:
            return verdict  # inside the session's span: an outlier, whatever comes next
        cand = self._candidates.get(key)
        if (cand is not None and chunk.sequence == cand.last_seq + 1
                and abs(chunk.t0_us - cand.end_us) <= half):
            cand.last_seq, cand.end_us, cand.count = chunk.sequence, chunk.end_us, cand.count + 1
        else:
            cand = self._candidates[key] = _Candidate(chunk.sequence, chunk.end_us, 1)
            if len(self._candidates) > self.max_sessions:
                self._candidates.popitem(last=False)
        if cand.count < self.reanchor_after:
            return verdict
        clock = self._check_clock(chunk, now_us)
        if clock is not None:
            return clock
        del self._candidates[key]
        return ACCEPT

    def _check_session(self, chunk: ImuChunk) -> Verdict | None:
        state = self._sessions.get((chunk.device_id, chunk.session_id))
        if state is None:
            return None
        # numpy's isclose rule (|a - b| <= 1e-6 |b|) without its array machinery: it cost
        # more than the rest of the validation together
        if abs(chunk.sample_rate_hz - state.sample_rate_hz) > 1e-6 * abs(state.sample_rate_hz):
            return Verdict.reject(
                "bad_sample_rate",
                f"sample rate {chunk.sample_rate_hz:g} Hz differs from the "
                f"{state.sample_rate_hz:g} Hz established for session {chunk.session_id!r}",
            )
        seq, half = chunk.sequence, _half_sample_us(chunk)
        if state.end_seq is not None and seq > state.end_seq:
            return Verdict.reject(
                "session_ended",
                f"session {chunk.session_id!r} ended with chunk {state.end_seq}; chunk {seq} "
                "comes after it. Send new data under a new session id",
            )
        runs = state.runs
        i = bisect.bisect_right(runs, seq, key=lambda r: r.first_seq)
        pred = runs[i - 1] if i > 0 else None
        succ = runs[i] if i < len(runs) else None
        lo_us, hi_us = _chunk_duration_range(state, chunk)
        if pred is not None and seq <= pred.last_seq:
            if (_off_timeline(pred.first_seq - 1, pred.t0_us, seq, chunk.t0_us, lo_us, hi_us,
                              half) is None and chunk.end_us <= pred.end_us + half):
                return DUPLICATE  # where that sequence number was stored: a resend
            return Verdict.reject(
                "stale_sequence",
                f"sequence {seq} was already accepted for device time {pred.t0_us}.."
                f"{pred.end_us} us, but this chunk covers {chunk.t0_us}..{chunk.end_us} us",
            )
        if pred is not None and chunk.t0_us < pred.end_us - half:
            return Verdict.reject(
                "timestamp_overlap",
                f"chunk starts at {chunk.t0_us} us, {_duration((pred.end_us - chunk.t0_us) / 1e6)} "
                f"before the end of chunk {pred.last_seq} at {pred.end_us} us; at most half "
                f"a sample ({half / 1e3:.1f} ms) of overlap is allowed",
            )
        if chunk.ends_session and seq < state.last_sequence:
            return Verdict.reject(
                "bad_flags",
                f"chunk {seq} is flagged as the last of session {chunk.session_id!r}, but "
                f"chunk {state.last_sequence} was already accepted",
            )
        if succ is not None and chunk.end_us > succ.t0_us + half:
            return Verdict.reject(
                "stale_sequence",
                f"sequence {seq} is below the accepted sequence {succ.first_seq}, but this "
                f"chunk ends at {chunk.end_us} us, after that one starts at {succ.t0_us} us",
            )
        if pred is not None and (off := _off_timeline(
                pred.last_seq, pred.end_us, seq, chunk.t0_us, lo_us, hi_us, half)):
            return Verdict.reject(
                OFF_TIMELINE,
                f"chunk {seq} starts {off[0]} after the end of the accepted chunk "
                f"{pred.last_seq} ({pred.end_us} us), where the sequence numbers put it "
                f"{off[1]}: {_OFF_TIMELINE_TAIL}",
            )
        if succ is not None and (off := _off_timeline(
                seq, chunk.end_us, succ.first_seq, succ.t0_us, lo_us, hi_us, half)):
            return Verdict.reject(
                OFF_TIMELINE,
                f"the accepted chunk {succ.first_seq} starts {off[0]} after this chunk {seq} "
                f"ends ({chunk.end_us} us), where the sequence numbers put it {off[1]}: "
                f"{_OFF_TIMELINE_TAIL}",
            )
        return None

    def _check_clock(self, chunk: ImuChunk, now_us: int) -> Verdict | None:
        ahead_s = (chunk.t0_us - now_us) / 1e6
        if ahead_s > self.max_clock_skew_s:
            return Verdict.reject(
                "future_timestamp",
                f"chunk starts {ahead_s:.1f} s ahead of the gateway clock; "
                f"at most {self.max_clock_skew_s:g} s is allowed",
            )
        age_s = (now_us - chunk.end_us) / 1e6
        if age_s > self.max_upload_age_s:
            return Verdict.reject(
                "too_old",
                f"chunk ended {_duration(age_s)} ago; data up to "
                f"{_duration(self.max_upload_age_s)} old is accepted",
            )
        return None


def _check_identity(chunk: ImuChunk, entry: DeviceEntry) -> Verdict | None:
    if chunk.device_id != entry.device_id:
        return Verdict.reject(
            "forbidden_identity",
            f"chunk claims device_id {chunk.device_id!r} but the token belongs to device "
            f"{entry.device_id!r}",
        )
    if chunk.patient_id != entry.patient_id:
        return Verdict.reject(
            "forbidden_identity",
            f"chunk claims patient_id {chunk.patient_id!r} but device {entry.device_id!r} "
            f"is registered to patient {entry.patient_id!r}",
        )
    return None


def _check_sample_rate(chunk: ImuChunk) -> Verdict | None:
    fs = chunk.sample_rate_hz
    if not MIN_SAMPLE_RATE_HZ <= fs <= MAX_SAMPLE_RATE_HZ:
        return Verdict.reject(
            "bad_sample_rate",
            f"sample rate {fs:g} Hz is outside the allowed "
            f"{MIN_SAMPLE_RATE_HZ:g}..{MAX_SAMPLE_RATE_HZ:g} Hz",
        )
    return None


_LIMITS = np.array([MAX_ACC_MPS2] * 3 + [MAX_GYR_RADPS] * 3, dtype=np.float32)
_UNITS = ("m/s^2",) * 3 + ("rad/s",) * 3


def _check_ranges(chunk: ImuChunk) -> Verdict | None:
    over = np.abs(chunk.samples) > _LIMITS
    if not over.any():
        return None
    i, c = (int(x) for x in np.argwhere(over)[0])
    return Verdict.reject(
        "out_of_range",
        f"sample {i} channel {CHANNELS[c]} is {float(chunk.samples[i, c]):.6g} {_UNITS[c]}; "
        f"the limit is ±{float(_LIMITS[c]):g} {_UNITS[c]}",
    )


def _half_sample_us(chunk: ImuChunk) -> float:
    return 0.5e6 / chunk.sample_rate_hz


def _chunk_duration_range(state: SessionState, chunk: ImuChunk) -> tuple[int, int]:
    """How long a chunk missing from the session may be: the range seen, this one included."""
    durations = [d for d in (state.min_chunk_us, state.max_chunk_us) if d is not None]
    if not chunk.ends_session or not durations:
        durations.append(chunk.duration_us)
    return min(durations), max(durations)


def _off_timeline(seq_a: int, end_a_us: int, seq_b: int, t0_b_us: int, lo_us: int,
                  hi_us: int, half: float) -> tuple[str, str] | None:
    """Why chunk ``seq_b`` cannot start at ``t0_b_us`` after ``seq_a`` ended at ``end_a_us``.

    (gap, expected gap) as text, or None when they agree. The ``seq_b - seq_a - 1`` chunks
    between them each last ``lo_us``..``hi_us``; the device's clock may be off by half a
    sample, plus ``CLOCK_DRIFT`` of the time those chunks covered.
    """
    lost = seq_b - seq_a - 1
    gap = t0_b_us - end_a_us
    slack = half + CLOCK_DRIFT * lost * hi_us
    if lost * lo_us - slack <= gap <= lost * hi_us + slack:
        return None
    if lost == 0:
        return _duration(gap / 1e6), "right after it"
    span = (_duration(lost * lo_us / 1e6) if lo_us == hi_us else
            f"{_duration(lost * lo_us / 1e6)}..{_duration(lost * hi_us / 1e6)}")
    return _duration(gap / 1e6), f"{span} after it ({lost} chunks missing between them)"


_OFF_TIMELINE_TAIL = ("its sequence number or its timestamp is wrong. The chunk was not "
                      "stored and the session's accepted chunks are unchanged")


def _insert(runs: list[Run], chunk: ImuChunk, half: float) -> None:
    """Add an accepted chunk to the sorted runs, merging with neighbours it touches."""
    seq = chunk.sequence
    i = bisect.bisect_right(runs, seq, key=lambda r: r.first_seq)
    if i > 0 and seq <= runs[i - 1].last_seq:
        return  # already recorded (a concurrent duplicate)
    run = Run(seq, seq, chunk.t0_us, chunk.end_us)
    runs.insert(i, run)
    if i + 1 < len(runs) and _touch(run, runs[i + 1], half):
        nxt = runs.pop(i + 1)
        run.last_seq, run.end_us = nxt.last_seq, nxt.end_us
    if i > 0 and _touch(runs[i - 1], run, half):
        prev = runs[i - 1]
        prev.last_seq, prev.end_us = run.last_seq, run.end_us
        del runs[i]


def _touch(a: Run, b: Run, half: float) -> bool:
    """True if run ``b`` follows ``a`` without a gap in sequence or in time."""
    return b.first_seq == a.last_seq + 1 or abs(b.t0_us - a.end_us) <= half


def _duration(seconds: float) -> str:
    if abs(seconds) < 1:
        return f"{seconds * 1e3:.1f} ms"
    if abs(seconds) < 120:
        return f"{seconds:.1f} s"
    if abs(seconds) < 7200:
        return f"{seconds / 60:.1f} min"
    if abs(seconds) < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
