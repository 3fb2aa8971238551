"""Settings: one frozen object, and the only module that reads environment variables.

Every process (gateway, processor, sink, simulator, demo) takes a ``Settings`` and passes
the parts it needs down; nothing else looks at ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

ENV_PREFIX = "JUSTWALK_"


@dataclass(frozen=True)
class Settings:
    """Runtime configuration shared by all processes. Env var = JUSTWALK_<FIELD NAME>."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_chunks: str = "imu.chunks"
    topic_steps: str = "gait.steps"
    topic_windows: str = "gait.windows"
    topic_rejects: str = "imu.rejected"
    topic_alerts: str = "alerts"
    topic_bouts: str = "gait.bouts"
    topic_events: str = "gait.events"
    """Turns, near-falls and falls (GaitEventRecord)."""
    topic_risk: str = "fall.risk"
    """Fall-risk scores per patient (FallRiskRecord); risk alerts go to ``topic_alerts``."""
    topic_sessions: str = "gait.sessions"
    """Running summaries of recording sessions (SessionRecord)."""
    topic_training: str = "training.results"
    """Training sessions' results and per-minute values (WalkTestRecord, WalkMinuteRecord)."""
    topic_feedback: str = "training.feedback"
    """Real-time feedback for the devices (FeedbackRecord); the gateway pushes it."""
    topic_state: str = "processor.state"
    """The processor's stored session and patient states (internal; compacted; partitioned
    like ``topic_chunks``; see stream_processors.runtime)."""
    topic_dead_letter: str = "sink.dead-letter"
    """Records the sink could not write to InfluxDB, with the reason (Kafka headers)."""
    topic_partitions: int = 8
    kafka_replication_factor: int = 1
    """Replicas of each topic ``ensure_topics`` creates (3 on the three-broker cluster of
    deploy/compose.kafka-3.yml)."""
    kafka_min_insync_replicas: int = 1
    """``min.insync.replicas`` of each topic created: a write (acks=all) is acknowledged only
    once this many replicas hold it (2 of 3 on a three-broker cluster)."""
    kafka_delivery_timeout_s: float = 10.0
    """Longest a write waits for the broker's acknowledgement before it counts as failed."""
    # Consumer-group timings; the defaults of Kafka clients make joins slow on a small broker.
    kafka_session_timeout_s: float = 10.0
    kafka_heartbeat_interval_s: float = 1.0
    kafka_rebalance_timeout_s: float = 5.0
    # Longest a consumer's fetch waits for data. Small, because Tansu (the local broker)
    # answers a long poll only when it times out; Kafka answers as soon as data arrives.
    kafka_fetch_max_wait_ms: int = 100
    local_broker_storage: str = "memory"
    """Storage of the local stack's broker (``justwalk stack``, ``justwalk demo``, tests):
    ``memory`` (a broker restart loses its topics) or ``s3`` (an S3-compatible store on
    loopback that outlives broker restarts); see justwalk.localstack."""

    influx_url: str = "http://127.0.0.1:8086"
    influx_db: str = "justwalk"
    """Prefix of the clinics' databases: clinic C's points are in ``<influx_db>_<C>``
    (``justwalk.schema.clinic_database``)."""
    influx_username: str = ""
    influx_password: str = ""

    # Clinic isolation and TLS (issue #14).
    clinics: Path = Path("deploy/local/clinics.json")
    """The clinics file (``justwalk.clinics``): each clinic's Grafana organisation and
    InfluxDB read user, for ``justwalk influx setup`` and ``justwalk dashboards build``."""
    gateway_tls_cert: str = ""
    """PEM certificate (chain) the gateway serves HTTPS/WSS with, with ``gateway_tls_key``.
    Empty: plain HTTP, for loopback or behind a TLS-terminating proxy (deploy/README.md)."""
    gateway_tls_key: str = ""
    """PEM private key of ``gateway_tls_cert``."""
    influx_gate_host: str = "127.0.0.1"
    influx_gate_port: int = 8087
    """Where ``justwalk influx gate`` (sinks.influx_gate) listens: Grafana's way to InfluxDB,
    passing reads only (InfluxDB at ``influx_url`` checks the user as before)."""

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    device_registry: Path = Path("deploy/local/devices.json")
    # Chunks timestamped further ahead of the gateway's clock than this are rejected.
    max_clock_skew_s: float = 300.0
    # Store-and-forward uploads may carry data up to this old.
    max_upload_age_s: float = 30 * 86400.0
    max_upload_bytes: int = 64 * 1024 * 1024

    processor_group: str = "justwalk-processor"
    cadence_window_s: float = 5.0
    processor_checkpoint_interval_s: float = 5.0
    """How often the processor stores its changed states and commits its input offsets
    (stream_processors.runtime). A crash replays at most about this much input."""
    processor_outage_max_s: float = 120.0
    """How long the processor rides out a broker outage (keeping its states and the records
    not yet confirmed, retrying its checkpoint) before it stops with an error."""
    processor_resend_window_s: float = 30.0
    """Records of this much recent wall time the processor keeps, to send them again when
    the broker lost its topics (what the sink may not have read yet)."""
    session_retention_s: float = 31 * 86400.0
    """A session whose newest data is older than this (device time against the wall clock)
    is deleted from the processor's state. Keep it above ``max_upload_age_s``, so that any
    chunk the gateway still accepts finds its session."""
    risk_policies: Path = Path("deploy/local/risk_policies.json")
    """Clinics' fall-risk alert thresholds (optional file; see stream_processors.risk_policies)."""
    default_sensor_height_m: float = 1.0
    """Sensor height above the ground for walking speed and stride length (inverted
    pendulum), for patients whose profile gives none."""
    patient_profiles: Path = Path("deploy/local/patient_profiles.json")
    """Per-patient sensor heights (optional file; see stream_processors.patient_profiles)."""
    session_idle_timeout_s: float = 120.0
    """A session with no chunk for this long (wall clock) is flushed: its open walking bout
    and windows are published as if the device had sent its last chunk (a device that died
    without the end flag). 0 turns the timeout off."""
    session_summary_every_s: float = 60.0
    """Longest stretch of device time between two summaries (``session`` points) of an open
    session; summaries are also published at its start, at every bout and at its end."""

    # Patients, prescriptions and sessions (issue #16; justwalk.db, justwalk.api).
    database_url: str = ""
    """SQLAlchemy URL of the database, e.g. ``postgresql://user:password@host/justwalk``
    (driver psycopg 3) or ``sqlite:////var/lib/justwalk/justwalk.sqlite3``. Empty: the
    SQLite file ``database_file``. When set, the processor reads the patients' sensor heights
    from it instead of the ``patient_profiles`` file."""
    database_file: Path = Path("run/justwalk.sqlite3")
    """The SQLite database used when ``database_url`` is empty."""
    api_host: str = "127.0.0.1"
    api_port: int = 8090
    """Where ``justwalk api`` (the clinics' HTTP API, justwalk.api) listens."""
    chromium_binary: str = ""
    """Headless Chromium that prints the progress reports' PDF (``justwalk.report.browser``).
    Empty: ``chromium`` or ``chromium-browser`` on PATH. The image sets Debian's
    ``/usr/bin/chromium``."""

    alert_group: str = "justwalk-alerts"
    alert_channels: Path = Path("deploy/local/alert_channels.json")
    """Per-clinic alert channels (webhooks, e-mail) and the SMTP server; see sinks.alerts."""
    alert_outbox: Path = Path("run/alerts/outbox.sqlite3")
    """Durable store of alerts not yet delivered (survives restarts and receiver outages)."""
    alert_suppression_s: float = 300.0

    sink_group: str = "justwalk-sink"
    sink_batch_points: int = 5000
    sink_flush_interval_s: float = 0.25
    sink_retry_max_s: float = 10.0
    """Longest wait between two attempts to write to an InfluxDB that is down."""
    sink_latency_report_s: float = 60.0
    """The sink logs the latency from gateway receipt to InfluxDB (percentiles) this often."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from JUSTWALK_* variables, then apply keyword overrides."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _parse(f.type, raw, f.name)
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> Settings:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """Environment variables that reproduce these settings in a child process."""
        return {ENV_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}


def _parse(type_name: object, raw: str, name: str) -> object:
    type_str = str(type_name)
    try:
        if type_str == "int":
            return int(raw)
        if type_str == "float":
            return float(raw)
        if type_str == "Path":
            return Path(raw)
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {type_str}") from None
    return raw


def child_env(settings: Settings) -> dict[str, str]:
    """Environment for a child process: ours (PATH etc.) with these settings on top."""
    return {**os.environ, **settings.to_env()}


def env_secret(name: str, environ: Mapping[str, str] | None = None) -> str:
    """The value of the environment variable ``name``: a secret a config file refers to.

    Config files (e.g. the alert channels) name the variable that holds a secret instead of
    holding the secret; this resolves it here, where the environment is read. Raises
    ``ValueError`` naming the variable when it is unset or empty.
    """
    env = os.environ if environ is None else environ
    value = env.get(name, "")
    if not value:
        raise ValueError(f"environment variable {name} is not set or empty")
    return value
