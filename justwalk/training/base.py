"""What the training core works on: session kinds, the plan of a session, its inputs and outputs.

No I/O: the processor feeds released steps (``justwalk.gait``), near-falls (``justwalk.falls``)
and the device time its data has reached; the core answers with feedback decisions,
per-minute values and the session's result. Units in names, SI inside, device time in us.

Constants and where they come from:

- ``T25FW_DISTANCE_M`` = 7.62 m (25 ft), the MSFC's Timed 25-Foot Walk course; a change of
  ``T25FW_MEANINGFUL_CHANGE_PCT`` (20 %) in its time is clinically meaningful in MS
  (Kaufman et al. 2000, Mult Scler 6:286; Hobart et al. 2013, Neurology 80:1509).
- ``DWI_FATIGABILITY_PCT`` = -15 %: a Distance Walked Index at or below it in the 6-Minute
  Walk Test marks walking-related (motor) fatigability (Leone et al. 2016, Neurorehabil
  Neural Repair 30:373; baseline variants reviewed by Van Geel et al. 2020, Eur J Phys
  Rehabil Med 56:88; minute 2 as baseline avoids the start-up of minute 1).
- ``STRIDE_LENGTH_MAE_M`` and ``SPEED_MAE_MPS``: the gait pipeline's stride-length and
  walking-speed mean absolute errors against the Mobilise-D INDIP reference on people held
  out of the tuning (the overall errors of the uncertainty table the evaluation writes,
  ``justwalk.mobility.shipped_error``; README "Measurement error"). The stride-length
  error is largely per-person and systematic (sensor height, pendulum model), so it is not
  averaged down over the steps of a session: a distance's uncertainty is the MAE as a
  fraction of the session's mean stride length, applied to the whole distance (0.128 m:
  about 11 % at a 1.2 m stride).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

from justwalk.mobility import shipped_error

T25FW_DISTANCE_M = 7.62
T25FW_MEANINGFUL_CHANGE_PCT = 20.0
DWI_FATIGABILITY_PCT = -15.0
STRIDE_LENGTH_MAE_M = shipped_error("stride_length_m")
SPEED_MAE_MPS = shipped_error("walking_speed_mps")
GATE_TIMING_UNCERTAINTY_S = 0.1
"""Timing uncertainty of a test timed by the device's start and stop (a button press at
each gate; the device stamps its own sample clock)."""
MINUTE_US = 60_000_000


class SessionKind(enum.StrEnum):
    """Session types (the values of ``justwalk.db.models.SessionType``)."""

    FREE_WALK = "free_walk"
    GUIDED_WALK = "guided_walk"
    T25FW = "t25fw"
    TWO_MWT = "2mwt"
    SIX_MWT = "6mwt"

    @property
    def test_duration_s(self) -> float | None:
        """Fixed duration of a timed walk test (2MWT, 6MWT), None for other kinds."""
        return {SessionKind.TWO_MWT: 120.0, SessionKind.SIX_MWT: 360.0}.get(self)

    @property
    def is_walk_test(self) -> bool:
        """T25FW, 2MWT or 6MWT."""
        return self in (SessionKind.T25FW, SessionKind.TWO_MWT, SessionKind.SIX_MWT)


class Status(enum.StrEnum):
    """How a session ended (the values of ``justwalk.db.models.SessionStatus``)."""

    COMPLETED = "completed"
    STOPPED_EARLY = "stopped_early"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """How one session runs: its kind and what its prescription asks (None: not asked)."""

    kind: SessionKind
    duration_s: float | None = None
    """Prescribed walking time (guided/free walk); the 2MWT/6MWT use their fixed one."""
    target_distance_m: float | None = None
    cadence_low_spm: float | None = None
    cadence_high_spm: float | None = None
    cadence_cue: bool = True
    metronome_spm: float | None = None
    """Tempo the device plays; None: the centre of the cadence band (``metronome_tempo``)."""
    rest_suggestion: bool = True
    progress_every_s: float = 60.0
    course_length_m: float | None = None
    """A measured course: the T25FW is then timed by the device's start and stop (gates);
    a 2MWT/6MWT's distance counts its laps (``session``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", SessionKind(self.kind))
        lo, hi = self.cadence_low_spm, self.cadence_high_spm
        for name in ("duration_s", "target_distance_m", "cadence_low_spm",
                     "cadence_high_spm", "metronome_spm", "course_length_m"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, not {v!r}")
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"cadence band {lo}-{hi} steps/min is empty")
        if not (math.isfinite(self.progress_every_s) and self.progress_every_s >= 1.0):
            raise ValueError("progress_every_s must be at least 1 s")

    @property
    def effective_duration_s(self) -> float | None:
        """The test's fixed duration, else the prescribed one."""
        return self.kind.test_duration_s or self.duration_s

    @property
    def has_band(self) -> bool:
        """A full cadence band is prescribed."""
        return self.cadence_low_spm is not None and self.cadence_high_spm is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what travels to the processor)."""
        return {"kind": self.kind.value, "duration_s": self.duration_s,
                "target_distance_m": self.target_distance_m,
                "cadence_low_spm": self.cadence_low_spm,
                "cadence_high_spm": self.cadence_high_spm, "cadence_cue": self.cadence_cue,
                "metronome_spm": self.metronome_spm, "rest_suggestion": self.rest_suggestion,
                "progress_every_s": self.progress_every_s,
                "course_length_m": self.course_length_m}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        """Inverse of ``to_dict``; ValueError for a malformed plan."""
        try:
            return cls(**d)
        except TypeError as exc:
            raise ValueError(f"malformed plan: {exc}") from exc


def metronome_tempo(plan: Plan) -> float | None:
    """The metronome tempo for cueing: the prescribed one, else the band's centre."""
    if plan.metronome_spm is not None:
        return plan.metronome_spm
    if plan.has_band:
        assert plan.cadence_low_spm is not None and plan.cadence_high_spm is not None
        return round((plan.cadence_low_spm + plan.cadence_high_spm) / 2, 1)
    return None


@dataclass(frozen=True, slots=True)
class Step:
    """One released step: its initial contact's device time and the gait core's values.

    NaN (or None upstream) where the core has no value (the first step of a bout).
    """

    t_us: int
    step_time_s: float = math.nan
    step_length_m: float = math.nan
    stride_time_s: float = math.nan


@dataclass(frozen=True, slots=True)
class Feedback:
    """A decision to tell the patient something, at device time ``t_us``.

    ``kind``: ``cadence_cue``, ``fatigue``, ``safety``, ``progress`` or ``test_end``;
    ``values`` holds the kind's figures (``justwalk.device_protocol.feedback_message``).
    """

    kind: str
    t_us: int
    text: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MinuteValues:
    """One minute of a session (the last one may be shorter: ``duration_s``)."""

    minute: int
    duration_s: float
    distance_m: float
    steps: int
    speed_mps: float
    cadence_spm: float


@dataclass(frozen=True, slots=True, kw_only=True)
class WalkResult:
    """What a finished session measured; each distance/speed/time with its uncertainty."""

    kind: SessionKind
    status: Status
    start_us: int
    end_us: int
    duration_s: float
    distance_m: float
    distance_uncertainty_m: float | None
    distance_source: str
    """``imu`` (stride lengths) or ``course`` (a measured course length)."""
    steps: int
    mean_speed_mps: float | None
    speed_uncertainty_mps: float | None
    mean_cadence_spm: float | None
    stride_time_cv_pct: float | None
    near_falls: int
    adherence_pct: float | None
    cadence_in_band_pct: float | None
    t25fw_time_s: float | None = None
    t25fw_time_uncertainty_s: float | None = None
    dwi_pct: float | None = None
    dwi_minute2_pct: float | None = None
    fatigability: bool | None = None
    minutes: tuple[MinuteValues, ...] = ()
