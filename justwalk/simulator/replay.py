"""Load a Mobilise-D lab recording (lower-back IMU + INDIP reference) for replay.

The files are those of ``shared/data/mobilised`` (see its README.md): Matlab v5 ``data.mat``
with ``data.TimeMeasure1.<test>.<trial>.SU.LowerBack`` holding ``Acc`` (g), ``Gyr`` (deg/s),
``Timestamp`` (Unix s) and ``Fs``; the reference gait of ``Standards.INDIP.MicroWB`` gives
walking bouts (start/end in s from the first sample), their cadence and the initial
contacts. Units are converted here, at the edge: g -> m/s^2 with the standard gravity
9.80665 m/s^2 (the definition of the unit g; mobgap uses 9.81, 0.03 % more), deg/s -> rad/s.
The sensor axes are already ours (x up, y right, z forward; mobgap's coordinate-system
guide), so no remapping is done; the loader checks that gravity shows up on +x.

Data: Mobilise-D Technical Validation Study, example data of github.com/mobilise-d/mobgap
(Apache-2.0). Cite Mico-Amigo et al., J NeuroEng Rehabil 20:78 (2023),
doi:10.1186/s12984-023-01198-5; INDIP: Salis et al., Front Bioeng Biotechnol 11 (2023),
doi:10.3389/fbioe.2023.1143248.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.io

STANDARD_GRAVITY_MPS2 = 9.80665
TIME_MEASURE = "TimeMeasure1"


@dataclass(frozen=True)
class ReferenceBout:
    """One reference walking bout (times in s from the recording's first sample)."""

    start_s: float
    end_s: float
    cadence_spm: float
    n_strides: int
    walking_speed_mps: float | None
    initial_contacts_s: npt.NDArray[np.float64]
    ic_sides: tuple[str, ...]


@dataclass(frozen=True)
class ReferenceGait:
    """The reference system's gait for one recording (NaN initial contacts dropped)."""

    system: str
    bouts: tuple[ReferenceBout, ...]

    @property
    def initial_contacts_s(self) -> npt.NDArray[np.float64]:
        """All reference initial contacts, sorted."""
        if not self.bouts:
            return np.zeros(0)
        return np.sort(np.concatenate([b.initial_contacts_s for b in self.bouts]))

    @property
    def ic_sides(self) -> tuple[str, ...]:
        """Sides ("left"/"right") of ``initial_contacts_s``, in the same order."""
        pairs = sorted(
            (float(t), s) for b in self.bouts for t, s in zip(b.initial_contacts_s, b.ic_sides,
                                                              strict=True)
        )
        return tuple(s for _, s in pairs)


@dataclass(frozen=True)
class Recording:
    """A lower-back recording ready to stream: ``samples`` (n, 6) float32, wire convention."""

    samples: npt.NDArray[np.float32]
    sample_rate_hz: float
    t0_us: int
    participant: str
    test: str
    trial: str
    reference: ReferenceGait | None = None

    @property
    def cohort(self) -> str:
        """Cohort code ("MS", "HA", ...), from ``participant`` = "<cohort>/<id>"."""
        return self.participant.split("/")[0]

    @property
    def duration_s(self) -> float:
        """Length of the recording."""
        return self.samples.shape[0] / self.sample_rate_hz

    def restamped(self, t0_us: int) -> Recording:
        """The same recording with its first sample at device time ``t0_us``.

        Reference times are relative to the first sample, so they stay valid.
        """
        return dataclasses.replace(self, t0_us=int(t0_us))

    def reference_time_to_us(self, t_s: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Device time (us) of reference times (s).

        Follows mobgap: a reference time t is the 0-based sample ``round(t * fs) - 1``
        (the Matlab pipeline used t * fs as a 1-based index), i.e. one sample earlier.
        """
        t = np.asarray(t_s, dtype=np.float64)
        idx = np.round(t * self.sample_rate_hz) - 1
        return self.t0_us + np.round(idx * 1e6 / self.sample_rate_hz).astype(np.int64)


@dataclass(frozen=True)
class ParticipantInfo:
    """Anthropometrics and set-up of one participant (SI units)."""

    participant: str
    height_m: float | None
    weight_kg: float | None
    sensor_height_m: float | None
    foot_length_m: float | None
    handedness: str | None
    walking_aid: bool | None
    sensor_type: str | None


def _participant_from_path(path: Path) -> str:
    """Return "<cohort>/<id>" from .../<cohort>/<id>/data.mat."""
    return f"{path.parent.parent.name}/{path.parent.name}"


def _field(struct: Any, name: str, where: str) -> Any:
    try:
        return getattr(struct, name)
    except AttributeError:
        have = getattr(struct, "_fieldnames", [])
        raise KeyError(f"{where} has no {name!r}; available: {have}") from None


def list_trials(path: Path) -> list[tuple[str, str]]:
    """The (test, trial) pairs of a data.mat file."""
    tm = _field(_load_mat(path)["data"], TIME_MEASURE, str(path))
    return [(test, trial) for test in tm._fieldnames
            for trial in getattr(tm, test)._fieldnames]


def _load_mat(path: Path) -> dict[str, Any]:
    return scipy.io.loadmat(Path(path), squeeze_me=True, struct_as_record=False, mat_dtype=True)


def load_recording(
    path: Path,
    test: str = "Test11",
    trial: str = "Trial1",
    *,
    reference_system: str = "INDIP",
) -> Recording:
    """Load the lower-back IMU of one test/trial from a Mobilise-D ``data.mat``.

    Raises KeyError naming what is available when the test, trial or sensor is missing, and
    ValueError when the signals are not what the wire format expects.
    """
    path = Path(path)
    tm = _field(_load_mat(path)["data"], TIME_MEASURE, str(path))
    tr = _field(_field(tm, test, f"{path}:{TIME_MEASURE}"), trial, f"{path}:{test}")
    return recording_from_struct(tr, path, test, trial, reference_system=reference_system)


def recording_from_struct(tr: Any, path: Path, test: str, trial: str, *,
                          reference_system: str = "INDIP") -> Recording:
    """``load_recording`` for a trial struct of an already loaded ``data.mat``."""
    lb = _field(_field(tr, "SU", f"{test}/{trial}"), "LowerBack", f"{test}/{trial}/SU")
    acc_g = np.atleast_2d(np.asarray(lb.Acc, dtype=np.float64))
    gyr_dps = np.atleast_2d(np.asarray(lb.Gyr, dtype=np.float64))
    fs = float(lb.Fs.Acc)
    if float(lb.Fs.Gyr) != fs:
        raise ValueError(f"accelerometer at {fs} Hz but gyroscope at {lb.Fs.Gyr} Hz")
    if acc_g.shape != gyr_dps.shape or acc_g.shape[1] != 3:
        raise ValueError(f"Acc {acc_g.shape} and Gyr {gyr_dps.shape} must both be (n, 3)")
    samples = np.concatenate([acc_g * STANDARD_GRAVITY_MPS2, np.deg2rad(gyr_dps)], axis=1)
    if not np.isfinite(samples).all():
        raise ValueError(f"{path} {test}/{trial}: non-finite IMU samples")
    mean_x_g = float(acc_g[:, 0].mean())
    if mean_x_g < 0.5:
        raise ValueError(
            f"mean acc on x is {mean_x_g:.2f} g; expected gravity on +x (x up). "
            "Axes are not in the wire convention."
        )
    timestamps = np.atleast_1d(np.asarray(lb.Timestamp, dtype=np.float64))
    t0_us = round(float(timestamps[0]) * 1e6)
    return Recording(
        samples=samples.astype(np.float32),
        sample_rate_hz=fs,
        t0_us=t0_us,
        participant=_participant_from_path(path),
        test=test,
        trial=trial,
        reference=_reference(tr, reference_system),
    )


def _reference(trial_struct: Any, system: str) -> ReferenceGait | None:
    standards = getattr(trial_struct, "Standards", None)
    ref = getattr(standards, system, None) if standards is not None else None
    if ref is None or not hasattr(ref, "MicroWB"):
        return None
    raw = ref.MicroWB
    if isinstance(raw, np.ndarray) and raw.size == 0:
        return ReferenceGait(system=system, bouts=())
    bouts = []
    for wb in np.atleast_1d(raw):
        ic = np.atleast_1d(np.asarray(wb.InitialContact_Event, dtype=np.float64))
        lr = np.atleast_1d(np.asarray(wb.InitialContact_LeftRight, dtype=object))
        keep = np.isfinite(ic)
        speed = float(getattr(wb, "WalkingSpeed", math.nan))
        bouts.append(
            ReferenceBout(
                start_s=float(wb.Start),
                end_s=float(wb.End),
                cadence_spm=float(wb.Cadence),
                n_strides=int(wb.NumberStrides),
                walking_speed_mps=speed if math.isfinite(speed) else None,
                initial_contacts_s=ic[keep],
                ic_sides=tuple(str(s).lower() for s in lr[keep]),
            )
        )
    return ReferenceGait(system=system, bouts=tuple(bouts))


def participant_info(path: Path) -> ParticipantInfo:
    """Participant info for a ``data.mat`` (or its folder).

    Reads ``infoForAlgo.mat`` next to it (cm -> m); falls back to
    ``data_csv/participant_metadata.json`` of the dataset root.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    participant = f"{folder.parent.name}/{folder.name}"
    info_mat = folder / "infoForAlgo.mat"
    if info_mat.exists():
        tm = scipy.io.loadmat(info_mat, squeeze_me=True, struct_as_record=False,
                              mat_dtype=True)["infoForAlgo"].TimeMeasure1

        def num(name: str, factor: float = 1.0) -> float | None:
            v = getattr(tm, name, None)
            try:
                f = float(v)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return None
            return f * factor if math.isfinite(f) else None

        hand = getattr(tm, "Handedness", None)
        aid = num("WalkingAid_01")
        return ParticipantInfo(
            participant=participant,
            height_m=num("Height", 0.01),
            weight_kg=num("Weight"),
            sensor_height_m=num("SensorHeight", 0.01),
            foot_length_m=num("FootSize", 0.01),
            handedness={"L": "left", "R": "right"}.get(str(hand), str(hand)) if hand else None,
            walking_aid=None if aid is None else bool(aid),
            sensor_type=str(getattr(tm, "SensorType_SU", "")) or None,
        )
    for root in folder.parents:
        meta = root / "data_csv" / "participant_metadata.json"
        if meta.exists():
            d = json.loads(meta.read_text())[folder.parent.name][folder.name]
            foot_cm = d.get("foot_length_cm")
            return ParticipantInfo(
                participant=participant,
                height_m=d.get("height_m"),
                weight_kg=d.get("weight_kg"),
                sensor_height_m=d.get("sensor_height_m"),
                foot_length_m=None if foot_cm is None else foot_cm / 100.0,
                handedness=d.get("handedness"),
                walking_aid=d.get("walking_aid_used"),
                sensor_type=d.get("sensor_type_su"),
            )
    raise FileNotFoundError(f"no infoForAlgo.mat or participant_metadata.json for {path}")
