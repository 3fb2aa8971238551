"""Synthetic lower-back IMU signals of walking and standing, with their ground truth.

Pure numpy, no I/O. The signal is in the wire convention of ``justwalk.wire``: sensor frame
x up, y right, z forward; acceleration is specific force in m/s^2 (+9.81 on x at rest),
angular rate in rad/s.

Physical model
--------------
Walking is built step by step. Step *k* runs from initial contact (IC) *k* to IC *k+1*; a
waveform defined over the step phase ``phi`` in [0, 1) is stretched to that step's duration,
so cadence, step-time variability and left/right asymmetry are all visible in the signal.

* Vertical acceleration (x): the trunk moves like an inverted pendulum over the stance leg
  (Zijlstra & Hof 2003): the centre of mass is highest at mid-stance, where its vertical
  acceleration is lowest (below g), and it is redirected upwards during double support, where
  the acceleration has a sharp peak shortly (~40 ms) after the IC (the peak that IC
  detectors such as McCamley et al. 2012 and Paraschiv-Ionescu et al. 2019 lock onto). The
  waveform repeats every step (step frequency) and is zero-mean over a step.
* Anterior-posterior acceleration (z): forward acceleration builds up during late single
  support and push-off, peaks just before heel strike and changes sign to a deceleration
  right after it (Zijlstra & Hof 2003, Fig. 2); step frequency.
* Medio-lateral acceleration (y): the trunk sways towards the stance leg, so the lateral
  acceleration points away from it at mid-stance and alternates sign from step to step:
  stride frequency (Moe-Nilssen & Helbostad 2004 use exactly this step/stride structure of
  trunk signals for their autocorrelation estimates).
* Trunk rotation: pelvic/trunk yaw (about x) and roll (about z, "obliquity") oscillate at the
  stride frequency, pitch (about y) at the step frequency, with amplitudes of a few degrees
  (Perry & Burnfield 2010, ch. 7: pelvic rotation about +-4-5 deg, obliquity about +-4 deg,
  tilt about +-2 deg). The angles are modelled and the gyroscope reads their time
  derivative, so angular rates stay consistent with the attitude (0.2-0.8 rad/s at normal
  walking) and the attitude never drifts.
* Gravity is rotated into the sensor frame through the trunk attitude and a fixed mounting
  tilt (real lower-back sensors are tilted: the Mobilise-D lab recordings have a mean
  acceleration of -0.45..0.05 g on z), then white noise is added.
* Standing: no gait waveform; only slow postural sway (band-limited random trunk angles of a
  few tenths of a degree, cf. Mancini et al. 2012) and noise.
* Transitions: every walking bout starts with a gait-initiation half-step before its first IC
  and ends with a termination after its last IC; the amplitude ramps up over the first two
  steps and down over the last one. Step timing within a bout is not ramped, so the true
  step times are exactly the scheduled ones.

Slow and impaired gait
----------------------
People with MS at EDSS 6-7 walk at 40-60 steps/min, with long double support, small
vertical trunk impacts and often a walking aid (Comber et al. 2017: slower cadence, longer
double support and shorter steps than controls, increasing with disability). Three
``GaitProfile`` options produce that with exact truth:

* ``double_support``: the broad vertical component becomes a hump over the double-support
  phase of each step (fraction ``double_support`` of it), flat during single support, and
  the heel-strike peak keeps its width in seconds, so at 40 steps/min the step signal is
  a short push once per 1.5 s rather than a slow sinusoid;
* ``impact_ratio`` < 1: shuffling, the heel-strike peak is weak next to the hump;
* ``aid_impact_mps2``: a cane strike once per stride, mid-step: a trunk impact that is no
  step (``GaitTruth.aid_times_s``).

References
----------
- Zijlstra W, Hof AL. Assessment of spatio-temporal gait parameters from trunk accelerations
  during human walking. Gait Posture 2003;18(2):1-10. doi:10.1016/S0966-6362(02)00190-X
- Moe-Nilssen R, Helbostad JL. Estimation of gait cycle characteristics by trunk
  accelerometry. J Biomech 2004;37(1):121-126. doi:10.1016/S0021-9290(03)00233-1
- McCamley J, Donati M, Grimpampi E, Mazza C. An enhanced estimate of initial contact and
  final contact instants of time using lower trunk inertial sensor data. Gait Posture
  2012;36(2):316-318. doi:10.1016/j.gaitpost.2012.02.019
- Paraschiv-Ionescu A, Newman CJ, Carcreff L, et al. Locomotion and cadence detection using a
  single trunk-fixed accelerometer. J NeuroEng Rehabil 2019;16:24.
  doi:10.1186/s12984-019-0494-z
- Perry J, Burnfield JM. Gait Analysis: Normal and Pathological Function, 2nd ed. SLACK, 2010.
- Mancini M, Salarian A, Carlson-Kuhta P, et al. ISway: a sensitive, valid and reliable
  measure of postural control. J NeuroEng Rehabil 2012;9:59. doi:10.1186/1743-0003-9-59
- Comber L, Galvin R, Coote S. Gait deficits in people with multiple sclerosis: a
  systematic review and meta-analysis. Gait Posture 2017;51:25-31.
  doi:10.1016/j.gaitpost.2016.09.026
- Socie MJ, Sosnoff JJ. Gait variability and multiple sclerosis. Mult Scler Int
  2013;2013:645197. doi:10.1155/2013/645197 (higher step-time variability in MS).

"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from justwalk.simulator.events import EventTruth, InjectedEvent

GRAVITY_MPS2 = 9.80665
LEFT = "left"
RIGHT = "right"
MIN_PAUSE_S = 2.0  # gait initiation/termination need room between bouts

# Waveform shape constants (step phase units, 0 = initial contact, 1 = next initial contact).
_V_PEAK_PHASE = 0.07  # sharp vertical peak ~40 ms after IC at 100 steps/min
_V_PEAK_KAPPA = 30.0  # concentration of the von Mises peak (width ~0.03 step)
_V_BROAD_PHASE = 0.10  # pendulum maximum during double support
_AP_PUSH_PHASE = 0.96  # forward acceleration peak just before heel strike
_AP_BRAKE_PHASE = 0.09  # deceleration after heel strike
# Ratios of the other axes' peak-to-peak to the vertical one, chosen so that the RMS values
# come out in the range we measured in the Mobilise-D lab walking bouts of this repository's
# shared data (ML and AP RMS of the same order as vertical; cf. Menz HB, Lord SR,
# Fitzpatrick RC, Gait Posture 2003;18(1):35-46 for pelvis accelerations).
_AP_RATIO = 0.9
_ML_RATIO = 0.45
# Trunk angle amplitudes at the reference vertical peak-to-peak of 3 m/s^2 (degrees).
_REF_VERTICAL_PP = 3.0
_YAW_DEG = 4.0
_ROLL_DEG = 3.5
_PITCH_DEG = 1.5
_ROLL_PHASE = 0.15  # obliquity peaks in loading response
_PITCH_PHASE = 0.20
# Amplitude envelope of a bout: ramp-up knots on the first ICs, ramp-down on the last.
_RAMP_UP = (0.5, 0.8)
_RAMP_DOWN_LAST = 0.6
_AID_WIDTH_S = 0.02  # standard deviation of a cane strike's impact on the trunk
_REF_STEP_S = 0.6  # the step time (100 steps/min) the phase constants above describe
# Postural sway while standing (and underneath walking).
_SWAY_DEG = (0.15, 0.4, 0.25)  # std of yaw, pitch (AP), roll (ML) in degrees
_SWAY_CUTOFF_HZ = 0.4


@runtime_checkable
class Schedule(Protocol):
    """Anything that yields walking intervals for a recording of a given length."""

    def generate(
        self, duration_s: float, rng: np.random.Generator
    ) -> tuple[tuple[float, float], ...]:
        """Return sorted, non-overlapping (start_s, end_s) walking intervals."""
        ...


@dataclass(frozen=True)
class RandomSchedule:
    """Alternating walking bouts and standing pauses with random durations (seconds).

    The first bout starts after a standing period drawn from ``first_start_s``; bouts and
    pauses are drawn uniformly from their (min, max) ranges until the recording ends.
    """

    bout_s: tuple[float, float] = (20.0, 60.0)
    pause_s: tuple[float, float] = (5.0, 20.0)
    first_start_s: tuple[float, float] = (1.0, 5.0)

    def __post_init__(self) -> None:
        for name in ("bout_s", "pause_s", "first_start_s"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be (min, max) with 0 <= min <= max")
        if self.pause_s[0] < MIN_PAUSE_S:
            raise ValueError(f"pauses must be at least {MIN_PAUSE_S} s")

    def generate(
        self, duration_s: float, rng: np.random.Generator
    ) -> tuple[tuple[float, float], ...]:
        """Draw the walking intervals of one recording."""
        out: list[tuple[float, float]] = []
        t = float(rng.uniform(*self.first_start_s))
        while t < duration_s:
            end = min(t + float(rng.uniform(*self.bout_s)), duration_s)
            out.append((t, end))
            t = end + float(rng.uniform(*self.pause_s))
        return tuple(out)



@dataclass(frozen=True)
class GaitProfile:
    """How one simulated person walks.

    ``asymmetry`` is the relative difference of left and right step time,
    (T_left - T_right) / mean(T_left, T_right); the left step time is the time from a right
    initial contact to the next left one. ``step_time_cv`` is the coefficient of variation of
    the random step-to-step variability on top of that. ``walking_s`` is either a fixed tuple
    of (start_s, end_s) walking intervals (the first IC of a bout is at its start; steps
    continue while they fit before its end) or a ``Schedule`` that draws them. Tilts are the
    fixed mounting angles of the sensor: a positive pitch leans the sensor's top forward (so
    gravity shows up as a negative mean on z), a positive roll leans its top to the right (so y
    points slightly down: negative mean on y).

    ``events`` are near-falls and falls injected into the synthetic walk
    (``justwalk.simulator.events``); empty by default.

    Slow and impaired gait (see the module docstring, "Slow and impaired gait"):
    ``double_support`` is the fraction of each step spent with both feet on the ground
    (None: the default waveform, about 0.1-0.2 of a step at normal speed);
    ``impact_ratio`` scales the sharp heel-strike impact against the broad double-support
    hump (below 1: shuffling, the foot is placed rather than struck); ``aid_impact_mps2``
    adds the strike of a walking aid (cane, stick) once per stride, at ``aid_phase`` of the
    step that follows a right initial contact (its times are in ``GaitTruth.aid_times_s``;
    they are no steps).

    ``speed_decline_pct_per_min`` models walking-related fatigue (the 6-Minute Walk Test's
    decline in MS): the walking speed falls linearly by this percentage of its starting
    value per minute of recording time (``speed_factor``), half through cadence and half
    through step length (each scales with the square root of the speed factor; the
    vertical trunk acceleration with its square, so an inverted-pendulum step length,
    proportional to sqrt(acceleration) x step time, follows). 0 (default): no decline.
    """

    cadence_spm: float = 105.0
    step_time_cv: float = 0.02
    asymmetry: float = 0.0
    vertical_acc_pp_mps2: float = 3.0
    walking_s: tuple[tuple[float, float], ...] | Schedule = field(
        default_factory=RandomSchedule
    )
    tilt_pitch_deg: float = 8.0
    tilt_roll_deg: float = 0.0
    acc_noise_mps2: float = 0.05
    gyr_noise_radps: float = 0.01
    sensor_height_m: float = 1.0
    events: tuple[InjectedEvent, ...] = ()
    double_support: float | None = None
    impact_ratio: float = 1.0
    aid_impact_mps2: float = 0.0
    aid_phase: float = 0.5
    speed_decline_pct_per_min: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.speed_decline_pct_per_min <= 10.0:
            raise ValueError("speed_decline_pct_per_min must be in [0, 10]")
        if not 30.0 <= self.cadence_spm <= 200.0:
            raise ValueError(f"cadence_spm {self.cadence_spm} outside 30..200")
        if not 0.0 <= self.step_time_cv <= 0.3:
            raise ValueError(f"step_time_cv {self.step_time_cv} outside 0..0.3")
        if not -0.5 < self.asymmetry < 0.5:
            raise ValueError(f"asymmetry {self.asymmetry} outside -0.5..0.5")
        if not 0.0 < self.vertical_acc_pp_mps2 <= 15.0:
            raise ValueError(f"vertical_acc_pp_mps2 {self.vertical_acc_pp_mps2} outside 0..15")
        if self.acc_noise_mps2 < 0 or self.gyr_noise_radps < 0:
            raise ValueError("noise levels must be >= 0")
        if abs(self.tilt_pitch_deg) > 60 or abs(self.tilt_roll_deg) > 60:
            raise ValueError("sensor tilt must be within +-60 degrees")
        if self.double_support is not None and not 0.05 <= self.double_support <= 0.8:
            raise ValueError(f"double_support {self.double_support} outside 0.05..0.8")
        if not 0.0 <= self.impact_ratio <= 2.0:
            raise ValueError(f"impact_ratio {self.impact_ratio} outside 0..2")
        if not 0.0 <= self.aid_impact_mps2 <= 10.0:
            raise ValueError(f"aid_impact_mps2 {self.aid_impact_mps2} outside 0..10")
        if not 0.2 <= self.aid_phase <= 0.8:
            raise ValueError(f"aid_phase {self.aid_phase} outside 0.2..0.8")
        if not isinstance(self.walking_s, Schedule):
            intervals = tuple((float(a), float(b)) for a, b in self.walking_s)
            _check_intervals(intervals)
            object.__setattr__(self, "walking_s", intervals)
        if self.events:
            from justwalk.simulator.events import check_events  # events imports this module

            object.__setattr__(self, "events", check_events(self.events))
        elif not isinstance(self.events, tuple):
            object.__setattr__(self, "events", ())

    @property
    def step_time_s(self) -> float:
        """Nominal (mean) step time."""
        return 60.0 / self.cadence_spm

    def speed_factor(self, t_s: float | npt.NDArray[np.float64]) -> Any:
        """Walking speed at recording time ``t_s`` relative to the start (fatigue), >= 0.3.

        The ground truth of a fatigue decline: the true cadence is ``cadence_spm`` x
        sqrt(factor), the true distance per minute scales with the factor.
        """
        return np.maximum(1.0 - self.speed_decline_pct_per_min / 100.0 * np.asarray(t_s)
                          / 60.0, 0.3)

    def walking_intervals(
        self, duration_s: float, rng: np.random.Generator
    ) -> tuple[tuple[float, float], ...]:
        """The scheduled walking intervals, clipped to the recording."""
        if isinstance(self.walking_s, Schedule):
            raw = self.walking_s.generate(duration_s, rng)
            _check_intervals(raw)
        else:
            raw = self.walking_s
        return tuple((a, min(b, duration_s)) for a, b in raw if a < duration_s)


def _check_intervals(intervals: tuple[tuple[float, float], ...]) -> None:
    prev_end = -math.inf
    for a, b in intervals:
        if not (math.isfinite(a) and math.isfinite(b)) or a < 0 or b <= a:
            raise ValueError(f"walking interval ({a}, {b}) must satisfy 0 <= start < end")
        if a - prev_end < MIN_PAUSE_S:
            raise ValueError(
                f"walking intervals must be sorted and at least {MIN_PAUSE_S} s apart"
            )
        prev_end = b


@dataclass(frozen=True)
class GaitTruth:
    """What really happened in a synthetic recording (times in s from its first sample).

    ``walking_intervals_s`` run from the first to the last initial contact of each bout.
    ``events`` are the injected near-falls and falls (``justwalk.simulator.events``), their
    times in microseconds from the first sample.
    """

    step_times_s: npt.NDArray[np.float64]
    step_sides: tuple[str, ...]
    walking_intervals_s: tuple[tuple[float, float], ...]
    events: tuple[EventTruth, ...] = ()
    aid_times_s: tuple[float, ...] = ()
    """Strikes of the walking aid (no steps)."""

    @property
    def n_steps(self) -> int:
        """Number of initial contacts."""
        return int(self.step_times_s.size)


@dataclass(frozen=True)
class SyntheticRecording:
    """A synthetic lower-back recording: ``samples`` (n, 6) float32, wire convention."""

    samples: npt.NDArray[np.float32]
    sample_rate_hz: float
    truth: GaitTruth

    @property
    def duration_s(self) -> float:
        """Length of the recording."""
        return self.samples.shape[0] / self.sample_rate_hz


# --- step timing ----------------------------------------------------------------------------


def _bout_steps(
    profile: GaitProfile,
    start_s: float,
    end_s: float,
    first_side: str,
    rng: np.random.Generator,
) -> tuple[list[float], list[str]]:
    """IC times and sides of one bout: first IC at ``start_s``, last one at or before end."""
    nominal = profile.step_time_s
    half_asym = profile.asymmetry / 2.0
    times = [start_s]
    sides = [first_side]
    while True:
        landing = RIGHT if sides[-1] == LEFT else LEFT
        t_step = nominal * (1.0 + half_asym if landing == LEFT else 1.0 - half_asym)
        if profile.speed_decline_pct_per_min:
            t_step /= math.sqrt(float(profile.speed_factor(times[-1])))
        if profile.step_time_cv > 0:
            t_step *= 1.0 + profile.step_time_cv * float(rng.standard_normal())
        t_step = min(max(t_step, 0.25), 1.9)
        nxt = times[-1] + t_step
        if nxt > end_s + 1e-9:
            break
        times.append(nxt)
        sides.append(landing)
    return times, sides


# --- waveforms over the step phase ------------------------------------------------------------


def _von_mises(phi: npt.NDArray[np.float64], mu: float, kappa: float) -> np.ndarray:
    """Periodic bump with peak 1 at phase ``mu``."""
    return np.exp(kappa * (np.cos(2 * np.pi * (phi - mu)) - 1.0))


def _normalised(f: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """Make a step-periodic waveform zero-mean with unit peak-to-peak."""
    grid = np.linspace(0.0, 1.0, 2000, endpoint=False)
    vals = f(grid)
    mean = float(vals.mean())
    pp = float(vals.max() - vals.min())
    return lambda phi: (f(phi) - mean) / pp


_vertical_wave = _normalised(
    lambda p: 0.6 * np.cos(2 * np.pi * (p - _V_BROAD_PHASE))
    + 0.6 * _von_mises(p, _V_PEAK_PHASE, _V_PEAK_KAPPA)
)


def _double_support_hump(phi: npt.NDArray[np.float64], ds: float) -> np.ndarray:
    """Raised cosine over the double-support phase [0, ``ds``), zero after it."""
    x = np.clip(phi / ds, 0.0, 1.0)
    return np.where(phi < ds, 0.5 - 0.5 * np.cos(2 * np.pi * x), 0.0)


def vertical_waveform(profile: GaitProfile) -> Callable[[np.ndarray], np.ndarray]:
    """The profile's vertical waveform over the step phase (zero mean, unit peak-to-peak).

    Default: the pendulum cosine plus the heel-strike peak. With ``double_support`` the
    broad component is a hump over the double-support phase (the trunk is pushed up while
    both feet are on the ground and falls back over single support, Zijlstra & Hof 2003);
    the heel-strike peak keeps its width in seconds (an impact does not last longer because
    the step does): its concentration grows with the square of the step time.
    """
    if profile.double_support is None and profile.impact_ratio == 1.0:
        return _vertical_wave
    k = _V_PEAK_KAPPA * (profile.step_time_s / _REF_STEP_S) ** 2
    ds = profile.double_support
    impact = 0.6 * profile.impact_ratio
    if ds is None:
        return _normalised(lambda p: 0.6 * np.cos(2 * np.pi * (p - _V_BROAD_PHASE))
                           + impact * _von_mises(p, _V_PEAK_PHASE, _V_PEAK_KAPPA))
    return _normalised(lambda p: 0.6 * _double_support_hump(p, ds)
                       + impact * _von_mises(p, _V_PEAK_PHASE * _REF_STEP_S
                                             / profile.step_time_s, k))

_ap_wave = _normalised(
    lambda p: 0.7 * np.cos(2 * np.pi * (p - 0.85))
    + 0.5 * _von_mises(p, _AP_PUSH_PHASE, 25.0)
    - 0.8 * _von_mises(p, _AP_BRAKE_PHASE, 25.0)
)


def _ml_wave(phi: npt.NDArray[np.float64]) -> np.ndarray:
    """Lateral acceleration for a right-stance step: away from the stance leg (-y).

    Zero at both ICs, so alternating its sign from step to step keeps it continuous; the
    result is a stride-frequency oscillation with a little third harmonic.
    """
    return -(np.sin(np.pi * phi) + 0.25 * np.sin(3 * np.pi * phi)) / 1.2


# --- rotations ------------------------------------------------------------------------------


def _rotation_matrices(rotvec: npt.NDArray[np.float64]) -> np.ndarray:
    """Rodrigues: rotation vectors (n, 3) -> matrices (n, 3, 3)."""
    theta = np.linalg.norm(rotvec, axis=1)
    safe = np.where(theta > 1e-12, theta, 1.0)
    k = rotvec / safe[:, None]
    kx, ky, kz = k[:, 0], k[:, 1], k[:, 2]
    zeros = np.zeros_like(kx)
    kmat = np.stack(
        [
            np.stack([zeros, -kz, ky], axis=1),
            np.stack([kz, zeros, -kx], axis=1),
            np.stack([-ky, kx, zeros], axis=1),
        ],
        axis=1,
    )
    s = np.sin(theta)[:, None, None]
    c = (1 - np.cos(theta))[:, None, None]
    eye = np.eye(3)[None, :, :]
    return eye + s * kmat + c * (kmat @ kmat)


def mounting_matrix(tilt_pitch_deg: float, tilt_roll_deg: float) -> np.ndarray:
    """Columns = the sensor's x, y, z axes expressed in the upright trunk frame.

    Positive pitch leans the sensor's top (x) forward, so z points slightly down; positive
    roll leans x to the right, so y points slightly down.
    """
    b = math.radians(tilt_pitch_deg)
    g = math.radians(tilt_roll_deg)
    pitch = np.array([[math.cos(b), 0.0, -math.sin(b)], [0.0, 1.0, 0.0],
                      [math.sin(b), 0.0, math.cos(b)]])
    roll = np.array([[math.cos(g), -math.sin(g), 0.0], [math.sin(g), math.cos(g), 0.0],
                     [0.0, 0.0, 1.0]])
    return pitch @ roll


def _band_limited_noise(
    n: int, fs: float, cutoff_hz: float, std: float, rng: np.random.Generator
) -> np.ndarray:
    """Gaussian noise shaped by a 4th-order Butterworth magnitude, scaled to ``std``."""
    if n < 2 or std == 0:
        return np.zeros(n)
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    f = np.fft.rfftfreq(n, 1.0 / fs)
    spec *= 1.0 / np.sqrt(1.0 + (f / cutoff_hz) ** 8)
    spec[0] = 0.0
    out = np.fft.irfft(spec, n)
    sd = float(out.std())
    return out * (std / sd) if sd > 0 else out


# --- synthesis ------------------------------------------------------------------------------


def synthesize(
    profile: GaitProfile,
    duration_s: float,
    sample_rate_hz: float,
    rng: np.random.Generator,
) -> SyntheticRecording:
    """Generate a lower-back IMU recording for ``profile`` and its ground truth.

    Deterministic for a given generator state. Sample *i* is at ``i / sample_rate_hz`` s.
    The profile's ``events`` are injected last (``justwalk.simulator.events.inject``).
    """
    if duration_s <= 0 or sample_rate_hz <= 0:
        raise ValueError("duration_s and sample_rate_hz must be positive")
    n = round(duration_s * sample_rate_hz)
    t = np.arange(n) / sample_rate_hz

    scale = profile.vertical_acc_pp_mps2
    ang_scale = scale / _REF_VERTICAL_PP
    lin = np.zeros((n, 3))  # trunk-frame linear acceleration: vertical, ML, AP
    ang = np.zeros((n, 3))  # trunk angles (rad) about x (yaw), y (pitch), z (roll)

    all_times: list[float] = []
    all_sides: list[str] = []
    intervals: list[tuple[float, float]] = []
    aid_times: list[float] = []
    for start_s, end_s in profile.walking_intervals(duration_s, rng):
        first_side = LEFT if rng.random() < 0.5 else RIGHT
        times, sides = _bout_steps(profile, start_s, end_s, first_side, rng)
        if len(times) < 2:
            continue
        all_times.extend(times)
        all_sides.extend(sides)
        intervals.append((times[0], times[-1]))
        _add_bout(t, times, sides, profile, scale, ang_scale, lin, ang)
        if profile.aid_impact_mps2 > 0:
            aid_times.extend(_add_aid(t, times, sides, profile, lin))

    # Postural sway, present all the time (negligible next to walking), plus the linear
    # acceleration of the sensor swaying about the ankles (lever = sensor height): pitching
    # forward moves it forward (+z), rolling about +z (top to the right) moves it to +y.
    dt = 1.0 / sample_rate_hz
    for axis, sd_deg in enumerate(_SWAY_DEG):
        sway = _band_limited_noise(n, sample_rate_hz, _SWAY_CUTOFF_HZ, math.radians(sd_deg), rng)
        ang[:, axis] += sway
        if axis == 1:
            lin[:, 2] += profile.sensor_height_m * _second_derivative(sway, dt)
        elif axis == 2:
            lin[:, 1] += profile.sensor_height_m * _second_derivative(sway, dt)

    # Specific force in the heading frame, then into the trunk frame through the attitude.
    spec_h = lin.copy()
    spec_h[:, 0] += GRAVITY_MPS2
    rot = _rotation_matrices(ang)  # trunk axes in the heading frame
    spec_trunk = np.einsum("nji,nj->ni", rot, spec_h)
    # Angular rate: derivative of the attitude angles (small-angle approximation).
    gyr_trunk = np.gradient(ang, 1.0 / sample_rate_hz, axis=0) if n >= 2 else np.zeros((n, 3))

    mount = mounting_matrix(profile.tilt_pitch_deg, profile.tilt_roll_deg)
    acc = spec_trunk @ mount  # row vector times columns = components along sensor axes
    gyr = gyr_trunk @ mount
    acc += profile.acc_noise_mps2 * rng.standard_normal((n, 3))
    gyr += profile.gyr_noise_radps * rng.standard_normal((n, 3))

    samples = np.concatenate([acc, gyr], axis=1).astype(np.float32)
    truth = GaitTruth(
        step_times_s=np.asarray(all_times, dtype=np.float64),
        step_sides=tuple(all_sides),
        walking_intervals_s=tuple(intervals),
        aid_times_s=tuple(aid_times),
    )
    rec = SyntheticRecording(samples=samples, sample_rate_hz=float(sample_rate_hz), truth=truth)
    if profile.events:
        # After every other draw, so the signal before the first event is the clean walk's.
        from justwalk.simulator.events import inject

        rec, _ = inject(rec, profile.events, rng, acc_noise_mps2=profile.acc_noise_mps2,
                        gyr_noise_radps=profile.gyr_noise_radps)
    return rec


def _second_derivative(x: npt.NDArray[np.float64], dt: float) -> np.ndarray:
    out = np.zeros_like(x)
    out[1:-1] = (x[2:] - 2 * x[1:-1] + x[:-2]) / (dt * dt)
    return out


def _add_bout(
    t: npt.NDArray[np.float64],
    times: list[float],
    sides: list[str],
    profile: GaitProfile,
    scale: float,
    ang_scale: float,
    lin: np.ndarray,
    ang: np.ndarray,
) -> None:
    """Add one bout's gait waveforms (with initiation and termination) in place."""
    # Virtual ICs one nominal step before the first and after the last IC carry the
    # initiation and termination phases; their sides continue the alternation.
    pre = times[0] - profile.step_time_s
    post = times[-1] + profile.step_time_s
    knots = np.array([pre, *times, post])
    side_sign = np.array(
        [_sign(_other(sides[0]))] + [_sign(s) for s in sides] + [_sign(_other(sides[-1]))]
    )
    env_knots = np.ones_like(knots)
    env_knots[0] = 0.0
    env_knots[-1] = 0.0
    for i, v in enumerate(_RAMP_UP):
        if i + 1 < len(knots) - 1:
            env_knots[i + 1] = min(env_knots[i + 1], v)
    env_knots[-2] = min(env_knots[-2], _RAMP_DOWN_LAST)

    lo = int(np.searchsorted(t, pre, side="left"))
    hi = int(np.searchsorted(t, post, side="left"))
    if hi <= lo:
        return
    ts = t[lo:hi]
    k = np.searchsorted(knots, ts, side="right") - 1
    k = np.clip(k, 0, len(knots) - 2)
    phi = (ts - knots[k]) / (knots[k + 1] - knots[k])
    sigma = side_sign[k]  # +1 right stance, -1 left stance
    env = np.interp(ts, knots, env_knots)
    if profile.speed_decline_pct_per_min:
        env = env * profile.speed_factor(ts) ** 2

    lin[lo:hi, 0] += env * scale * vertical_waveform(profile)(phi)
    lin[lo:hi, 1] += env * scale * _ML_RATIO * sigma * _ml_wave(phi)
    lin[lo:hi, 2] += env * scale * _AP_RATIO * _ap_wave(phi)
    # Attitude: yaw and roll alternate with the stance side (stride frequency),
    # cos(pi (phi - phase)) changes sign across a step so the angle is continuous.
    ang[lo:hi, 0] += env * ang_scale * math.radians(_YAW_DEG) * sigma * np.cos(np.pi * phi)
    ang[lo:hi, 2] += (
        env * ang_scale * math.radians(_ROLL_DEG) * sigma * np.cos(np.pi * (phi - _ROLL_PHASE))
    )
    ang[lo:hi, 1] += (
        env * ang_scale * math.radians(_PITCH_DEG) * np.cos(2 * np.pi * (phi - _PITCH_PHASE))
    )


def _add_aid(
    t: npt.NDArray[np.float64],
    times: list[float],
    sides: list[str],
    profile: GaitProfile,
    lin: np.ndarray,
) -> list[float]:
    """Add the walking aid's strikes (vertical impacts of ``_AID_WIDTH_S``); their times.

    One per stride, at ``aid_phase`` of each step that starts with a right initial contact
    (a cane in the right hand moves with the left leg, e.g. a three-point pattern).
    """
    out = []
    for a, b, side in zip(times[:-1], times[1:], sides[:-1], strict=True):
        if side != RIGHT:
            continue
        tc = a + profile.aid_phase * (b - a)
        lo = int(np.searchsorted(t, tc - 4 * _AID_WIDTH_S))
        hi = int(np.searchsorted(t, tc + 4 * _AID_WIDTH_S))
        lin[lo:hi, 0] += profile.aid_impact_mps2 * np.exp(
            -0.5 * ((t[lo:hi] - tc) / _AID_WIDTH_S) ** 2)
        out.append(tc)
    return out


def _sign(side: str) -> float:
    return 1.0 if side == RIGHT else -1.0


def _other(side: str) -> str:
    return LEFT if side == RIGHT else RIGHT
