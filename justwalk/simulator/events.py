"""Near-falls (stumbles, trips, slips with recovery) and falls injected into synthetic walks.

Pure numpy, no I/O. ``inject(recording, events, rng)`` rewrites a lower-back recording in the
wire convention (``justwalk.wire``: x up, y right, z forward; m/s^2, rad/s) so that it contains
the scheduled events, updates its gait truth (steps that no longer happen are removed, steps
whose timing a stumble disrupted are moved) and returns one ``EventTruth`` per event.
``GaitProfile.events`` carries a schedule through ``synthesize`` and the simulator runner;
``with_random_events`` places events at random times while walking.

Physical model
--------------
The upright direction ``u`` is the mean specific force over the 2 s before the event (gait
accelerations are zero-mean over a step), the heading ``f`` is the sensor's z made
horizontal, ``r = f x u``. Trunk motion is a rotation about a horizontal axis chosen so that
the sensor's top moves towards the event's direction (forward: trip; backward: slip;
left/right: lateral); the specific force in the sensor frame is ``R(t)^T v(t)`` for the
world-frame specific force ``v``, and the gyroscope reads the rotation rate, so attitude and
angular rate stay consistent. Once still, ``|a| = g`` exactly (plus sensor noise).

*Near-fall* (onset moved to mid-swing, 30-60 % of the step in progress: trips and slips
happen in swing, Pavol et al. 2001):

1. loss of support: ``|a|`` dips to 0.05-0.45 g for 0.15-0.40 s (the delayed loading of the
   recovery limb, 160-270 ms in induced trips, Pavol et al. 2001);
2. the recovery step lands: a 30-70 ms half-sine of 2.2-7.8 g (severity 0 -> 1), braking
   against the direction of the trunk's motion, with a short ringing, and an angular-rate
   shock (damped 8-14 Hz wobble) that brings the peak rate to 2.5-8 rad/s (140-460 deg/s);
3. the trunk tilts 10-30 deg in the event's direction (pitch for trips and slips, roll for
   lateral stumbles, with some yaw), peaking just after the recovery step and back upright
   0.5-0.9 s later;
4. the step rhythm is disrupted for 1-3 steps: from the onset, time is warped (piecewise
   linearly, the gyroscope scaled by the warp rate) so that the recovery step's initial
   contact is the impact and the original rhythm is rejoined after the disrupted steps,
   whose times move in the truth; the gait accelerations right after the impact are 2-4
   times normal, decaying with 0.6 s (SisFall's recovery steps reach 2-2.5 g);
5. then walking goes on (``recover_to="walking"``) or the person stops and stands until the
   next scheduled bout (``"standing"``).

*Fall* (Bourke et al. 2007, 2010; Kangas et al. 2008 describe the same phases):

1. loss of balance and descent of 0.5-1.0 s: the gait fades out over the first half, the
   trunk rotates with an accelerating, inverted-pendulum-like profile (``theta ~ t^2..t^3``),
   reaching 75-90 % of its final angle at impact;
2. free-fall-like phase: ``|a|`` drops to 0.1-0.5 g over the last 0.2-0.5 s before impact;
3. impact: a 50-120 ms half-sine of 2-6 g (severity 0 -> 1; ``impact_g`` overrides),
   mostly vertical plus horizontal braking, with damped ringing; the rotation stops and a
   wobble brings the angular-rate peak to 3.5-8.5 rad/s (200-490 deg/s);
4. the trunk settles (0.3-0.5 s) lying: gravity rotated by the angle that leaves the sensor's
   up axis 75-100 deg from vertical (70-110 deg rotation);
5. lying still (0.1 deg breathing sway, sensor noise) for the rest of the recording, or for
   ``lying_s`` and then getting up (2.5-4 s) and standing until the next scheduled bout.

Measured on SisFall (Sucerquia et al. 2017; ``justwalk.evaluation.sisfall.load``, ADXL345,
100 Hz; peak = largest ``|a|`` of the file): stumbles D18 (16 files): peak 3.4-7.6 g (median
4.4), peak angular rate 140-560 deg/s (median 220, mostly pitch: 26-77 % of the gyro energy),
``|a|`` minimum before the peak 0.05-0.36 g, time below 0.8 g 0.19-0.55 s, width above 2 g
20-90 ms, tilt change 0-8 deg, trunk excursion 15-45 deg. Falls while walking F01-F06 (20
files): peak 3.8-11.9 g (median 5.5), angular rate 240-2040 deg/s (median 380), minimum
before impact 0.04-0.56 g, time below 0.8 g 0.23-0.65 s, descent (onset of the velocity
drop to impact) 0.33-1.5 s (median 0.8), width above 2 g 30-120 ms, gravity rotated by
69-112 deg (median 91), sensor tilt after 71-123 deg, median 0.1 s rate maximum 1-2 s after
impact 0.06-0.8 rad/s (median 0.15), ``|a|`` s.d. while lying 0.006 g. The default impact of
falls (2-6 g) is lower than these lab falls onto mats by young adults: real-world falls of
older people look different from simulated ones (Klenk et al. 2011).

References
----------
- Sucerquia A, Lopez JD, Vargas-Bonilla JF. SisFall: A Fall and Movement Dataset. Sensors
  2017;17(1):198. doi:10.3390/s17010198
- Pavol MJ, Owings TM, Foley KT, Grabiner MD. Mechanisms leading to a fall from an induced
  trip in healthy older adults. J Gerontol A Biol Sci Med Sci 2001;56(7):M428-M437.
  doi:10.1093/gerona/56.7.m428
- Bourke AK, O'Brien JV, Lyons GM. Evaluation of a threshold-based tri-axial accelerometer
  fall detection algorithm. Gait Posture 2007;26(2):194-199.
  doi:10.1016/j.gaitpost.2006.09.012
- Bourke AK, van de Ven P, Gamble M, et al. Evaluation of waist-mounted tri-axial
  accelerometer based fall-detection algorithms during scripted and continuous unscripted
  activities. J Biomech 2010;43(15):3051-3057. doi:10.1016/j.jbiomech.2010.07.005
- Kangas M, Konttila A, Lindgren P, Winblad I, Jamsa T. Comparison of low-complexity fall
  detection algorithms for body attached accelerometers. Gait Posture 2008;28(2):285-291.
  doi:10.1016/j.gaitpost.2008.01.003
- Klenk J, Becker C, Lieken F, et al. Comparison of acceleration signals of simulated and
  real-world backward falls. Med Eng Phys 2011;33(3):368-373.
  doi:10.1016/j.medengphy.2010.11.003

"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from justwalk.falls.base import EventType
from justwalk.simulator.gait_model import (
    GRAVITY_MPS2,
    GaitProfile,
    GaitTruth,
    SyntheticRecording,
    _band_limited_noise,
    _rotation_matrices,
)

FloatArray = npt.NDArray[np.float64]

FORWARD = "forward"
BACKWARD = "backward"
LEFT = "left"
RIGHT = "right"
DIRECTIONS = (FORWARD, BACKWARD, LEFT, RIGHT)
RECOVER_WALKING = "walking"
RECOVER_STANDING = "standing"
MIN_EVENT_GAP_S = 3.0
"""An event may start no earlier than this after the previous one ended."""

_SWAY_CUTOFF_HZ = 0.4
_RECOVERY_GAIN_TAU_S = 0.6
_SETTLE_MOVE_S = 3.0
_STANDING_SWAY_DEG = 0.3
_LYING_SWAY_DEG = 0.1


@dataclass(frozen=True)
class InjectedEvent:
    """One near-fall or fall to inject.

    ``at_s`` is the onset in seconds from the first sample (a near-fall's onset moves to
    mid-swing of the step in progress, at most one step later). ``severity`` in [0, 1]
    scales the peak acceleration, angular rate and trunk excursion. ``direction`` is where
    the trunk goes: forward (trip), backward (slip), left or right. Near-falls only:
    ``recover_to`` walking or standing. Falls only: ``lying_s`` the time spent lying before
    getting up (``None``: lying until the end of the recording). ``impact_g`` overrides the
    peak acceleration in g that ``severity`` implies: the fall's impact (2 + 4 * severity,
    +-5 %) or the near-fall's recovery step (2.5 + 5 * severity, +-0.3 g, at least 2.2 g).
    """

    type: EventType
    at_s: float
    severity: float = 0.5
    direction: str = FORWARD
    recover_to: str = RECOVER_WALKING
    lying_s: float | None = None
    impact_g: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "type", EventType(self.type))
        if not (math.isfinite(self.at_s) and self.at_s >= 0):
            raise ValueError(f"at_s {self.at_s} must be a finite time >= 0")
        if not 0.0 <= self.severity <= 1.0:
            raise ValueError(f"severity {self.severity} outside 0..1")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction {self.direction!r} not one of {DIRECTIONS}")
        if self.recover_to not in (RECOVER_WALKING, RECOVER_STANDING):
            raise ValueError(f"recover_to {self.recover_to!r} must be walking or standing")
        if self.lying_s is not None and not (math.isfinite(self.lying_s) and self.lying_s >= 0):
            raise ValueError(f"lying_s {self.lying_s} must be >= 0 or None")
        if self.impact_g is not None and not 1.2 <= self.impact_g <= 16.0:
            raise ValueError(f"impact_g {self.impact_g} outside 1.2..16")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        d = dataclasses.asdict(self)
        d["type"] = self.type.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InjectedEvent:
        """Inverse of ``to_dict``."""
        return cls(**d)


@dataclass(frozen=True)
class EventTruth:
    """What an injected event really was.

    Times are microseconds on the clock of whatever holds the truth: from the first sample
    in ``GaitTruth.events``, device time in ``PatientTruth.events``. ``start_us`` is the
    onset (loss of balance), ``peak_us`` the acceleration peak (the recovery step's or the
    body's impact), ``end_us`` when the trunk is at rest again (upright after a near-fall,
    lying after a fall). The physical values are measured on the injected signal:
    ``peak_acc_mps2`` the largest ``|a|`` within 0.15 s of the peak, ``peak_gyr_radps`` the
    largest ``|w|`` from onset to end, ``tilt_change_deg`` the angle between the mean
    specific force in the 2 s before the onset and in the 1-2 s after the end.
    """

    type: EventType
    start_us: int
    peak_us: int
    end_us: int
    direction: str
    severity: float
    peak_acc_mps2: float
    peak_gyr_radps: float
    tilt_change_deg: float

    def shifted(self, offset_us: int) -> EventTruth:
        """The same event on a clock ``offset_us`` later."""
        return dataclasses.replace(self, start_us=self.start_us + offset_us,
                                   peak_us=self.peak_us + offset_us,
                                   end_us=self.end_us + offset_us)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        d = dataclasses.asdict(self)
        d["type"] = self.type.value
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EventTruth:
        """Inverse of ``to_dict``."""
        return cls(**{**d, "type": EventType(d["type"])})


def check_events(events: Iterable[InjectedEvent]) -> tuple[InjectedEvent, ...]:
    """The events as a tuple sorted by onset; rejects anything that is not an event."""
    out = tuple(events)
    for e in out:
        if not isinstance(e, InjectedEvent):
            raise TypeError(f"events must be InjectedEvent, got {type(e).__name__}")
    return tuple(sorted(out, key=lambda e: e.at_s))


# --- the recording being edited ---------------------------------------------------------------


class _Scene:
    """Work copy of a recording and its gait truth while events are injected."""

    def __init__(
        self, rec: SyntheticRecording, acc_noise: float, gyr_noise: float,
        rng: np.random.Generator,
    ) -> None:
        self.fs = rec.sample_rate_hz
        self.x: FloatArray = rec.samples.astype(np.float64)
        self.n = self.x.shape[0]
        self.t: FloatArray = np.arange(self.n) / self.fs
        self.steps: FloatArray = np.asarray(rec.truth.step_times_s, dtype=np.float64).copy()
        self.sides: list[str] = list(rec.truth.step_sides)
        self.intervals: list[tuple[float, float]] = list(rec.truth.walking_intervals_s)
        self.acc_noise = acc_noise
        self.gyr_noise = gyr_noise
        self.rng = rng
        d = np.diff(self.steps)
        d = d[(d > 0.2) & (d < 2.0)]
        self.step_time_s = float(np.median(d)) if d.size else 0.6

    @property
    def duration_s(self) -> float:
        return self.n / self.fs

    def index(self, t_s: float) -> int:
        """Nearest sample index, clipped to the recording."""
        return int(min(max(round(t_s * self.fs), 0), self.n))

    def frame(self, t0: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Upright (u), forward (f) and right (r) unit vectors in the sensor frame at ``t0``."""
        i1 = max(self.index(t0), min(self.n, round(0.5 * self.fs)))
        i0 = max(0, i1 - round(2.0 * self.fs))
        u = self.x[i0:i1, 0:3].mean(axis=0)
        u = u / np.linalg.norm(u)
        z = np.array([0.0, 0.0, 1.0])
        f = z - float(z @ u) * u
        if np.linalg.norm(f) < 1e-6:  # sensor's z vertical: any horizontal heading
            f = np.array([0.0, 1.0, 0.0]) - float(u[1]) * u
        f = f / np.linalg.norm(f)
        return u, f, np.cross(f, u)

    def bout_at(self, t_s: float) -> tuple[float, float] | None:
        """The walking interval that contains ``t_s``."""
        for a, b in self.intervals:
            if a <= t_s <= b:
                return a, b
        return None

    def noise(self, n: int) -> FloatArray:
        """White sensor noise for ``n`` samples (acc then gyr)."""
        out = self.rng.standard_normal((n, 6))
        out[:, 0:3] *= self.acc_noise
        out[:, 3:6] *= self.gyr_noise
        return out

    def rest(self, n: int, up: FloatArray, sway_deg: float) -> FloatArray:
        """Standing or lying still: specific force ``g * up`` (sensor frame), sway and noise."""
        if n <= 0:
            return np.zeros((0, 6))
        rotvec = np.stack([
            _band_limited_noise(n, self.fs, _SWAY_CUTOFF_HZ, math.radians(sway_deg), self.rng)
            for _ in range(3)
        ], axis=1)
        rot = _rotation_matrices(rotvec)
        acc = np.einsum("nji,j->ni", rot, GRAVITY_MPS2 * up)
        gyr = np.gradient(rotvec, 1.0 / self.fs, axis=0) if n >= 2 else np.zeros((n, 3))
        return np.concatenate([acc, gyr], axis=1) + self.noise(n)

    def drop_steps(self, t_lo: float, t_hi: float) -> None:
        """Remove the steps in (t_lo, t_hi); bouts keep their runs of >= 2 remaining steps."""
        keep = (self.steps <= t_lo) | (self.steps >= t_hi)
        steps = self.steps[keep]
        self.sides = [s for s, k in zip(self.sides, keep, strict=True) if k]
        intervals: list[tuple[float, float]] = []
        for a, b in self.intervals:
            inside = steps[(steps >= a - 1e-9) & (steps <= b + 1e-9)]
            for run in (inside[inside <= t_lo], inside[inside >= t_hi]):
                if run.size >= 2:
                    intervals.append((float(run[0]), float(run[-1])))
        self.steps = steps
        self.intervals = intervals

    def stand_until_next_bout(self, t_from: float, up: FloatArray) -> float:
        """Replace everything from ``t_from`` with standing until the next scheduled bout.

        The original signal comes back (cross-faded over 0.3 s) during the standing pause
        before the first bout that starts late enough; steps in between are removed.
        Returns the time the original signal is fully back (the duration if never).
        """
        lead = 1.5 * self.step_time_s + 0.3  # gait initiation starts ~1 step before the IC
        resume = self.duration_s
        for a, _ in self.intervals:
            if a - lead - 0.3 >= t_from + 0.5:
                resume = a - lead
                break
        i0 = self.index(t_from)
        i1 = self.index(resume)
        stand = self.rest(i1 - i0, up, _STANDING_SWAY_DEG)
        if i1 < self.n:
            nf = min(round(0.3 * self.fs), i1 - i0)
            w = 0.5 - 0.5 * np.cos(np.pi * np.arange(1, nf + 1) / (nf + 1))
            stand[-nf:] = (1 - w[:, None]) * stand[-nf:] + w[:, None] * self.x[i1 - nf : i1]
        self.x[i0:i1] = stand
        self.drop_steps(t_from, resume)
        return resume

    def truth(self) -> GaitTruth:
        return GaitTruth(step_times_s=self.steps.copy(), step_sides=tuple(self.sides),
                         walking_intervals_s=tuple(self.intervals))

    def measure(
        self, kind: EventType, ev: InjectedEvent, t0: float, tp: float, t_end: float,
        u0: FloatArray,
    ) -> EventTruth:
        """Event truth with the physical values measured on the injected signal."""
        a = np.linalg.norm(self.x[:, 0:3], axis=1)
        w = np.linalg.norm(self.x[:, 3:6], axis=1)
        pa = a[self.index(tp - 0.15) : self.index(tp + 0.15) + 1]
        pw = w[self.index(t0) : self.index(t_end) + 1]
        after = self.x[self.index(t_end + 1.0) : self.index(t_end + 2.0), 0:3]
        if after.shape[0]:
            m = after.mean(axis=0)
            tilt = math.degrees(math.acos(float(np.clip(m @ u0 / np.linalg.norm(m), -1, 1))))
        else:
            tilt = math.nan
        return EventTruth(
            type=kind,
            start_us=round(t0 * 1e6),
            peak_us=round(tp * 1e6),
            end_us=round(t_end * 1e6),
            direction=ev.direction,
            severity=ev.severity,
            peak_acc_mps2=float(pa.max()) if pa.size else math.nan,
            peak_gyr_radps=float(pw.max()) if pw.size else math.nan,
            tilt_change_deg=tilt,
        )


# --- shapes -----------------------------------------------------------------------------------


def _ramp(t: FloatArray, t0: float, t1: float) -> FloatArray:
    """0 before t0, 1 after t1, raised cosine in between."""
    if t1 <= t0:
        return (t >= t0).astype(np.float64)
    u = np.clip((t - t0) / (t1 - t0), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * u)


def _half_sine(t: FloatArray, centre: float, width: float) -> FloatArray:
    """A pulse of unit height at ``centre`` and total ``width``."""
    u = (t - centre) / width
    return np.where(np.abs(u) < 0.5, np.cos(np.pi * u), 0.0)


def _damped(t: FloatArray, start: float, freq_hz: float, tau_s: float) -> FloatArray:
    """``exp(-s/tau) sin(2 pi f s)`` for s = t - start >= 0, else 0."""
    s = t - start
    return np.where(s >= 0, np.exp(-np.maximum(s, 0) / tau_s) * np.sin(2 * np.pi * freq_hz * s),
                    0.0)


def _unit(v: FloatArray) -> FloatArray:
    return v / np.linalg.norm(v)


def _direction(ev: InjectedEvent, f: FloatArray, r: FloatArray) -> FloatArray:
    return {FORWARD: f, BACKWARD: -f, RIGHT: r, LEFT: -r}[ev.direction]


def _pulse_amplitude(v: FloatArray, d: FloatArray, peak: float) -> float:
    """A >= 0 with |v + A d| = peak (d a unit vector), or 0 if |v| already exceeds it."""
    vd = float(v @ d)
    disc = vd * vd - float(v @ v) + peak * peak
    return max(0.0, -vd + math.sqrt(disc)) if disc >= 0 else 0.0


def _body(rotvec: FloatArray, v: FloatArray) -> FloatArray:
    """World-frame vectors ``v`` seen in the sensor frame rotated by ``rotvec``: R^T v."""
    return np.einsum("nji,nj->ni", _rotation_matrices(rotvec), v)


def _wobble_for_peak(
    base: FloatArray, shape_rate: FloatArray, axis: FloatArray, target: float
) -> float:
    """Amplitude B (rad) so that max |base + B * shape_rate * axis| reaches ``target``."""
    def peak(b: float) -> float:
        return float(np.linalg.norm(base + b * shape_rate[:, None] * axis, axis=1).max())

    if peak(0.0) >= target:
        return 0.0
    lo, hi = 0.0, 0.02
    while peak(hi) < target and hi < 1.0:
        hi *= 2.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if peak(mid) < target:
            lo = mid
        else:
            hi = mid
    return hi


# --- near-fall --------------------------------------------------------------------------------


def _near_fall(sc: _Scene, ev: InjectedEvent) -> tuple[EventTruth, float]:
    """Inject a stumble; returns its truth and the time the scene is free again."""
    rng = sc.rng
    s = ev.severity
    dip_s = float(rng.uniform(0.15, 0.30)) + 0.1 * s
    dip_min_g = float(np.clip(0.4 - 0.3 * s + rng.uniform(-0.05, 0.05), 0.05, 0.45))
    peak_g = max(2.2, 2.5 + 5.0 * s + float(rng.uniform(-0.3, 0.3)))
    if ev.impact_g is not None:
        peak_g = ev.impact_g
    pulse_s = float(rng.uniform(0.03, 0.07))
    tilt_rad = math.radians(10.0 + 20.0 * s + float(rng.uniform(-3.0, 3.0)))
    recover_s = float(rng.uniform(0.5, 0.9))
    gyr_peak = 2.5 + 5.5 * s + float(rng.uniform(-0.4, 0.4))
    n_disrupted = int(rng.integers(1, 4))
    gain = 1.0 + 2.0 * s + float(rng.uniform(-0.1, 0.1))
    phase = float(rng.uniform(0.3, 0.6))
    weights = 1.0 + rng.uniform(-0.3, 0.3, size=3) * (0.5 + s)

    # Onset in mid-swing of the step in progress (or at once outside walking).
    bout = sc.bout_at(ev.at_s)
    bout_steps = (sc.steps[(sc.steps >= bout[0] - 1e-9) & (sc.steps <= bout[1] + 1e-9)]
                  if bout else np.empty(0))
    t0 = ev.at_s
    in_swing = False
    j = int(np.searchsorted(bout_steps, ev.at_s, side="right")) - 1
    while 0 <= j < bout_steps.size - 1:
        cand = bout_steps[j] + phase * (bout_steps[j + 1] - bout_steps[j])
        if cand >= ev.at_s:
            t0, in_swing = float(cand), True
            break
        j += 1
    tp = round((t0 + dip_s) * sc.fs) / sc.fs
    t_pk = tp + 0.05
    t_end = t_pk + recover_s
    if t_end + 0.5 > sc.duration_s:
        raise ValueError(f"near-fall at {ev.at_s:.2f} s does not fit in the recording")
    u0, f0, r0 = sc.frame(t0)
    h = _direction(ev, f0, r0)

    # 1. Disrupted rhythm: from the onset, warp time so the recovery step lands at the
    #    impact and the original rhythm resumes after the disrupted steps.
    src = sc.x.copy()
    warp_end = t0
    if in_swing:
        after = bout_steps[bout_steps > t0]
        n_dis = min(n_disrupted, after.size - 1)
        while n_dis >= 1:
            total = after[n_dis] - tp
            w = weights[:n_dis] / weights[:n_dis].sum()
            out_knots = np.concatenate([[t0, tp], tp + np.cumsum(w * total)])
            src_knots = np.concatenate([[t0], after[: n_dis + 1]])
            slopes = np.diff(out_knots) / np.diff(src_knots)
            if np.all(np.diff(out_knots)[1:] >= 0.3) and np.all((slopes > 0.25) & (slopes < 3)):
                _warp(sc, src, src_knots, out_knots)
                warp_end = float(out_knots[-1])
                break
            n_dis -= 1

    # 2. Gain on the recovery steps, dip before the impact.
    i0 = sc.index(t0)
    i1 = sc.index(max(t_end, tp + 2.0) + 0.1)
    t = sc.t[i0:i1]
    seg = sc.x[i0:i1].copy()
    g_up = GRAVITY_MPS2 * u0
    rise = _ramp(t, tp - 0.05, tp)
    gain_t = 1.0 + gain * rise * np.exp(-np.maximum(t - tp, 0.0) / _RECOVERY_GAIN_TAU_S)
    acc = g_up + (seg[:, 0:3] - g_up) * gain_t[:, None]
    gyr_src = seg[:, 3:6] * (1.0 + 0.5 * (gain_t - 1.0))[:, None]
    dip = (1.0 - dip_min_g) * _ramp(t, t0, t0 + 0.4 * dip_s) * (1.0 - _ramp(t, tp - 0.01,
                                                                             tp + 0.04))
    acc = acc * (1.0 - dip)[:, None]

    # 3. Trunk excursion (rotation about a horizontal axis, some yaw), wobble at the impact.
    n_ax = np.cross(u0, h)
    n_ax = _unit(n_ax + float(rng.uniform(-0.35, 0.35)) * u0
                 + float(rng.uniform(-0.25, 0.25)) * h)
    theta = tilt_rad * (_ramp(t, t0, t_pk) - _ramp(t, t_pk, t_end))
    m_ax = _unit(n_ax + 0.8 * _unit(rng.standard_normal(3)))
    wob_f = float(rng.uniform(8.0, 14.0))
    wob = _damped(t, tp, wob_f, 0.04)
    dt = 1.0 / sc.fs
    theta_rate = np.gradient(theta, dt)
    wob_rate = np.gradient(wob, dt)
    near = (t >= tp - 0.3) & (t <= tp + 0.4)
    base = gyr_src[near] + theta_rate[near, None] * n_ax
    b = _wobble_for_peak(base, wob_rate[near], m_ax, gyr_peak)
    rotvec = theta[:, None] * n_ax + b * wob[:, None] * m_ax
    gyr = gyr_src + theta_rate[:, None] * n_ax + b * wob_rate[:, None] * m_ax

    # 4. Impact of the recovery step: braking against the trunk's motion, then ringing.
    side = np.cross(h, u0)
    d_imp = _unit(float(rng.uniform(0.5, 1.0)) * u0 - float(rng.uniform(0.3, 0.9)) * h
                  + float(rng.uniform(-0.4, 0.4)) * side)
    k = sc.index(tp) - i0
    amp = _pulse_amplitude(acc[k], d_imp, peak_g * GRAVITY_MPS2)
    acc = acc + amp * _half_sine(t, tp, pulse_s)[:, None] * d_imp
    ring_ax = _unit(rng.standard_normal(3))
    ring = float(rng.uniform(0.2, 0.4)) * (peak_g - 1.0) * GRAVITY_MPS2
    acc = acc + ring * _damped(t, tp + pulse_s / 2, float(rng.uniform(10.0, 16.0)),
                               0.03)[:, None] * ring_ax
    sc.x[i0:i1, 0:3] = _body(rotvec, acc)
    sc.x[i0:i1, 3:6] = gyr

    free_from = max(t_end, warp_end)
    if ev.recover_to == RECOVER_STANDING:
        t_stop = max(warp_end, t_end)
        nf = round(sc.step_time_s * sc.fs)
        j0 = sc.index(t_stop)
        j1 = min(j0 + nf, sc.n)
        w_fade = _ramp(sc.t[j0:j1], t_stop, t_stop + sc.step_time_s)[:, None]
        walking = sc.x[j0:j1].copy()
        resume = sc.stand_until_next_bout(t_stop, u0)
        sc.x[j0:j1] = (1 - w_fade) * walking + w_fade * sc.x[j0:j1]
        free_from = min(resume, sc.duration_s)
    return sc.measure(EventType.NEAR_FALL, ev, t0, tp, t_end, u0), free_from


def _warp(sc: _Scene, src: FloatArray, src_knots: FloatArray, out_knots: FloatArray) -> None:
    """Resample ``src`` so source time ``src_knots[k]`` appears at ``out_knots[k]``.

    Piecewise linear between the knots, identity outside; the gyroscope is scaled by the
    local rate of the warp (angles are replayed faster or slower). Steps move with it.
    """
    i0 = sc.index(out_knots[0])
    i1 = min(sc.index(out_knots[-1]) + 1, sc.n)
    t = sc.t[i0:i1]
    tau = np.interp(t, out_knots, src_knots)
    seg_idx = np.searchsorted(out_knots, t, side="right") - 1
    seg_idx = np.clip(seg_idx, 0, len(out_knots) - 2)
    slope = (np.diff(src_knots) / np.diff(out_knots))[seg_idx]
    for c in range(6):
        sc.x[i0:i1, c] = np.interp(tau, sc.t, src[:, c])
    sc.x[i0:i1, 3:6] *= slope[:, None]
    moved = (sc.steps > src_knots[0]) & (sc.steps <= src_knots[-1])
    sc.steps[moved] = np.interp(sc.steps[moved], src_knots, out_knots)


# --- fall -------------------------------------------------------------------------------------


def _fall(sc: _Scene, ev: InjectedEvent) -> tuple[EventTruth, float]:
    """Inject a fall; returns its truth and the time the scene is free again."""
    rng = sc.rng
    s = ev.severity
    descent_s = float(rng.uniform(0.5, 1.0))
    power = float(rng.uniform(2.0, 3.0))
    at_impact = float(rng.uniform(0.75, 0.9))
    ff_s = min(float(rng.uniform(0.2, 0.5)), 0.8 * descent_s)
    ff_min_g = float(rng.uniform(0.1, 0.5))
    impact_g = ev.impact_g if ev.impact_g is not None else 2.0 + 4.0 * s
    impact_g *= float(rng.uniform(0.95, 1.05))
    pulse_s = float(rng.uniform(0.05, 0.12))
    settle_s = float(rng.uniform(0.3, 0.5))
    lying_tilt = math.radians(float(rng.uniform(75.0, 100.0)))
    gyr_peak = 3.5 + 5.0 * s + float(rng.uniform(-0.3, 0.3))

    t0 = ev.at_s
    ti = round((t0 + descent_s) * sc.fs) / sc.fs
    t_set = ti + settle_s
    if t_set + 2.5 > sc.duration_s:
        raise ValueError(f"fall at {ev.at_s:.2f} s does not fit in the recording")
    u0, f0, r0 = sc.frame(t0)
    h = _direction(ev, f0, r0)
    jitter = float(rng.uniform(-0.3, 0.3))  # the fall direction is not exactly the axis
    h = _unit(h + jitter * np.cross(h, u0))
    n_ax = np.cross(u0, h)
    theta_f = _angle_for_tilt(u0, n_ax, lying_tilt)
    theta_i = at_impact * theta_f

    i0 = sc.index(t0)
    i1 = sc.index(t_set)
    t = sc.t[i0:i1]
    src = sc.x[i0:i1].copy()
    u = np.clip((t - t0) / descent_s, 0.0, 1.0)
    theta = np.where(t < ti, theta_i * u**power,
                     theta_i + (theta_f - theta_i) * _ramp(t, ti, t_set))
    w_gait = 1.0 - _ramp(t, t0, t0 + 0.5 * descent_s)
    m = 1.0 - (1.0 - ff_min_g) * _ramp(t, ti - ff_s, ti - ff_s + 0.1)
    m = np.where(t >= ti - pulse_s / 2,
                 ff_min_g + (1.0 - ff_min_g) * _ramp(t, ti - pulse_s / 2, ti + pulse_s / 2), m)
    g_up = GRAVITY_MPS2 * u0
    v = w_gait[:, None] * (src[:, 0:3] - g_up) + m[:, None] * g_up
    d_imp = _unit(u0 - float(rng.uniform(0.2, 0.7)) * h
                  + float(rng.uniform(-0.3, 0.3)) * np.cross(h, u0))
    k = sc.index(ti) - i0
    amp = _pulse_amplitude(v[k], d_imp, impact_g * GRAVITY_MPS2)
    v = v + amp * _half_sine(t, ti, pulse_s)[:, None] * d_imp
    ring_ax = _unit(rng.standard_normal(3))
    ring = float(rng.uniform(0.15, 0.35)) * (impact_g - 1.0) * GRAVITY_MPS2
    v = v + ring * _damped(t, ti + pulse_s / 2, float(rng.uniform(5.0, 10.0)),
                           0.06)[:, None] * ring_ax

    dt = 1.0 / sc.fs
    theta_rate = np.gradient(theta, dt)
    m_ax = _unit(n_ax + 0.8 * _unit(rng.standard_normal(3)))
    wob = _damped(t, ti, float(rng.uniform(10.0, 15.0)), 0.04)
    wob_rate = np.gradient(wob, dt)
    gyr_src = w_gait[:, None] * src[:, 3:6]
    near = (t >= ti - 0.5) & (t <= ti + 0.3)
    b = _wobble_for_peak(gyr_src[near] + theta_rate[near, None] * n_ax, wob_rate[near], m_ax,
                         gyr_peak)
    rotvec = theta[:, None] * n_ax + b * wob[:, None] * m_ax
    fresh = np.sqrt(np.clip(1.0 - w_gait**2, 0.0, 1.0))[:, None] * sc.noise(t.size)
    sc.x[i0:i1, 0:3] = _body(rotvec, v) + fresh[:, 0:3]
    sc.x[i0:i1, 3:6] = gyr_src + theta_rate[:, None] * n_ax + b * wob_rate[:, None] * m_ax
    sc.x[i0:i1, 3:6] += fresh[:, 3:6]

    # Lying still, then (optionally) getting up and standing until the next bout.
    rot_f = _rotation_matrices((theta_f * n_ax)[None, :])[0]
    up_lying = rot_f.T @ u0
    t_up = sc.duration_s if ev.lying_s is None else min(t_set + ev.lying_s, sc.duration_s)
    j_up = sc.index(t_up)
    sc.x[i1:j_up] = sc.rest(j_up - i1, up_lying, _LYING_SWAY_DEG)
    _settling_movements(sc, ti + pulse_s / 2, min(ti + _SETTLE_MOVE_S, t_up))
    free_from = sc.duration_s
    if j_up < sc.n:
        get_up_s = float(rng.uniform(2.5, 4.0))
        t_stand = t_up + get_up_s
        j_stand = sc.index(t_stand)
        tg = sc.t[j_up:j_stand]
        th = theta_f * (1.0 - _ramp(tg, t_up, t_stand))
        push = _band_limited_noise(tg.size, sc.fs, 1.5, 0.12 * GRAVITY_MPS2, rng) \
            * np.sin(np.pi * np.clip((tg - t_up) / get_up_s, 0, 1))
        vg = np.tile(g_up, (tg.size, 1)) + push[:, None] * u0
        sc.x[j_up:j_stand, 0:3] = _body(th[:, None] * n_ax, vg)
        sc.x[j_up:j_stand, 3:6] = np.gradient(th, dt)[:, None] * n_ax if tg.size >= 2 else 0.0
        sc.x[j_up:j_stand] += sc.noise(tg.size)
        free_from = sc.stand_until_next_bout(min(t_stand, sc.duration_s), u0) \
            if j_stand < sc.n else sc.duration_s
        sc.drop_steps(t0, t_stand)
    else:
        sc.drop_steps(t0, math.inf)
    return sc.measure(EventType.FALL, ev, t0, ti, t_set, u0), free_from


def _settling_movements(sc: _Scene, t_from: float, t_to: float) -> None:
    """Small decaying movements after an impact (bounce, arms and legs coming to rest).

    A band-limited random rotation of 1-4 deg s.d. and acceleration of 0.05-0.15 g s.d.,
    both decaying; SisFall's falls show a median 0.1 s angular-rate maximum of 0.06-0.8
    rad/s (median 0.15) 1-2 s after the impact.
    """
    rng = sc.rng
    i0, i1 = sc.index(t_from), sc.index(t_to)
    n = i1 - i0
    if n < 2:
        return
    t = sc.t[i0:i1] - t_from
    fade = _ramp(t, 0.0, 0.1) * (1.0 - _ramp(t, t[-1] - 0.5, t[-1]))
    env_rot = fade * np.exp(-t / float(rng.uniform(0.6, 1.5)))
    env_acc = np.exp(-t / float(rng.uniform(0.2, 0.4)))
    sd = math.radians(float(rng.uniform(1.0, 4.0)))
    psi = np.stack([_band_limited_noise(n, sc.fs, 1.5, sd, rng) for _ in range(3)], axis=1)
    psi = psi * env_rot[:, None]  # from and back to the posture reached at the impact
    bumps = np.stack([_band_limited_noise(n, sc.fs, 3.0, 1.0, rng) for _ in range(3)], axis=1)
    bumps *= float(rng.uniform(0.05, 0.15)) * GRAVITY_MPS2 * env_acc[:, None]
    sc.x[i0:i1, 0:3] = _body(psi, sc.x[i0:i1, 0:3]) + bumps
    sc.x[i0:i1, 3:6] += np.gradient(psi, 1.0 / sc.fs, axis=0)


def _angle_for_tilt(u0: FloatArray, axis: FloatArray, tilt_rad: float) -> float:
    """Rotation about ``axis`` (70-110 deg) leaving the sensor's x ``tilt_rad`` from vertical."""
    def tilt(theta: float) -> float:
        up = _rotation_matrices((theta * axis)[None, :])[0].T @ u0
        return math.acos(float(np.clip(up[0], -1.0, 1.0)))

    grid = np.radians(np.arange(70.0, 110.5, 0.5))
    errors = [abs(tilt(float(th)) - tilt_rad) for th in grid]
    return float(grid[int(np.argmin(errors))])


# --- public API -------------------------------------------------------------------------------


def inject(
    recording: SyntheticRecording,
    events: Sequence[InjectedEvent],
    rng: np.random.Generator,
    *,
    acc_noise_mps2: float = 0.05,
    gyr_noise_radps: float = 0.01,
) -> tuple[SyntheticRecording, tuple[EventTruth, ...]]:
    """The recording with ``events`` injected, and the truth of each event (recording clock).

    Deterministic for a given generator state. The samples before the first event's onset
    are unchanged. The new recording's ``truth`` has the updated steps and bouts and the
    events (appended to any it already had). The noise levels are those of the synthetic
    parts (standing, lying). Raises ``ValueError`` if an event does not fit: it starts
    within ``MIN_EVENT_GAP_S`` of the end of the previous one, after a fall the person does
    not get up from, or too close to the end of the recording.
    """
    evs = check_events(events)
    sc = _Scene(recording, acc_noise_mps2, gyr_noise_radps, rng)
    truths: list[EventTruth] = []
    free_from = 0.0
    for ev in evs:
        if ev.at_s < free_from:
            raise ValueError(f"event at {ev.at_s:.2f} s overlaps the previous event (free from "
                             f"{free_from:.2f} s)")
        if ev.type == EventType.FALL:
            truth, busy_until = _fall(sc, ev)
        else:
            truth, busy_until = _near_fall(sc, ev)
        truths.append(truth)
        free_from = busy_until + MIN_EVENT_GAP_S
    gait = sc.truth()
    gait = dataclasses.replace(gait, events=(*recording.truth.events, *truths))
    out = SyntheticRecording(samples=sc.x.astype(np.float32),
                             sample_rate_hz=recording.sample_rate_hz, truth=gait)
    return out, tuple(truths)


def with_random_events(
    profiles: Sequence[GaitProfile],
    n_events: int,
    duration_s: float,
    rng: np.random.Generator,
    *,
    fall_fraction: float = 0.5,
    severity: tuple[float, float] = (0.2, 1.0),
    min_gap_s: float = 20.0,
    margin_s: tuple[float, float] = (6.0, 6.0),
) -> list[GaitProfile]:
    """Copies of ``profiles`` with ``n_events`` events at random times while walking.

    Each profile's schedule is drawn now and fixed (``walking_s`` becomes the intervals) so
    the events can be placed inside bouts, at least ``margin_s`` (after the bout's start,
    before its end) from the bout's edges and ``min_gap_s`` apart. Events go round-robin to
    the patients; ``round(n_events * fall_fraction)`` of them are falls (lying until the end
    of the recording, so a patient's fall is its last event); directions are uniform,
    severities uniform in ``severity``. Raises ``ValueError`` if they cannot be placed.
    """
    if not profiles:
        raise ValueError("no profiles")
    if n_events < 0:
        raise ValueError("n_events must be >= 0")
    n_p = len(profiles)
    counts = [n_events // n_p + (1 if i < n_events % n_p else 0) for i in range(n_p)]
    n_falls = round(n_events * fall_fraction)
    # One fall at most per patient, as its last event.
    has_fall = set([i for i in range(n_p) if counts[i] > 0][:n_falls])
    if n_falls > len(has_fall):
        raise ValueError(f"{n_falls} falls need as many patients with events, have {n_p}")
    out = []
    for i, profile in enumerate(profiles):
        intervals = profile.walking_intervals(duration_s, rng)
        fixed = dataclasses.replace(profile, walking_s=intervals, events=())
        times = _place(intervals, counts[i], rng, min_gap_s, margin_s)
        if times is None:
            raise ValueError(f"cannot place {counts[i]} events in profile {i}'s walking "
                             f"({intervals}) with {min_gap_s} s gaps and {margin_s} s margins")
        events = []
        for k, at in enumerate(times):
            fall = i in has_fall and k == len(times) - 1
            events.append(InjectedEvent(
                type=EventType.FALL if fall else EventType.NEAR_FALL,
                at_s=float(at),
                severity=float(rng.uniform(*severity)),
                direction=DIRECTIONS[int(rng.integers(0, len(DIRECTIONS)))],
            ))
        out.append(dataclasses.replace(fixed, events=tuple(events)))
    return out


def _place(
    intervals: Sequence[tuple[float, float]], k: int, rng: np.random.Generator,
    min_gap_s: float, margin_s: tuple[float, float],
) -> list[float] | None:
    """``k`` sorted random times inside the intervals' margins, ``min_gap_s`` apart.

    Sequential: each time is uniform over the allowed time from the previous one plus the gap
    up to the latest time that still leaves room for the others; ``None`` if they do not fit.
    """
    windows = [(a + margin_s[0], b - margin_s[1]) for a, b in intervals
               if b - a >= margin_s[0] + margin_s[1]]

    def room(start: float) -> int:
        """How many events fit at or after ``start`` (earliest-first greedy)."""
        count, pos = 0, start
        for a, b in windows:
            pos = max(pos, a)
            while pos <= b:
                count += 1
                pos += min_gap_s
        return count

    if room(-math.inf) < k:
        return None
    times: list[float] = []
    lo = -math.inf
    for j in range(k):
        rest = k - j - 1
        hi_t = windows[-1][1]
        if room(hi_t + min_gap_s) < rest:  # latest feasible start, by bisection
            lo_t = max(lo, windows[0][0])
            for _ in range(50):
                mid = 0.5 * (lo_t + hi_t)
                if room(mid + min_gap_s) >= rest:
                    lo_t = mid
                else:
                    hi_t = mid
            hi_t = lo_t
        spans = [(max(a, lo), min(b, hi_t)) for a, b in windows]
        spans = [(a, b) for a, b in spans if b >= a]
        lengths = np.array([b - a for a, b in spans])
        if lengths.sum() <= 0:
            t = spans[0][0]
        else:
            pick = int(rng.choice(len(spans), p=lengths / lengths.sum()))
            t = float(rng.uniform(*spans[pick]))
        times.append(t)
        lo = t + min_gap_s
    return times


__all__ = [
    "BACKWARD",
    "DIRECTIONS",
    "FORWARD",
    "LEFT",
    "MIN_EVENT_GAP_S",
    "RECOVER_STANDING",
    "RECOVER_WALKING",
    "RIGHT",
    "EventTruth",
    "InjectedEvent",
    "check_events",
    "inject",
    "with_random_events",
]
