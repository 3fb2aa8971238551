"""Ground truth of simulated patients, on the device clock, written to / read from JSON.

Per-window cadence is computed with ``justwalk.gait.cadence.cadence_windows`` on the *true*
step times, with the same epoch-aligned windows the stream processor uses, so a processor's
output can be compared window by window.

File layout (version 1)::

    {"version": 1, "window_s": 5.0, ...metadata...,
     "patients": [{"patient_id", "device_id", "profile", "start_us", "duration_s",
                   "sample_rate_hz", "step_times_us", "step_sides",
                   "walking_intervals_us", "windows": [{"window_start_us", "n_steps",
                   "walking", "cadence_spm", "mean_step_time_s"}, ...],
                   "mean_cadence_spm", "events": [{"type", "start_us", "peak_us", "end_us",
                   ...}, ...]}, ...]}

``events`` (injected near-falls and falls, ``justwalk.simulator.events.EventTruth`` on the
device clock) was added later without a version change: files without it read as having
no events, and a profile without events is written exactly as before.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from justwalk.gait.cadence import WindowCadence, cadence_windows
from justwalk.simulator.events import EventTruth, InjectedEvent
from justwalk.simulator.gait_model import GaitProfile, RandomSchedule, SyntheticRecording

TRUTH_VERSION = 1


@dataclass(frozen=True)
class PatientTruth:
    """Everything that really happened for one simulated patient (device-clock times, us)."""

    patient_id: str
    device_id: str
    profile: GaitProfile
    start_us: int
    duration_s: float
    sample_rate_hz: float
    step_times_us: tuple[int, ...]
    step_sides: tuple[str, ...]
    walking_intervals_us: tuple[tuple[int, int], ...]
    window_s: float
    windows: tuple[WindowCadence, ...]
    mean_cadence_spm: float | None
    events: tuple[EventTruth, ...] = ()
    """Injected near-falls and falls, device-clock times."""

    @property
    def walking_windows(self) -> tuple[WindowCadence, ...]:
        """Windows that count as walking (they have a cadence)."""
        return tuple(w for w in self.windows if w.walking)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation."""
        return {
            "patient_id": self.patient_id,
            "device_id": self.device_id,
            "profile": profile_to_dict(self.profile),
            "start_us": self.start_us,
            "duration_s": self.duration_s,
            "sample_rate_hz": self.sample_rate_hz,
            "step_times_us": list(self.step_times_us),
            "step_sides": list(self.step_sides),
            "walking_intervals_us": [list(iv) for iv in self.walking_intervals_us],
            "window_s": self.window_s,
            "windows": [asdict(w) for w in self.windows],
            "mean_cadence_spm": self.mean_cadence_spm,
            "events": [e.to_dict() for e in self.events],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PatientTruth:
        """Inverse of ``to_dict``."""
        return cls(
            patient_id=d["patient_id"],
            device_id=d["device_id"],
            profile=profile_from_dict(d["profile"]),
            start_us=int(d["start_us"]),
            duration_s=float(d["duration_s"]),
            sample_rate_hz=float(d["sample_rate_hz"]),
            step_times_us=tuple(int(t) for t in d["step_times_us"]),
            step_sides=tuple(d["step_sides"]),
            walking_intervals_us=tuple((int(a), int(b)) for a, b in d["walking_intervals_us"]),
            window_s=float(d["window_s"]),
            windows=tuple(WindowCadence(**w) for w in d["windows"]),
            mean_cadence_spm=d["mean_cadence_spm"],
            events=tuple(EventTruth.from_dict(e) for e in d.get("events", ())),
        )


def profile_to_dict(profile: GaitProfile) -> dict[str, Any]:
    """A profile as plain JSON values; a random schedule is tagged ``{"random": {...}}``."""
    d = asdict(profile)
    if profile.events:
        d["events"] = [e.to_dict() for e in profile.events]
    else:
        del d["events"]  # as before events existed
    if isinstance(profile.walking_s, RandomSchedule):
        d["walking_s"] = {"random": asdict(profile.walking_s)}
    elif isinstance(profile.walking_s, tuple):
        d["walking_s"] = [list(iv) for iv in profile.walking_s]
    else:  # a custom schedule object: record its type only
        d["walking_s"] = {"schedule": type(profile.walking_s).__name__}
    return d


def profile_from_dict(d: dict[str, Any]) -> GaitProfile:
    """Inverse of ``profile_to_dict`` (a custom schedule comes back as the default one)."""
    d = dict(d)
    d["events"] = tuple(InjectedEvent.from_dict(e) for e in d.get("events", ()))
    walking = d.pop("walking_s")
    if isinstance(walking, dict):
        rnd = walking.get("random", {})
        schedule: Any = RandomSchedule(**{k: tuple(v) for k, v in rnd.items()})
    else:
        schedule = tuple((float(a), float(b)) for a, b in walking)
    return GaitProfile(walking_s=schedule, **d)


def seconds_to_device_us(start_us: int, t_s: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Device time (us since the epoch) of times in seconds from the first sample."""
    return start_us + np.round(np.asarray(t_s, dtype=np.float64) * 1e6).astype(np.int64)


def true_mean_cadence_spm(
    step_times_s: npt.ArrayLike, walking_intervals_s: tuple[tuple[float, float], ...]
) -> float | None:
    """Overall cadence while walking: 60 / mean step time, pooled over all bouts.

    Only intervals between consecutive steps of the same bout count (pauses do not).
    """
    t = np.asarray(step_times_s, dtype=np.float64)
    total_s = 0.0
    n_intervals = 0
    for a, b in walking_intervals_s:
        inside = t[(t >= a - 1e-9) & (t <= b + 1e-9)]
        if inside.size >= 2:
            total_s += float(inside[-1] - inside[0])
            n_intervals += inside.size - 1
    if n_intervals == 0:
        return None
    return 60.0 * n_intervals / total_s


def patient_truth(
    patient_id: str,
    device_id: str,
    profile: GaitProfile,
    recording: SyntheticRecording,
    *,
    start_us: int,
    window_s: float,
) -> PatientTruth:
    """Ground truth of one synthetic recording that starts at device time ``start_us``."""
    truth = recording.truth
    steps_us = seconds_to_device_us(start_us, truth.step_times_s)
    n = recording.samples.shape[0]
    last_us = start_us + round((n - 1) * 1e6 / recording.sample_rate_hz)
    window_us = round(window_s * 1e6)
    windows = cadence_windows(steps_us, start_us, last_us, window_us)
    intervals_us = tuple(
        (int(a), int(b))
        for a, b in seconds_to_device_us(start_us, np.asarray(truth.walking_intervals_s))
        .reshape(-1, 2)
        .tolist()
    )
    return PatientTruth(
        patient_id=patient_id,
        device_id=device_id,
        profile=profile,
        start_us=int(start_us),
        duration_s=recording.duration_s,
        sample_rate_hz=recording.sample_rate_hz,
        step_times_us=tuple(int(x) for x in steps_us),
        step_sides=truth.step_sides,
        walking_intervals_us=intervals_us,
        window_s=float(window_s),
        windows=tuple(windows),
        mean_cadence_spm=true_mean_cadence_spm(truth.step_times_s, truth.walking_intervals_s),
        events=tuple(e.shifted(int(start_us)) for e in truth.events),
    )


def write_truth(path: Path, truths: list[PatientTruth], **metadata: Any) -> None:
    """Write the ground truth of a simulation run (``metadata``: seed, speed, ...)."""
    window_s = {t.window_s for t in truths}
    body: dict[str, Any] = {
        "version": TRUTH_VERSION,
        "window_s": window_s.pop() if len(window_s) == 1 else None,
        **metadata,
        "patients": [t.to_dict() for t in truths],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body, indent=1))
    tmp.replace(path)


def read_truth(path: Path) -> list[PatientTruth]:
    """Read a file written by ``write_truth``."""
    body = json.loads(Path(path).read_text())
    if body.get("version") != TRUTH_VERSION:
        raise ValueError(f"{path}: truth file version {body.get('version')}, "
                         f"expected {TRUTH_VERSION}")
    return [PatientTruth.from_dict(d) for d in body["patients"]]
