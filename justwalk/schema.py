"""InfluxDB schema: measurement names, tags and fields, and the line-protocol encoding.

The sink writes with it, the demo and the tests query with it. Tags are only the
low-cardinality identifiers (clinic, patient, device); everything else is a field.
Timestamps are event time from the device clock, so a replay overwrites the same points.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from justwalk.records import GaitWindowRecord, Record, StepRecord

DATABASE_DEFAULT = "justwalk"
RETENTION_POLICY = "raw"
RETENTION_DURATION = "520w"  # ten years, until issue #5 splits raw and rolled-up data

MEASUREMENT_STEP = "step"
MEASUREMENT_GAIT_WINDOW = "gait_window"
TAG_KEYS = ("clinic_id", "patient_id", "device_id")

FieldValue = float | int | bool | str


def _no_newline(s: str) -> str:
    if "\n" in s or "\r" in s:
        raise ValueError(f"line protocol cannot carry a line break: {s!r}")
    return s


def _escape_key(s: str) -> str:
    # Tag keys, tag values and field keys escape comma, equals and space; a backslash is
    # literal in InfluxDB 1.x (it is not un-escaped), so it is left as it is.
    return _no_newline(s).replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _escape_measurement(s: str) -> str:
    return _no_newline(s).replace(",", "\\,").replace(" ", "\\ ")


def _field(value: FieldValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def line(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue | None],
    t_ns: int,
) -> str:
    """One line of InfluxDB line protocol. None fields are left out; empty tags too."""
    tag_part = "".join(
        f",{_escape_key(k)}={_escape_key(v)}" for k, v in sorted(tags.items()) if v != ""
    )
    field_part = ",".join(
        f"{_escape_key(k)}={_field(v)}" for k, v in fields.items() if v is not None
    )
    if not field_part:
        raise ValueError(f"{measurement} point at {t_ns} has no fields")
    return f"{_escape_measurement(measurement)}{tag_part} {field_part} {t_ns}"


def record_to_line(record: Record) -> str:
    """The InfluxDB point for one output record."""
    tags = {k: getattr(record, k) for k in TAG_KEYS}
    if isinstance(record, StepRecord):
        return line(
            MEASUREMENT_STEP,
            tags,
            {
                "step_index": record.step_index,
                "step_time_s": record.step_time_s,
                "session_id": record.session_id,
            },
            record.t_us * 1000,
        )
    if isinstance(record, GaitWindowRecord):
        return line(
            MEASUREMENT_GAIT_WINDOW,
            tags,
            {
                "n_steps": record.n_steps,
                "walking": record.walking,
                "cadence_spm": record.cadence_spm,
                "mean_step_time_s": record.mean_step_time_s,
                "window_s": record.window_s,
                "session_id": record.session_id,
            },
            record.window_start_us * 1000,
        )
    raise TypeError(f"no InfluxDB mapping for {type(record).__name__}")


def records_to_lines(records: Iterable[Record]) -> str:
    """Line-protocol body for a batch of records."""
    return "\n".join(record_to_line(r) for r in records)
