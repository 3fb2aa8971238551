"""The binary form of the processor's per-session and per-patient states (no I/O).

A state is packed as nested msgpack lists whose first element is the format version of the
component that wrote it; numpy arrays travel as their raw little-endian bytes. Each core
(``justwalk.gait``, ``justwalk.falls``, ``justwalk.risk``) packs its own state with
``pack() -> list`` and restores it with ``unpack(obj)``; the stream processor packs the
session around them once (``msgpack.packb``). A component that meets a version it cannot
read raises ``StateFormatError`` naming both versions, so a new release either reads the
previous release's states or says clearly that it cannot.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import numpy.typing as npt


class StateFormatError(ValueError):
    """A stored state this release cannot read (unknown version, wrong shape, corrupt)."""


def check_version(obj: Any, component: str, supported: tuple[int, ...]) -> list[Any]:
    """``obj`` as a list whose first element is one of the ``supported`` versions."""
    if not isinstance(obj, list) or not obj or not isinstance(obj[0], int):
        raise StateFormatError(f"{component} state is not a versioned list")
    if obj[0] not in supported:
        raise StateFormatError(
            f"{component} state has format version {obj[0]}; this release reads "
            f"{', '.join(map(str, supported))}")
    return obj


_LITTLE = sys.byteorder == "little"


def array_bytes(a: npt.NDArray[Any], dtype: npt.DTypeLike) -> bytes:
    """The raw little-endian bytes of ``a`` as ``dtype`` (C order)."""
    if _LITTLE and a.dtype == dtype and a.dtype.isnative:
        return a.tobytes()  # already the stored form (the common case: no conversion)
    return np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()


def array_from(data: bytes, dtype: npt.DTypeLike, shape: tuple[int, ...] | int,
               component: str = "state") -> npt.NDArray[Any]:
    """A writable array of ``shape`` from ``array_bytes`` output.

    Raises ``StateFormatError`` when the byte count does not fit the shape.
    """
    dt = np.dtype(dtype).newbyteorder("<")
    shape_t = (shape,) if isinstance(shape, int) else tuple(shape)
    n = int(np.prod(shape_t, dtype=np.int64))
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) != n * dt.itemsize:
        raise StateFormatError(f"{component}: expected {n} values of {dt} for shape {shape_t}")
    return np.frombuffer(data, dtype=dt).astype(np.dtype(dtype), copy=True).reshape(shape_t)
