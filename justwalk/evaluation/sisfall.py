"""Reading SisFall recordings and their manifest, converted to the wire convention.

SisFall (Sucerquia A, Lopez JD, Vargas-Bonilla JF. SisFall: A Fall and Movement Dataset.
Sensors 2017;17(1):198. doi:10.3390/s17010198) stores raw ADC counts of a waist-worn device
at 200 Hz: columns 1-3 ADXL345 (13 bit, +-16 g), 4-6 ITG3200 (16 bit, +-2000 deg/s), 7-9
MMA8451Q (14 bit, +-8 g). The dataset's Readme gives the conversion
``[(2 * range) / 2**resolution] * raw``.

Axes (inferred from the data, see ``shared/data/sisfall/README.md``): device +Y points down,
+Z forward, X medio-lateral. Assuming a right-handed device frame, +X = Y x Z points to the
right. Our frame (``justwalk.wire``) is x up, y right, z forward, so::

    x_ours = -Y_sisfall,   y_ours = X_sisfall,   z_ours = Z_sisfall

which is a proper rotation (determinant +1), so it applies to the gyroscope unchanged.

The ADXL345 is used for acceleration: it clips at 16 g rather than 8 g. Everything is converted
to SI (m/s^2, rad/s) here, at the edge; nothing downstream knows about counts or g.

This module does file I/O; it belongs to the evaluation layer, not to the I/O-free
``justwalk.falls`` core.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy import signal

SISFALL_RATE_HZ = 200.0
GRAVITY_MPS2 = 9.80665
ACC_ADXL345_G_PER_LSB = 2 * 16 / 2**13
GYR_ITG3200_DPS_PER_LSB = 2 * 2000 / 2**16
ACC_MMA8451Q_G_PER_LSB = 2 * 8 / 2**14
# rows: our x, y, z; columns: SisFall X, Y, Z
SISFALL_TO_WIRE = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])

CATEGORY_WALKING = "walking"
CATEGORY_NEAR_FALL = "near_fall_stumble"
CATEGORY_FALL = "fall"
CATEGORY_OTHER = "adl_confounder"


@dataclass(frozen=True, slots=True)
class SisFallEntry:
    """One row of ``manifest.csv``."""

    file: str
    code: str
    category: str
    activity: str
    subject: str
    trial: int


@dataclass(frozen=True, slots=True)
class Recording:
    """A recording in the wire convention: ``samples`` (n, 6), m/s^2 then rad/s."""

    name: str
    samples: npt.NDArray[np.float64]
    sample_rate_hz: float


def read_manifest(data_dir: Path) -> list[SisFallEntry]:
    """Entries of ``data_dir/manifest.csv`` (columns file, code, category, activity, subject...)."""
    path = Path(data_dir) / "manifest.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    required = {"file", "code", "category", "subject"}
    if rows and not required <= set(rows[0]):
        raise ValueError(f"{path} lacks columns {sorted(required - set(rows[0]))}")
    return [
        SisFallEntry(
            file=r["file"],
            code=r["code"],
            category=r["category"],
            activity=r.get("activity", ""),
            subject=r["subject"],
            trial=int(r.get("trial") or 1),
        )
        for r in rows
    ]


def read_raw(path: Path) -> npt.NDArray[np.int64]:
    """Raw counts of one SisFall file, shape (n, 9); blank lines are skipped."""
    text = Path(path).read_text(encoding="latin-1")
    rows = [line.strip().rstrip(";") for line in text.splitlines() if line.strip()]
    tokens = ",".join(rows).replace(" ", "").split(",")
    raw = np.array(tokens, dtype=np.int64)
    if raw.size % 9:
        raise ValueError(f"{path}: {raw.size} values is not a multiple of 9 columns")
    return raw.reshape(-1, 9)


def convert(raw: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Raw counts (n, 9) -> (n, 6) wire-convention samples: acc m/s^2, gyr rad/s."""
    r = np.asarray(raw, dtype=np.float64)
    acc = r[:, 0:3] * ACC_ADXL345_G_PER_LSB * GRAVITY_MPS2
    gyr = np.deg2rad(r[:, 3:6] * GYR_ITG3200_DPS_PER_LSB)
    return np.concatenate([acc @ SISFALL_TO_WIRE.T, gyr @ SISFALL_TO_WIRE.T], axis=1)


def resample(samples: npt.ArrayLike, from_hz: float, to_hz: float) -> npt.NDArray[np.float64]:
    """Polyphase resampling (anti-aliased) of (n, c) samples; identity when rates match."""
    x = np.asarray(samples, dtype=np.float64)
    if from_hz == to_hz:
        return x
    up, down = _ratio(from_hz, to_hz)
    return signal.resample_poly(x, up, down, axis=0, padtype="line")


def _ratio(from_hz: float, to_hz: float) -> tuple[int, int]:
    f = Fraction(to_hz / from_hz).limit_denominator(1000)
    return f.numerator, f.denominator


def load(data_dir: Path, entry: SisFallEntry, sample_rate_hz: float = 100.0) -> Recording:
    """Load one manifest entry, converted and resampled to ``sample_rate_hz``."""
    samples = convert(read_raw(Path(data_dir) / entry.file))
    samples = resample(samples, SISFALL_RATE_HZ, sample_rate_hz)
    return Recording(name=entry.file, samples=samples, sample_rate_hz=float(sample_rate_hz))
